package engine

import (
	"context"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// Source delivers the engine's input: the raw messages of a NATS subscription, a
// JetStream consumer or a test. It declares what it knows of its own progress with
// marks (SPEC §2, "Evidence before verdict"): no deadline fires before a mark says that
// every message accepted before it has been delivered.
type Source interface {
	// Run hands every message to in until ctx is done; then it stops, hands over what
	// it holds (draining), and returns. It may call in's methods from any goroutine,
	// but the order in which its calls return is the order they mean.
	Run(ctx context.Context, in Intake) error
}

// Prober is a Source that can prove, on request, how far its input has caught up: a
// NATS flush round trip, a JetStream consumer's info. The engine asks when a deadline is
// due that no mark covers yet.
type Prober interface {
	// Probe asks for a mark: the source calls Intake.Mark(t), with t at or after the
	// moment of this call, once every message accepted before t has been delivered. It
	// must not block; while the input is unreachable the mark waits, and so do the
	// deadlines.
	Probe()
}

// Intake is how a Source hands its input to the engine.
type Intake interface {
	// Deliver hands over one message. It blocks while the engine holds as many bytes
	// in flight as it may (the back-pressure goes into the source: unacknowledged in
	// JetStream, a slow consumer in core NATS). The engine calls m.Done or m.Reject
	// once, from any goroutine.
	Deliver(m Message)
	// DeliverOrdered is Deliver for a message of a stream read in stored order, without
	// loss: everything stored before it has been delivered, so it is also a mark at its
	// stored time.
	DeliverOrdered(m Message)
	// Mark says that every message the input accepted before t has been delivered:
	// deadlines up to t may fire once the messages delivered before it are applied.
	Mark(t time.Time)
	// Gap says that the input may have lost what was published between from and to (a
	// disconnection, a slow consumer's drops): a hang whose stretch was armed before it
	// says so with its inputGapMs.
	Gap(from, to time.Time)
	// Hold stops every deadline from firing until as many Release calls: the source is
	// rebuilding calls from stored state (a replay, a partition taken over), in which a
	// call answered or ended meanwhile may first look unanswered.
	Hold()
	Release()
	// Revoke drops the calls of a partition that another instance now owns, without
	// publishing anything for them.
	Revoke(partition int)
}

// Message is one message of the input.
type Message interface {
	// Data is the payload; it must not change until Done or Reject.
	Data() []byte
	// Received is when the input accepted the message: its arrival as read from the
	// engine's clock, or the stored time of a stream (then stored is true; a stored time
	// after the engine's clock is taken as the clock's now).
	Received() (t time.Time, stored bool)
	// Partition is the partition the message came from (consumer groups), or -1; at
	// most MaxPartition.
	Partition() int
	// Done says that the engine is finished with the message: it was applied or refused
	// (a new call past the limits), so a stream may acknowledge it.
	Done()
	// Reject says that the message is bad input: the source counts, logs and
	// dead-letters it, and a stream acknowledges it for good.
	Reject(err error)
}

// Lasting is a Message whose bytes stay as they are after Done: the source never reuses
// them (nats.go allocates each message's anew). A call may keep them as they are, instead
// of a copy, until the packer replaces them with its packed copy (WithPackAfter): most
// calls let them go sooner, and no copy is made at all.
type Lasting interface {
	Message
	Lasting()
}

// Decoder decodes a message into detection input (package wire does it for NATS).
type Decoder interface {
	// Decode fills ev from data, keeping ev's capacity. An error makes the message bad
	// input. The strings and payload of ev may alias data.
	Decode(ev *detector.Event, data []byte) error
}

// DecoderFunc adapts a function to Decoder.
type DecoderFunc func(ev *detector.Event, data []byte) error

// Decode calls f.
func (f DecoderFunc) Decode(ev *detector.Event, data []byte) error { return f(ev, data) }

// Sink publishes the outputs of detection.
type Sink interface {
	// Publish publishes an output of the call. It is called from every shard,
	// concurrently, and should not block for long: the shard waits for it.
	Publish(callID string, out *detector.Output) error
}
