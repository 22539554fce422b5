package transport

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/wire"
)

// StorePrefix starts the subjects the outputs are stored on in the hang stream: an
// output of subject voice.hang.<team>.<call> is stored on
// hangwatch.out.voice.hang.<team>.<call>, which no subscriber of the outputs listens to,
// and the stream republishes it, once, on voice.hang.<team>.<call>.
const StorePrefix = "hangwatch.out"

// Defaults of the JetStream sink.
const (
	// DefaultSinkQueue is how many outputs wait to be published at most.
	DefaultSinkQueue = 8192
	// DefaultPublishWindow is how many outputs may await the stream's ack at once.
	DefaultPublishWindow = 256
)

// publishTimeout bounds one attempt to publish an output and get the stream's ack.
const publishTimeout = 2 * time.Second

// Headers the JetStream sink adds to an output, so that a later instance can tell
// whether it went out: when its stretch began, and which kind it is.
const (
	HeaderArmed = "Hangwatch-Armed" // Unix ms of the first user turn's anchor
)

// ErrSinkClosed is wrapped by the error of a Publish after Close.
var ErrSinkClosed = errors.New("sink closed")

// JetStreamSinkOptions configures a JetStreamSink.
type JetStreamSinkOptions struct {
	// Stream is the name of the hang stream (default DefaultHangStream). It is created
	// when missing over StorePrefix and the outputs' wildcards, with file storage, and
	// republishes every output it stores on the output's own subject.
	Stream string
	// Duplicates is the stream's duplicate window (default and least
	// DefaultDuplicates): an output published again within it, by a restarted engine or
	// another one, is dropped by the server thanks to its Nats-Msg-Id.
	Duplicates time.Duration
	// MaxAge is how long the stream keeps an output (default DefaultHangMaxAge).
	MaxAge time.Duration
	// Replicas is the stream's replication when it is created (default 1).
	Replicas int
	// Queue is how many outputs wait to be published at most (default
	// DefaultSinkQueue); past it, Publish waits for room. Window is how many may await
	// the stream's ack at once (default DefaultPublishWindow).
	Queue, Window int
	Logger        *zap.Logger
	// Limited logs what a publisher can flood (bad input, refusals, errors of a
	// connection); the caller makes it rate-limited (default Logger).
	Limited *zap.Logger
}

// JetStreamSink stores the outputs in the hang stream, which republishes each on its
// own subject once: so a plain subscriber sees each output once, however many engines
// detect the same stall, and across restarts (SPEC §3, "Exactly once"). It implements
// engine.Sink; Run publishes.
//
// Publish does not wait for a round trip: it puts the output in a bounded queue, and Run
// publishes the queue in order, up to Window outputs awaiting their ack at once,
// retrying each with a capped backoff until the stream has it, through any outage of
// NATS. A retry whose first attempt was stored after all is dropped by the stream as a
// duplicate. So no output is lost while the process lives: when the queue is full,
// Publish waits for room, which holds the engine's shard, which holds the
// unacknowledged events in the events stream. An output of a call rebuilt from stored
// state, or a late one, may have gone out before the duplicate window: the stream's
// last output on its subject says whether it did, and if so it is not published again.
type JetStreamSink struct {
	core    *Sink // the subjects, headers and payloads of SPEC §3
	js      jetstream.JetStream
	st      jetstream.Stream
	stream  string
	window  int
	dups    time.Duration // the stream's duplicate window
	log     *zap.Logger
	limited *zap.Logger
	queue   chan queued

	// mu is held shared by Publish while it enqueues, and exclusively by Close to seal
	// the queue: once sealed, nothing more is enqueued and Run drains what is left.
	mu     sync.RWMutex
	closed bool
	stop   chan struct{} // closed by Close first: a Publish waiting for room gives up
	sealed chan struct{} // closed by Close once no Publish can enqueue any more
	once   sync.Once

	stats jsSinkCounters
}

var _ engine.Sink = (*JetStreamSink)(nil)

// queued is an output waiting to be published; its message owns its bytes.
type queued struct {
	msg    *nats.Msg
	kind   detector.Kind
	callID string
	armed  int64 // Unix ms
	check  bool  // ask the stream whether it went out already
	at     time.Time
}

type jsSinkCounters struct {
	published                            [detector.KindUnresolved + 1]atomic.Int64
	duplicates, skipped, retries, errors atomic.Int64
	dropped, waits, unpublished          atomic.Int64
	inflight                             atomic.Int64
	// queued counts the outputs put in the queue, finished those done with since
	// (stored, found out already, dropped or given up): Flush waits for one to reach the
	// other.
	queued, finished atomic.Int64
}

// JetStreamSinkStats are the counters of a JetStreamSink.
type JetStreamSinkStats struct {
	// Published counts the outputs the stream acknowledged, by kind, duplicates included.
	Published map[detector.Kind]int64
	// Duplicates counts the outputs the stream dropped as duplicates of ones it holds;
	// AlreadyOut those not published because the stream showed they went out before.
	Duplicates, AlreadyOut int64
	// Errors counts the attempts to publish that failed, and Retries those made after
	// a failure.
	Errors, Retries int64
	// Dropped counts the outputs the stream refused for good.
	Dropped int64
	// QueueWaits counts the Publish calls that found the queue full and waited.
	QueueWaits int64
	// Queued is the number of outputs waiting now; InFlight those awaiting their ack.
	Queued, InFlight int64
	// Unpublished is the number of outputs left when Run gave up.
	Unpublished int64
}

// NewJetStreamSink returns a sink that publishes through c into the hang stream, which
// it creates when it is missing (or updates to republish, when it lacks it). Run
// publishes; Close seals the queue.
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
	if jo.Replicas <= 0 {
		jo.Replicas = 1
	}
	if jo.Queue <= 0 {
		jo.Queue = DefaultSinkQueue
	}
	if jo.Window <= 0 {
		jo.Window = DefaultPublishWindow
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
	// Each publication times out on its own, from when it was sent: the acks of a
	// window that the stream never answers (a leader lost) all fail together, not one
	// publishTimeout after the other.
	js, err := jetstream.New(c.NATS(), jetstream.WithPublishAsyncMaxPending(jo.Window),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	core := NewSink(c, o)
	for _, t := range []wire.SubjectTemplate{core.o.HangSubject, core.o.ResolvedSubject, core.o.UnresolvedSubject} {
		// The stream republishes hangwatch.out.<first token>.<rest> on <first token>.<rest>:
		// a republication onto the whole of its own subjects, one token and all, would be a
		// cycle, which the server refuses.
		if !strings.Contains(t.String(), ".") {
			return nil, fmt.Errorf("%w: output subject %q: in JetStream mode an output subject needs at least two tokens (e.g. %q)",
				ErrJetStream, t.String(), "voice."+t.String())
		}
	}
	want := HangStreamConfig(jo.Stream, core.o.Wildcards(), jo)
	st, err := ensureStream(ctx, js, want, log)
	if err != nil {
		return nil, err
	}
	if have := st.CachedInfo().Config; !slices.Equal(have.Subjects, want.Subjects) || have.RePublish == nil ||
		*have.RePublish != *want.RePublish || !have.AllowDirect {
		// A stream of hangwatch v1 (on the outputs' own subjects), or of other templates.
		upd := have
		upd.Subjects, upd.RePublish, upd.AllowDirect = want.Subjects, want.RePublish, true
		if st, err = js.UpdateStream(ctx, upd); err != nil {
			return nil, jsError("update hang stream "+jo.Stream+" to store on "+StorePrefix+".> and republish", err)
		}
		log.Warn("hang stream updated: outputs are stored on "+StorePrefix+".> and republished on their own subjects",
			zap.String("stream", jo.Stream), zap.Strings("subjects", want.Subjects))
	}
	dups := st.CachedInfo().Config.Duplicates
	if dups < jo.Duplicates {
		log.Warn("the hang stream's duplicate window is short: an output published again after a longer outage may go out twice",
			zap.String("stream", jo.Stream), zap.Duration("duplicates", dups), zap.Duration("want", jo.Duplicates))
	}
	return &JetStreamSink{
		core:    core,
		js:      js,
		st:      st,
		stream:  jo.Stream,
		window:  jo.Window,
		dups:    dups,
		log:     log,
		limited: limitedOr(jo.Limited, log),
		queue:   make(chan queued, jo.Queue),
		stop:    make(chan struct{}),
		sealed:  make(chan struct{}),
	}, nil
}

// StoreSubjects returns the subjects the hang stream stores the outputs of wildcards on.
func StoreSubjects(wildcards []string) []string {
	subjects := make([]string, len(wildcards))
	for i, w := range wildcards {
		subjects[i] = StorePrefix + "." + w
	}
	return subjects
}

// HangStreamConfig returns the configuration of the hang stream over the outputs'
// wildcards: stored under StorePrefix, republished on the outputs' own subjects.
func HangStreamConfig(name string, wildcards []string, jo JetStreamSinkOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "hangwatch: hang, hang-resolved and hang-unresolved events, republished once on their subjects",
		Subjects:    StoreSubjects(wildcards),
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      jo.MaxAge,
		Duplicates:  jo.Duplicates,
		Replicas:    jo.Replicas,
		AllowDirect: true,
		// hangwatch.out.<first token>.<rest> → <first token>.<rest>
		RePublish: &jetstream.RePublish{Source: StorePrefix + ".*.>", Destination: "{{wildcard(1)}}.>"},
	}
}

// Publish queues out for publication. It waits only while the queue is full.
func (s *JetStreamSink) Publish(callID string, out *detector.Output) error {
	msg, buf := s.core.message(callID, out, StorePrefix)
	msg.Data = slices.Clone(msg.Data) // the queue outlives the pooled buffer
	s.core.bufs.Put(buf)
	armed := time.Unix(0, out.Wall-(out.At-out.Armed)).UnixMilli()
	msg.Header.Set(HeaderArmed, strconv.FormatInt(armed, 10))
	q := queued{msg: msg, kind: out.Kind, callID: callID, armed: armed, check: out.Rebuilt || out.Late, at: time.Now()}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, ErrSinkClosed)
	}
	// Counted before it is queued: Run may finish it at once.
	s.stats.queued.Add(1)
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
	case <-s.stop:
		s.stats.queued.Add(-1)
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, ErrSinkClosed)
	}
}

// Fitted returns how many outputs were cut to fit the server's max payload.
func (s *JetStreamSink) Fitted() int64 { return s.core.Fitted() }

// Close seals the queue: Publish refuses what comes after, and Run returns once it has
// published what is queued (or its ctx is done first).
func (s *JetStreamSink) Close() {
	s.once.Do(func() {
		// Wake the Publish calls that wait for room, so that they let go of mu; seal
		// once they have: what they enqueued before is in the queue Run drains.
		close(s.stop)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.sealed)
	})
}

// inflight is an output awaiting its ack.
type inflight struct {
	q   queued
	ack jetstream.PubAckFuture
}

// Run publishes the queue until Close has sealed it and it is empty, or until ctx is
// done: then it gives up on what is left, reports how much, and returns; the sink is
// closed then, so that a later Publish says it was not published.
func (s *JetStreamSink) Run(ctx context.Context) error {
	acks := make(chan inflight, s.window)
	var wg sync.WaitGroup
	wg.Go(func() { s.confirm(ctx, acks) })
	err := s.send(ctx, acks)
	close(acks)
	wg.Wait()
	if err != nil {
		// Given up: seal the queue, so that nothing waits there for no one, and count
		// what it holds.
		s.Close()
		for len(s.queue) > 0 {
			<-s.queue
			s.finish(&s.stats.unpublished)
		}
	}
	if n := s.stats.unpublished.Load(); n > 0 {
		s.log.Error("outputs not published: a restart detects the stalls still unanswered again", zap.Int64("outputs", n))
		return fmt.Errorf("JetStream sink: %d outputs not published: %w", n, err)
	}
	return nil
}

// send publishes the queue asynchronously, in order, handing each publication to
// confirm.
func (s *JetStreamSink) send(ctx context.Context, acks chan<- inflight) error {
	for {
		var q queued
		select {
		case q = <-s.queue:
		case <-s.sealed:
			select {
			case q = <-s.queue:
			default:
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if q.check && s.wentOut(ctx, q) {
			s.finish(&s.stats.skipped)
			continue
		}
		for attempt := 0; ; attempt++ {
			ack, err := s.js.PublishMsgAsync(q.msg)
			if err == nil {
				s.stats.inflight.Add(1)
				acks <- inflight{q, ack}
				break
			}
			s.stats.errors.Add(1)
			if !sleepCtx(ctx, backoff(attempt)) {
				s.finish(&s.stats.unpublished)
				return ctx.Err()
			}
			s.stats.retries.Add(1)
		}
	}
}

// confirm waits for the acks in order; a publication that failed is published again,
// synchronously, until the stream has it. Once ctx is done, what has no ack yet is
// given up.
func (s *JetStreamSink) confirm(ctx context.Context, acks <-chan inflight) {
	for f := range acks {
		var err error
		select {
		case ack := <-f.ack.Ok():
			s.stored(f.q, ack)
		case err = <-f.ack.Err(): // an ack that did not come within publishTimeout too
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.stats.inflight.Add(-1)
		if err != nil && !s.retry(ctx, f.q, err) {
			s.finish(&s.stats.unpublished)
		}
	}
}

// retry publishes q until the stream acknowledges it; it returns false when ctx is done
// first. An output the stream refuses for good is dropped, logged and counted. The
// first retry goes at once (the failed attempt took its time already: the window behind
// it waits), the next ones after a backoff.
func (s *JetStreamSink) retry(ctx context.Context, q queued, err error) bool {
	for attempt := 0; ; attempt++ {
		s.stats.errors.Add(1)
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			s.finish(&s.stats.dropped)
			s.log.Error("output dropped: the hang stream refuses it", zap.String("call_id", q.callID),
				zap.Stringer("kind", q.kind), zap.Int("bytes", len(q.msg.Data)), zap.Error(err))
			return true
		}
		var d time.Duration
		if attempt > 0 {
			d = backoff(attempt - 1)
		}
		s.limited.Warn("publish to the hang stream: retrying", zap.String("subject", q.msg.Subject), zap.Duration("in", d), zap.Error(err))
		if ctx.Err() != nil || !sleepCtx(ctx, d) {
			return false
		}
		s.stats.retries.Add(1)
		if time.Since(q.at) > s.dups/2 && s.wentOut(ctx, q) {
			// Retried so long that the stream's duplicate window may no longer hold a
			// second copy back: another member (this one was cut off) may have published
			// it meanwhile.
			s.finish(&s.stats.skipped)
			return true
		}
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		var ack *jetstream.PubAck
		ack, err = s.js.PublishMsg(actx, q.msg)
		cancel()
		if err == nil {
			s.stored(q, ack)
			return true
		}
	}
}

func (s *JetStreamSink) stored(q queued, ack *jetstream.PubAck) {
	if ack.Duplicate {
		s.stats.duplicates.Add(1)
	}
	s.finish(&s.stats.published[q.kind])
}

// finish counts an output that is done with, in c and as finished.
func (s *JetStreamSink) finish(c *atomic.Int64) {
	c.Add(1)
	s.stats.finished.Add(1)
}

// flushPoll is how often Flush looks whether the outputs it waits for are done with.
const flushPoll = 2 * time.Millisecond

// Flush waits until every output queued before the call has been stored, found to have
// gone out already, or given up on, or until ctx is done. A member of a group hands a
// partition over only then, so that the next owner sees in the hang stream what this
// one published.
func (s *JetStreamSink) Flush(ctx context.Context) error {
	want := s.stats.queued.Load()
	if s.stats.finished.Load() >= want {
		return nil
	}
	tick := time.NewTicker(flushPoll)
	defer tick.Stop()
	for s.stats.finished.Load() < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush the hang stream's publications: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// wentOut reports whether the stream shows that q, or a later output of its kind for
// its call, went out already: its last output on q's subject has q's Nats-Msg-Id, or is
// of the same call (a subject template may leave the call out) for a stretch that began
// later. When the stream cannot say, q is published: the duplicate window still holds a
// second one back.
func (s *JetStreamSink) wentOut(ctx context.Context, q queued) bool {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	last, err := s.st.GetLastMsgForSubject(ctx, q.msg.Subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false
	case err != nil:
		s.limited.Warn("could not ask the hang stream whether an output went out: publishing it", zap.Error(err))
		return false
	}
	// An id MsgID had to encode (a ':', '%' or control character in it) was written
	// unencoded by earlier versions, which the stream may hold (legacy), as NATS carried
	// it.
	id, lastID := q.msg.Header.Get(nats.MsgIdHdr), last.Header.Get(nats.MsgIdHdr)
	legacy := asHeader(wire.LegacyMsgID(id))
	switch {
	case lastID == id, lastID == legacy:
		return true
	case !strings.HasPrefix(lastID, id[:strings.IndexByte(id, ':')+1]) &&
		(legacy == id || !strings.HasPrefix(lastID, asHeader(q.callID+":"))):
		return false // another call's: the call id as MsgID encodes it, up to its ':'
	}
	armed, err := strconv.ParseInt(last.Header.Get(HeaderArmed), 10, 64)
	return err == nil && armed > q.armed
}

// Stats returns the sink's counters.
func (s *JetStreamSink) Stats() JetStreamSinkStats {
	st := JetStreamSinkStats{
		Published:   map[detector.Kind]int64{},
		Duplicates:  s.stats.duplicates.Load(),
		AlreadyOut:  s.stats.skipped.Load(),
		Errors:      s.stats.errors.Load(),
		Retries:     s.stats.retries.Load(),
		Dropped:     s.stats.dropped.Load(),
		QueueWaits:  s.stats.waits.Load(),
		Queued:      int64(len(s.queue)),
		InFlight:    s.stats.inflight.Load(),
		Unpublished: s.stats.unpublished.Load(),
	}
	for k := detector.KindHang; k <= detector.KindUnresolved; k++ {
		st.Published[k] = s.stats.published[k].Load()
	}
	return st
}

// asHeader returns v as a NATS header carries it: trimmed of white space, its line
// breaks made spaces (nats.go's writeHeaderValue).
func asHeader(v string) string { return headerBreaks.Replace(textproto.TrimString(v)) }

var headerBreaks = strings.NewReplacer("\r", " ", "\n", " ")
