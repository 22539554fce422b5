package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/logs"
	"github.com/hangwatch/hangwatch/wire"
)

// DefaultSinkQueue is the default number of outputs a JetStreamSink holds while they
// wait to be published.
const DefaultSinkQueue = 8192

// publishTimeout bounds one attempt to publish an output and get the stream's ack.
const publishTimeout = 2 * time.Second

// ErrSinkClosed is wrapped by the error of a Publish after Close.
var ErrSinkClosed = errors.New("sink closed")

// JetStreamSinkOptions configures a JetStreamSink.
type JetStreamSinkOptions struct {
	// Stream is the name of the hang stream (default DefaultHangStream). It is created
	// when missing, over the wildcards of the hang and resolved subjects, with file
	// storage; one that exists is used as it is.
	Stream string
	// Duplicates is the stream's duplicate window (default and least
	// DefaultDuplicates): a stall detected again within it, by a restarted engine or
	// another one, is dropped by the server thanks to its Nats-Msg-Id.
	Duplicates time.Duration
	// MaxAge is how long the stream keeps an output (default DefaultHangMaxAge).
	MaxAge time.Duration
	// Queue is how many outputs wait to be published at most (default
	// DefaultSinkQueue); past it, Publish waits for room.
	Queue  int
	Logger *zap.Logger
}

// JetStreamSink publishes hangs and hang-resolved into a JetStream stream, with the
// headers of SPEC §3. It implements engine.Sink.
//
// Publish does not wait for a round trip: it puts the output in a bounded queue, and
// one goroutine publishes the queue in order (a hang before its resolved), waits for
// each ack, and retries with a capped backoff until the stream has the output, through
// any outage of NATS. A retry whose first attempt was stored after all is dropped by
// the stream as a duplicate. So no output is lost while the process lives: when the
// queue is full, Publish waits for room, which holds the engine's shard, which holds the
// unacknowledged events in the events stream. Only an output the stream refuses for
// good (larger than it accepts) is dropped, logged and counted. Close drains the queue.
type JetStreamSink struct {
	core    *Sink // the subjects, headers and payloads of SPEC §3
	js      jetstream.JetStream
	log     *zap.Logger
	limited *zap.Logger
	queue   chan queued

	// mu is held shared by Publish while it enqueues, and exclusively by Close to seal
	// the queue: once sealed, nothing more is enqueued and the worker drains what is
	// left and exits.
	mu        sync.RWMutex
	closed    bool
	closing   chan struct{} // closed by Close: a Publish that waits for room gives up
	sealed    chan struct{} // closed once no Publish can enqueue any more
	ctx       context.Context
	cancel    context.CancelFunc // Close's ctx is done: the worker stops retrying
	done      chan struct{}      // closed when the worker exits
	closeOnce sync.Once

	stats jsSinkCounters
}

// queued is an output waiting to be published; its message owns its bytes.
type queued struct {
	msg    *nats.Msg
	kind   detector.Kind
	callID string
}

type jsSinkCounters struct {
	published                            [detector.KindResolved + 1]atomic.Int64
	duplicates, retries, errors, dropped atomic.Int64
	waits, unpublished                   atomic.Int64
}

// JetStreamSinkStats are the counters of a JetStreamSink.
type JetStreamSinkStats struct {
	// Hangs and Resolved count the outputs the stream acknowledged, duplicates
	// included.
	Hangs, Resolved int64
	// Duplicates counts the outputs the stream dropped as duplicates of ones it holds:
	// stalls detected again after a restart, or retries of a publish whose ack was lost.
	Duplicates int64
	// Errors counts the attempts to publish that failed, and Retries those made after
	// a failure.
	Errors, Retries int64
	// Dropped counts the outputs the stream refused for good.
	Dropped int64
	// QueueWaits counts the Publish calls that found the queue full and waited.
	QueueWaits int64
	// Queued is the number of outputs waiting now.
	Queued int
	// Unpublished is the number of outputs left when Close gave up.
	Unpublished int64
}

// NewJetStreamSink returns a sink that publishes through c into the hang stream, which
// it creates when it is missing, and starts its worker. Close must be called to stop it.
func NewJetStreamSink(ctx context.Context, c *Conn, o SinkOptions, jo JetStreamSinkOptions) (*JetStreamSink, error) {
	if jo.Stream == "" {
		jo.Stream = DefaultHangStream
	}
	if jo.Duplicates == 0 {
		jo.Duplicates = DefaultDuplicates
	}
	if jo.MaxAge <= 0 {
		jo.MaxAge = DefaultHangMaxAge
	}
	if jo.Queue <= 0 {
		jo.Queue = DefaultSinkQueue
	}
	switch {
	case jo.Duplicates < DefaultDuplicates:
		return nil, fmt.Errorf("%w: hang stream duplicate window %v: must be at least %v", ErrJetStream, jo.Duplicates, DefaultDuplicates)
	case jo.MaxAge < jo.Duplicates:
		return nil, fmt.Errorf("%w: hang stream max age %v: must be at least the duplicate window %v", ErrJetStream, jo.MaxAge, jo.Duplicates)
	}
	log := jo.Logger
	if log == nil {
		log = zap.NewNop()
	}
	js, err := jetstream.New(c.NATS())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	core := NewSink(c, o)
	subjects := wire.OutputWildcards(core.o.HangSubject, core.o.ResolvedSubject)
	st, err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        jo.Stream,
		Description: "hangwatch: hang and hang-resolved events",
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      jo.MaxAge,
		Duplicates:  jo.Duplicates,
	}, log)
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	if have.Duplicates < jo.Duplicates {
		log.Warn("the hang stream's duplicate window is short: a stall detected again after a longer restart is published twice",
			zap.String("stream", jo.Stream), zap.Duration("duplicates", have.Duplicates), zap.Duration("want", jo.Duplicates))
	}
	for _, sub := range subjects {
		if !wire.Covers(have.Subjects, sub) {
			log.Warn("the hang stream does not hold these outputs: publishing them is retried until one does",
				zap.String("stream", jo.Stream), zap.String("subject", sub), zap.Strings("stream_subjects", have.Subjects))
		}
	}
	s := &JetStreamSink{
		core:    core,
		js:      js,
		log:     log,
		limited: logs.RateLimited(log),
		queue:   make(chan queued, jo.Queue),
		closing: make(chan struct{}),
		sealed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Publish queues out for publication. It waits only while the queue is full.
func (s *JetStreamSink) Publish(callID string, out *detector.Output) error {
	msg, buf := s.core.message(callID, out)
	msg.Data = slices.Clone(msg.Data) // the queue outlives the pooled buffer
	s.core.bufs.Put(buf)
	q := queued{msg: msg, kind: out.Kind, callID: callID}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, ErrSinkClosed)
	}
	select {
	case s.queue <- q:
		return nil
	default:
	}
	s.stats.waits.Add(1)
	s.limited.Warn("hang queue full: waiting for JetStream", zap.Int("queue", cap(s.queue)))
	select {
	case s.queue <- q:
		return nil
	case <-s.closing:
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, ErrSinkClosed)
	}
}

// run publishes the queue in order until Close seals it and it is empty, or Close gives
// up.
func (s *JetStreamSink) run() {
	defer close(s.done)
	for {
		var q queued
		select {
		case q = <-s.queue:
		case <-s.sealed:
			select {
			case q = <-s.queue:
			default:
				return
			}
		}
		if !s.send(q) {
			s.stats.unpublished.Store(int64(1 + len(s.queue)))
			return
		}
	}
}

// send publishes q and waits for the stream's ack, retrying until it has it. It returns
// false when Close gave up first.
func (s *JetStreamSink) send(q queued) bool {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, publishTimeout)
		ack, err := s.js.PublishMsg(ctx, q.msg)
		cancel()
		if err == nil {
			if ack.Duplicate {
				s.stats.duplicates.Add(1)
			}
			s.stats.published[q.kind].Add(1)
			return true
		}
		s.stats.errors.Add(1)
		if s.ctx.Err() != nil {
			return false
		}
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			s.stats.dropped.Add(1)
			s.log.Error("output dropped: the hang stream refuses it", zap.String("call_id", q.callID),
				zap.Stringer("kind", q.kind), zap.Int("bytes", len(q.msg.Data)), zap.Error(err))
			return true
		}
		d := backoff(attempt)
		s.limited.Warn("publish to the hang stream: retrying", zap.String("subject", q.msg.Subject), zap.Duration("in", d), zap.Error(err))
		if !sleepCtx(s.ctx, d) {
			return false
		}
		s.stats.retries.Add(1)
	}
}

// Close stops taking outputs, publishes those queued until ctx is done, and stops the
// worker. It reports how many outputs were left unpublished, if any.
func (s *JetStreamSink) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.sealed)
	})
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	if n := s.stats.unpublished.Load(); n > 0 {
		s.log.Error("outputs not published", zap.Int64("outputs", n))
		return fmt.Errorf("close JetStream sink: %d outputs not published: %w", n, ctx.Err())
	}
	return nil
}

// Published returns how many hangs and hang-resolved the stream acknowledged.
func (s *JetStreamSink) Published() (hangs, resolved int64) {
	return s.stats.published[detector.KindHang].Load(), s.stats.published[detector.KindResolved].Load()
}

// Stats returns the sink's counters.
func (s *JetStreamSink) Stats() JetStreamSinkStats {
	hangs, resolved := s.Published()
	return JetStreamSinkStats{
		Hangs:       hangs,
		Resolved:    resolved,
		Duplicates:  s.stats.duplicates.Load(),
		Errors:      s.stats.errors.Load(),
		Retries:     s.stats.retries.Load(),
		Dropped:     s.stats.dropped.Load(),
		QueueWaits:  s.stats.waits.Load(),
		Queued:      len(s.queue),
		Unpublished: s.stats.unpublished.Load(),
	}
}
