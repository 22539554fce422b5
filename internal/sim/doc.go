// Package sim is a simulated voice pipeline: it scripts calls whose assistants are
// sometimes late (some while a tool they called runs, some after its result), whose
// callers sometimes hang up in silence, publishes their events in the webhook dialect
// of SPEC §1, and knows the ground truth of every output that SPEC §2 and §3 say those
// calls must produce: each hang with its reason and stage, then its hang-resolved or
// hang-unresolved.
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
//   - Truth: the expected outputs of a run, and Tally, which compares them with the
//     hangs, resolutions and unresolved an engine published.
//
// Times inside the package are whole milliseconds, as on the wire: a message's
// timestamp is its call's start plus its offset, and its event is published at that
// time, so a detector anchors it at exactly that timestamp.
package sim
