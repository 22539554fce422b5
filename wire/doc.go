// Package wire is hangwatch's wire format, as pure functions over bytes: it decodes the
// events of a voice pipeline (SPEC §1) into the input of the detector, encodes
// hangwatch's own events (SPEC §3), and names the subjects they go to. It knows nothing
// of NATS: transport carries the bytes, wire reads and writes them.
//
// The codec is built for the hot path. Every conversation-update repeats the whole
// history of its call, so Decode reads an event in one validating pass over its bytes,
// decodes only the fields that detection reads, and keeps the rest as spans of the
// received bytes (a Payload), which AppendOutput splices into a hang event byte for
// byte.
package wire
