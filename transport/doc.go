// Package transport connects the engine to NATS, and only that: a Conn that reconnects
// forever and counts what happens to it; a Source that subscribes, stamps, decodes (with
// package wire) and hands events to the engine, and counts, logs (rate-limited, never the
// text) and dead-letters bad input; a Sink that publishes outputs with the Content-Type
// and Nats-Msg-Id headers; and an Embedded server, so that hangwatch runs on a bare
// machine and tests run against a real broker.
//
// In JetStream mode, a JetStreamSource replays the stored calls before it consumes live
// through a durable consumer, and a JetStreamSink stores the outputs in a stream that
// drops duplicates, so that hangwatch survives restarts (see JetStreamSource). A
// GroupSource does the same for a member of a group: the events stream is partitioned
// by NATS's partition() transform, and each member consumes the partitions it is given,
// rebuilding each as it takes it over (see GroupSource).
package transport
