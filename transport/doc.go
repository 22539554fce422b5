// Package transport connects the engine to NATS: it decodes the events of a voice
// pipeline, encodes hangwatch's own events, and names the subjects they go to.
//
// The codec is built for the hot path. Every conversation-update repeats the whole
// history of its call, so Decode reads an event in one validating pass over its bytes,
// decodes only the fields that detection reads, and keeps the rest as spans of the
// received bytes (a Payload), which AppendOutput splices into a hang event byte for
// byte. Decoding costs one allocation, the Payload.
//
// The NATS side is a Conn that reconnects forever and counts what happens to it; a
// Source that subscribes, stamps, decodes and hands events to the engine, and counts,
// logs (rate-limited, never the text) and dead-letters bad input; a Sink that publishes
// outputs with the Content-Type and Nats-Msg-Id headers; and an Embedded server, so that
// hangwatch runs on a bare machine and tests run against a real broker.
//
// In JetStream mode, a JetStreamSource replays the stored calls before it consumes live
// through a durable consumer, and a JetStreamSink stores the outputs in a stream that
// drops duplicates, so that hangwatch survives restarts (see JetStreamSource).
package transport
