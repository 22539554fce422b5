package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// ConsumerOptions configures the durable consumer that a JetStreamSource reads live
// through.
type ConsumerOptions struct {
	// Durable is the consumer's name (default DefaultDurable). One engine reads one
	// durable: engines sharing it would split the events of a call between them.
	Durable string
	// AckWait is how long the server waits for the acknowledgement of a delivered event
	// before it delivers it again (default 30 s). An event is acknowledged once the
	// engine has applied it; a redelivery changes nothing.
	AckWait time.Duration
	// MaxAckPending bounds the events delivered and not yet acknowledged (default
	// 1,000,000): far above what the pull buffer and the engine's queues hold, so that
	// it never throttles.
	MaxAckPending int
}

func (o ConsumerOptions) withDefaults() ConsumerOptions {
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1_000_000
	}
	return o
}

const (
	// pullBatch is how many events a consumer buffers in the client.
	pullBatch = 1024
	// pullExpiry and pullHeartbeat: a pull request lives pullExpiry, and the server
	// sends an idle heartbeat every pullHeartbeat, so that a pull request lost with a
	// server is noticed, and renewed, within two heartbeats.
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
	// durableLostAfter is how long the durable may be missing, once the server closed
	// the live consumer, before Run gives up.
	durableLostAfter = 30 * time.Second
	// cleanupTimeout bounds the deletion of the replay's consumer.
	cleanupTimeout = 2 * time.Second
)

// ErrDurableLost is wrapped by the error of Run when the durable consumer was deleted
// under it. Restarting hangwatch replays the stored calls and creates it anew.
var ErrDurableLost = errors.New("durable consumer lost")

// JetStreamSource reads the events from a JetStream stream, so that hangwatch survives
// its own restarts and those of NATS. It implements engine.Replayer: Replay rebuilds the
// live calls from the stream, then Run consumes live through a durable consumer and
// acknowledges each event once the engine has applied it (in ev.Done). Bad input is
// counted, logged and dead-lettered as by Source, then terminated so that the server
// does not deliver it again.
//
// # From replay to live, without a gap
//
// NewJetStreamSource gets or creates the durable consumer before anything is read. A
// durable it creates starts with DeliverPolicy New, at the stream's last sequence of that
// moment; one that exists resumes from its ack floor. Either way Run delivers every
// message stored after NewJetStreamSource returns, and every message the previous engine
// was handed but had not applied, since it acknowledged only what it had applied. Replay
// starts after that: an ordered consumer with DeliverLastPerSubject reads the latest
// message of every subject, in stream order, up to the stream's last sequence as of the
// start of the replay. What was stored before the durable existed, or below its ack
// floor, is thus in the replay as the latest message of its subject, and what comes after
// is live: there is no gap.
//
// Replay and live overlap: a message stored between the creation of the durable and the
// end of the replay, or one applied whose acknowledgement was lost, reaches the engine
// twice, and Run can hand over a message older than one the replay gave. That changes
// nothing (SPEC §2): a conversation-update is a whole snapshot, so the same snapshot
// twice is applied once and one with fewer messages is stale; status-only events never
// regress a call; events after an end are ignored. Detection never depends on seeing
// every update, which is also why a stream that keeps only the latest message of each
// subject loses nothing that matters.
//
// Every event is received at the time the stream stored it, in the replay and live, but
// never after the source's Now. The engine holds every deadline until Replay returns, so
// a stall whose deadline passed while hangwatch was down is reported at once, and one
// that was answered or ended meanwhile is not: its answer or end comes later in the
// same replay.
type JetStreamSource struct {
	intake
	js      jetstream.JetStream
	stream  jetstream.Stream
	durable jetstream.Consumer // what Run starts consuming from; resume finds it anew
	so      StreamOptions
	co      ConsumerOptions
	// lostAfter is how long the durable may be missing before Run gives up
	// (durableLostAfter; tests shorten it).
	lostAfter time.Duration
	jsStats   jsSourceCounters
}

type jsSourceCounters struct {
	replayed, replaySkipped   atomic.Int64
	acked, ackErrors          atomic.Int64
	redelivered, consumeError atomic.Int64
}

// JetStreamStats are the counters of a JetStreamSource.
type JetStreamStats struct {
	SourceStats
	// Replayed counts the stored events that replays handed to the engine;
	// ReplaySkipped those that could not be decoded (they were rejected, and
	// dead-lettered, when they first arrived).
	Replayed, ReplaySkipped int64
	// Acked counts the live events acknowledged, once applied or, for bad input, once
	// dead-lettered; AckErrors the acknowledgements that could not be sent (the server
	// delivers those events again, which changes nothing).
	Acked, AckErrors int64
	// Redelivered counts the live events delivered more than once.
	Redelivered int64
	// ConsumeErrors counts the errors the live consumer recovered from: missed
	// heartbeats (a server restart), a consumer closed by the server.
	ConsumeErrors int64
}

// NewJetStreamSource returns a source that reads the stream so describes, through c. It
// creates the stream over o.Subjects when it is missing, and gets or creates the durable
// consumer co describes, which filters on o.Subjects. Of o, Subjects, Limits,
// DeadLetter, DrainTimeout, Now (which caps the stored time an event is received at)
// and Logger apply.
func NewJetStreamSource(ctx context.Context, c *Conn, o SourceOptions, so StreamOptions, co ConsumerOptions) (*JetStreamSource, error) {
	s := &JetStreamSource{so: so.withDefaults(), co: co.withDefaults(), lostAfter: durableLostAfter}
	s.init(c, o)
	s.settle = s.ack
	js, err := jetstream.New(c.NATS())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	s.js = js
	s.stream, err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:              s.so.Name,
		Description:       "hangwatch: the latest event of each kind of each live call",
		Subjects:          s.o.Subjects,
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: s.so.PerSubject,
		MaxAge:            s.so.MaxAge,
	}, s.log)
	if err != nil {
		return nil, err
	}
	if s.durable, err = s.ensureDurable(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureDurable gets the durable consumer, or creates it to deliver what is stored from
// now on. One that exists resumes where it stands; it takes the subjects and limits of
// this run.
func (s *JetStreamSource) ensureDurable(ctx context.Context) (jetstream.Consumer, error) {
	want := jetstream.ConsumerConfig{
		Durable:       s.co.Durable,
		Description:   "hangwatch: live events, acknowledged once applied",
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.co.AckWait,
		MaxAckPending: s.co.MaxAckPending,
		MaxDeliver:    -1,
	}
	setFilter(&want, s.o.Subjects)
	fail := func(err error) (jetstream.Consumer, error) {
		return nil, fmt.Errorf("%w: durable consumer %s on stream %s: %w", ErrJetStream, s.co.Durable, s.so.Name, err)
	}
	cons, err := s.stream.Consumer(ctx, s.co.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = s.stream.CreateConsumer(ctx, want)
		if err == nil {
			s.log.Info("durable consumer created", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable))
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = s.stream.Consumer(ctx, s.co.Durable) // another engine created it meanwhile
		}
	}
	if err != nil {
		return fail(err)
	}
	have := cons.CachedInfo()
	if have.Config.AckPolicy != jetstream.AckExplicitPolicy {
		return fail(fmt.Errorf("it exists with ack policy %v; hangwatch needs explicit acks: delete it or choose another name", have.Config.AckPolicy))
	}
	if !slices.Equal(filterSubjects(have.Config), s.o.Subjects) || have.Config.AckWait != want.AckWait || have.Config.MaxAckPending != want.MaxAckPending {
		upd := have.Config // its deliver policy and start cannot change
		setFilter(&upd, s.o.Subjects)
		upd.AckWait, upd.MaxAckPending = want.AckWait, want.MaxAckPending
		if cons, err = s.stream.UpdateConsumer(ctx, upd); err != nil {
			return fail(err)
		}
	}
	s.log.Info("durable consumer resumed", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable),
		zap.Uint64("ack_floor", have.AckFloor.Stream), zap.Int("ack_pending", have.NumAckPending), zap.Uint64("pending", have.NumPending))
	return cons, nil
}

// Ready reports whether the source consumes live: the replay is over, and it is not
// draining.
func (s *JetStreamSource) Ready() bool { return s.ready.Load() }

// Replay delivers the latest stored message of every subject, in stream order, each
// received at the time it was stored, up to the stream's last sequence as of the call;
// then it returns. A stored message that cannot be decoded is skipped (it was rejected
// when it first arrived). It returns nil, early, once ctx is done.
func (s *JetStreamSource) Replay(ctx context.Context, deliver func(*detector.Event)) error {
	start := time.Now()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: replay stream %s: %w", ErrJetStream, s.so.Name, err)
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fail(err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		s.log.Info("replay: the stream is empty", zap.String("stream", s.so.Name))
		return nil
	}
	cons, err := s.js.OrderedConsumer(ctx, s.so.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: s.o.Subjects,
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fail(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		return fail(err)
	}
	defer s.endReplay(cons, it)
	// With nothing to deliver, no message would come to say so.
	ci, err := cons.Info(ctx)
	if err != nil {
		return fail(err)
	}
	if ci.NumPending == 0 && ci.Delivered.Consumer == 0 {
		s.log.Info("replay: no stored event on the subjects", zap.String("stream", s.so.Name), zap.Strings("subjects", s.o.Subjects))
		return nil
	}
	var replayed, skipped int64
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fail(err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fail(err)
		}
		if p, err := s.decode(msg.Data(), s.stored(meta.Timestamp).UnixNano()); err != nil {
			skipped++
			s.jsStats.replaySkipped.Add(1)
			reason, _ := wire.BadInputReason(err)
			s.limited.Warn("replay: stored event skipped: "+reason.String(), zap.String("subject", msg.Subject()), zap.Error(err))
		} else {
			replayed++
			s.jsStats.replayed.Add(1)
			deliver(&p.ev)
		}
		// Caught up: the replay has reached where the stream stood, or nothing the
		// filter matches is left (the last message may be on another subject).
		if meta.Sequence.Stream >= last || meta.NumPending == 0 {
			break
		}
	}
	s.log.Info("replayed the stored calls", zap.String("stream", s.so.Name), zap.Int64("events", replayed),
		zap.Int64("skipped", skipped), zap.Uint64("last_seq", last), zap.Duration("took", time.Since(start)))
	return nil
}

// endReplay stops the replay's ordered consumer and deletes it from the server, which
// would otherwise keep it until its inactivity threshold.
func (s *JetStreamSource) endReplay(cons jetstream.Consumer, it jetstream.MessagesContext) {
	it.Stop()
	if ci := cons.CachedInfo(); ci != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_ = s.js.DeleteConsumer(ctx, s.so.Name, ci.Name)
	}
}

// Run consumes live through the durable consumer and hands every event to deliver,
// until ctx is done; it keeps going through reconnections and server restarts. Then it
// drains: the events already pulled are still delivered until the drain timeout after
// ctx was done (those left are delivered again on the next start), and it returns.
func (s *JetStreamSource) Run(ctx context.Context, deliver func(*detector.Event)) error {
	it, err := s.durable.Messages(s.pullOptions()...)
	if err != nil {
		return fmt.Errorf("%w: consume %s: %w", ErrJetStream, s.co.Durable, err)
	}
	// The drain timeout runs from when ctx is done, not from when the loop sees it (a
	// delivery may hold the loop meanwhile): it is one deadline with the rest of a
	// shutdown.
	doneAt := make(chan time.Time, 1)
	defer context.AfterFunc(ctx, func() { doneAt <- time.Now() })()
	s.ready.Store(true)
	s.log.Info("consuming live", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable), zap.Strings("subjects", s.o.Subjects))
	for ctx.Err() == nil {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err == nil {
			s.handle(msg, deliver)
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if it, err = s.recover(ctx, it, err); err != nil || it == nil {
			s.ready.Store(false)
			return err
		}
	}
	s.ready.Store(false)
	stopped := time.Now()
	select {
	case stopped = <-doneAt:
	default: // ctx was done just now
	}
	s.drain(it, deliver, stopped.Add(s.o.DrainTimeout))
	return nil
}

func (s *JetStreamSource) pullOptions() []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(pullBatch),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	}
}

// recover handles an error of the live iterator and returns the iterator to go on with:
// the same one, or a new one when the server closed it; nil and no error once ctx is
// done.
func (s *JetStreamSource) recover(ctx context.Context, it jetstream.MessagesContext, err error) (jetstream.MessagesContext, error) {
	s.jsStats.consumeError.Add(1)
	switch {
	case s.conn.NATS().IsClosed():
		// Nothing will come any more: end, as Source does, so that the process exits and
		// is restarted rather than live on deaf.
		last := s.conn.NATS().LastError()
		s.log.Error("NATS closed the connection for good", zap.Error(last))
		if last == nil {
			last = err
		}
		return nil, fmt.Errorf("%w: consume %s: %w", ErrConnClosed, s.co.Durable, last)
	case errors.Is(err, jetstream.ErrNoHeartbeat):
		// The pull request went with a server or a connection; the next call pulls anew.
		s.limited.Warn("live consumer: no heartbeat, pulling again", zap.String("durable", s.co.Durable))
		return it, nil
	case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest):
		s.log.Error("live consumer closed by the server: resuming", zap.String("durable", s.co.Durable), zap.Error(err))
		it.Stop()
		return s.resume(ctx)
	default:
		// Transient; should the iterator have stopped, the next call says so.
		s.limited.Warn("live consumer", zap.String("durable", s.co.Durable), zap.Error(err))
		return it, nil
	}
}

// resume looks the durable up again and consumes anew from its ack floor, retrying
// while the server is unreachable. A durable missing for durableLostAfter is lost: it
// is not recreated here, since what was stored meanwhile would be missed, where a
// restart replays it.
func (s *JetStreamSource) resume(ctx context.Context) (jetstream.MessagesContext, error) {
	lostAt := time.Now().Add(s.lostAfter)
	for attempt := 0; ; attempt++ {
		cons, err := s.stream.Consumer(ctx, s.co.Durable)
		if err == nil {
			var it jetstream.MessagesContext
			if it, err = cons.Messages(s.pullOptions()...); err == nil {
				s.log.Info("live consumer resumed", zap.String("durable", s.co.Durable))
				return it, nil
			}
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) && time.Now().After(lostAt) {
			return nil, fmt.Errorf("%w: %w %s on stream %s: restart to replay the stored calls", ErrJetStream, ErrDurableLost, s.co.Durable, s.so.Name)
		}
		s.limited.Warn("live consumer: resuming", zap.String("durable", s.co.Durable), zap.Error(err))
		if !sleepCtx(ctx, backoff(attempt)) {
			return nil, nil
		}
	}
}

// drain stops pulling and delivers what was pulled already, until deadline.
func (s *JetStreamSource) drain(it jetstream.MessagesContext, deliver func(*detector.Event), deadline time.Time) {
	it.Drain()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				it.Stop()
				s.log.Warn("live consumer: drain not done; the server delivers the rest again on the next start",
					zap.Duration("drain_timeout", s.o.DrainTimeout))
			}
			return
		}
		s.handle(msg, deliver)
	}
}

// handle decodes one live message, received when it was stored, and delivers it; it is
// acknowledged by the event's Done. Bad input is dead-lettered, then terminated.
func (s *JetStreamSource) handle(msg jetstream.Msg, deliver func(*detector.Event)) {
	if s.deadLetter(msg.Subject(), msg.Headers()) {
		s.settled(msg.Term())
		return
	}
	received := s.o.Now() // only if the metadata cannot be read, which no server causes
	if meta, err := msg.Metadata(); err == nil {
		received = s.stored(meta.Timestamp)
		if meta.NumDelivered > 1 {
			s.jsStats.redelivered.Add(1)
		}
	}
	p, err := s.decode(msg.Data(), received.UnixNano())
	if err != nil {
		reason := s.reject(msg.Subject(), msg.Data(), err)
		s.settled(msg.TermWithReason("bad input: " + reason.String()))
		return
	}
	p.msg = msg
	deliver(&p.ev)
}

// stored returns when an event was received: the time the server stored it, but never
// after the local clock. A server whose clock runs ahead must not move the engine's
// deadlines, which run on the local clock, into its future.
func (s *JetStreamSource) stored(at time.Time) time.Time {
	if now := s.o.Now(); at.After(now) {
		return now
	}
	return at
}

// ack is the settle of the intake: the engine has applied the event.
func (s *JetStreamSource) ack(m jetstream.Msg) { s.settled(m.Ack()) }

func (s *JetStreamSource) settled(err error) {
	if err != nil {
		s.jsStats.ackErrors.Add(1)
		s.limited.Warn("acknowledge: the server will deliver the event again", zap.Error(err))
		return
	}
	s.jsStats.acked.Add(1)
}

// Stats returns the source's counters.
func (s *JetStreamSource) Stats() JetStreamStats {
	return JetStreamStats{
		SourceStats:   s.sourceStats(),
		Replayed:      s.jsStats.replayed.Load(),
		ReplaySkipped: s.jsStats.replaySkipped.Load(),
		Acked:         s.jsStats.acked.Load(),
		AckErrors:     s.jsStats.ackErrors.Load(),
		Redelivered:   s.jsStats.redelivered.Load(),
		ConsumeErrors: s.jsStats.consumeError.Load(),
	}
}
