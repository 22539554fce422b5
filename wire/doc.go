// Package wire is hangwatch's wire format, as pure functions over bytes: it decodes the
// events of a voice pipeline (SPEC §1, the webhook dialect and the Vapi dialect, told
// apart per message by the fields present) into the input of the detector, encodes
// hangwatch's own outputs (SPEC §3: hang, hang-resolved and hang-unresolved), and names
// the subjects they go to. It knows nothing of NATS: transport carries the bytes, wire
// reads and writes them.
//
// The codec is built for the hot path. Every conversation-update repeats the whole
// history of its call, so Decode reads an event in one validating pass over its bytes
// (scan.go), decodes only the fields that detection reads (decode.go for the envelope
// and the call, history.go for the messages of both dialects), and keeps the rest as
// spans of the received bytes: a Payload (payload.go). While a call waits for a reply the
// engine keeps a compact copy of it (Payload.Retain), which AppendOutput (encode.go)
// splices into an output byte for byte, fitted to the server's max payload (fit.go).
//
// Choices where SPEC is silent:
//   - The history is carried once: an output never carries the messages member of call,
//     wherever the history came from (message.messages, message.artifact.messages or
//     call.messages); it is written to message.messages.
//   - Vapi's message.phoneNumber is passed through, as phoneNumber, when the snapshot
//     has one; the last resort of fitting leaves it out.
//   - hang.model comes from assistant.model.provider and .model, else from the webhook
//     dialect's assistant.assistantProvider and .assistantModel.
//   - A message without a messageId is keyed by its role, its own time and the raw bytes
//     of its text, and for a tool message by the ids of its tool calls too, so that two
//     results in the same millisecond stay apart.
package wire
