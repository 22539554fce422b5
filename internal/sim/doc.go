// Package sim is a simulated voice pipeline: it scripts calls whose assistants are
// sometimes late, publishes their events in the wire format of SPEC §1, and knows the
// ground truth of every hang that SPEC §2 says those calls must produce.
//
// Everything about a call is a pure function of the configuration, the call's index and
// its start time: its timeline, the bytes of every event, and the stretches that must
// hang. So a call keeps no history (a conversation-update is regenerated from a few
// integers when it is due), the truth of a run is recomputed rather than stored, and a
// run of a million calls holds a couple of hundred bytes per call.
//
// Three layers, each usable alone:
//   - Script: one call, its events in time order and its Stalls (the ground truth).
//   - Runner: drives Config.Calls concurrent calls in real time (or on a fake clock)
//     with a few goroutines, replacing each call that ends.
//   - Truth: the expected hangs of a run, and Tally, which compares them with the hangs
//     and resolutions an engine published.
//
// Times inside the package are whole milliseconds, as on the wire: a message's
// timestamp is its call's start plus its offset, and its event is published at that
// time, so a detector anchors it at exactly that timestamp.
package sim
