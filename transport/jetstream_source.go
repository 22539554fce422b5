package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/engine"
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
	// 100,000): the engine's in-flight budget holds fewer, so that under overload the
	// backlog stays in the stream.
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
		o.MaxAckPending = 100_000
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
	// infoTimeout bounds the consumer info request of a proof.
	infoTimeout = 2 * time.Second
)

// ErrDurableLost is wrapped by the error of Run when the durable consumer was deleted
// under it. Restarting hangwatch replays the stored calls and creates it anew.
var ErrDurableLost = errors.New("durable consumer lost")

// JetStreamSource reads the events from a JetStream stream, so that hangwatch survives
// its own restarts and those of NATS. Run rebuilds the live calls from the stream (a
// replay, under Hold), then consumes live through a durable consumer; the engine
// acknowledges each event once applied (Message.Done). Bad input is counted, logged and
// dead-lettered as by Source, then terminated so that the server does not deliver it
// again.
//
// # Evidence
//
// The durable delivers in stored order, and every event is received at its stored time
// (never after the engine's clock): each delivery is a mark at its stored time
// (Intake.DeliverOrdered), so a deadline that passed before a stored event fires before
// it is applied, whatever the engine's own pauses, and a backlog applied after an outage
// gives the verdicts live delivery would have. While nothing arrives, a proof asks the
// consumer's info: nothing pending, and every delivery the server counts received, is a
// mark at the time the question was asked. A delivery lost in flight (a consumer
// sequence skipped, after a reconnection) is redelivered later, out of order: until the
// consumer's ack floor has passed every stream sequence seen before, deliveries are no
// marks and proofs give none, so nothing fires on the strength of a stream order that no
// longer holds. While the server or the stream is unreachable, nothing is marked.
//
// # From replay to live, without a gap
//
// NewJetStreamSource gets or creates the durable consumer before anything is read. A
// durable it creates starts with DeliverPolicy New, at the stream's last sequence of that
// moment; one that exists resumes from its ack floor. Either way Run delivers every
// message stored after NewJetStreamSource returns, and every message the previous engine
// was handed but had not applied. The replay, an ordered consumer with
// DeliverLastPerSubject (DeliverAll when the stream keeps a few messages per subject),
// reads the latest message of every subject up to the stream's last sequence as of its
// start. Replay and live overlap; a snapshot delivered twice or
// late changes nothing (SPEC §2).
type JetStreamSource struct {
	conn    *Conn
	o       SourceOptions
	rejects *Rejects
	js      jetstream.JetStream
	stream  jetstream.Stream
	durable jetstream.Consumer // what Run starts consuming from; resume finds it anew
	created bool               // this source created the durable (Abandon deletes it)
	so      StreamOptions
	co      ConsumerOptions
	pool    sync.Pool
	probe   chan struct{}
	// lostAfter is how long the durable may be missing before Run gives up
	// (durableLostAfter; tests shorten it).
	lostAfter time.Duration
	ready     atomic.Bool
	stats     jsSourceCounters

	// mu orders deliveries and the marks of proofs: a proof's mark goes after every
	// delivery the server counted when it answered.
	mu       sync.Mutex
	in       engine.Intake
	lastCons uint64 // the highest consumer sequence received
	lastSeq  uint64 // the highest stream sequence received
	lossTo   uint64 // a delivery was lost: no marks until the ack floor reaches this
	covered  uint64 // the replay covered every message stored up to this sequence
	// A proof waits (proving) for this consumer sequence to mark proofAt, unless the
	// stream's leader knew of a message of the subjects not received yet (next, 0 for
	// none): then for it, to ask again.
	proving       bool
	pending, next uint64
	proofAt       time.Time
}

var (
	_ engine.Source = (*JetStreamSource)(nil)
	_ engine.Prober = (*JetStreamSource)(nil)
)

type jsSourceCounters struct {
	replayed, replaySkipped   atomic.Int64
	acked, ackErrors          atomic.Int64
	redelivered, consumeError atomic.Int64
	lost, probes, probeErrors atomic.Int64
}

// JetStreamStats are the counters of a JetStreamSource.
type JetStreamStats struct {
	RejectStats
	// Replayed counts the stored events that replays handed to the engine;
	// ReplaySkipped those that were dead letters.
	Replayed, ReplaySkipped int64
	// Acked counts the live events acknowledged, once applied or, for bad input, once
	// dead-lettered; AckErrors the acknowledgements that could not be sent (the server
	// delivers those events again, which changes nothing).
	Acked, AckErrors int64
	// Redelivered counts the live events delivered more than once; LostDeliveries the
	// deliveries that never arrived (they are redelivered).
	Redelivered, LostDeliveries int64
	// ConsumeErrors counts the errors the live consumer recovered from: missed
	// heartbeats (a server restart), a consumer closed by the server.
	ConsumeErrors int64
	// Probes and ProbeErrors count the proofs of progress tried and failed.
	Probes, ProbeErrors int64
}

// jsMsg is a message of the stream as the engine sees it.
type jsMsg struct {
	m      jetstream.Msg
	stored time.Time
	src    *JetStreamSource
	live   bool // acknowledged when done; a replay's ordered consumer takes no acks
}

var _ engine.Lasting = (*jsMsg)(nil)

// Lasting implements engine.Lasting: nats.go allocates each message's bytes anew.
func (m *jsMsg) Lasting() {}

func (m *jsMsg) Data() []byte                { return m.m.Data() }
func (m *jsMsg) Received() (time.Time, bool) { return m.stored, true }
func (m *jsMsg) Partition() int              { return -1 }
func (m *jsMsg) Done() {
	if m.live {
		m.src.settled(m.m.Ack())
	}
	m.src.put(m)
}
func (m *jsMsg) Reject(err error) {
	reason := m.src.rejects.Reject(m.m.Subject(), m.m.Data(), err)
	if m.live {
		m.src.settled(m.m.TermWithReason("bad input: " + reason.String()))
	}
	m.src.put(m)
}

func (s *JetStreamSource) put(m *jsMsg) {
	*m = jsMsg{src: s}
	s.pool.Put(m)
}

// NewJetStreamSource returns a source that reads the stream so describes, through c. It
// creates the stream over o.Subjects when it is missing, and gets or creates the durable
// consumer co describes, which filters on o.Subjects; both are retried while the server
// does not answer (a fleet started at once issues the same creates together). Of o,
// Subjects, DeadLetter, DrainTimeout, ProbeEvery, Now (when a proof is asked; the
// engine caps a stored time after its own clock) and Logger apply.
func NewJetStreamSource(ctx context.Context, c *Conn, o SourceOptions, so StreamOptions, co ConsumerOptions) (*JetStreamSource, error) {
	o = o.withDefaults()
	s := &JetStreamSource{conn: c, o: o, so: so.withDefaults(), co: co.withDefaults(), lostAfter: durableLostAfter,
		rejects: NewRejects(c.NATS(), o.DeadLetter, o.Logger, o.Limited), probe: make(chan struct{}, 1)}
	s.pool.New = func() any { return &jsMsg{src: s} }
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
		Replicas:          s.so.Replicas,
	}, s.o.Logger)
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
		Replicas:      s.so.Replicas,
	}
	setFilter(&want, s.o.Subjects)
	where := fmt.Sprintf("durable consumer %s on stream %s", s.co.Durable, s.so.Name)
	var cons jetstream.Consumer
	err := retry(ctx, s.o.Logger, where, func(ctx context.Context) error {
		var err error
		cons, err = s.stream.Consumer(ctx, s.co.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			if cons, err = s.stream.CreateConsumer(ctx, want); err == nil {
				s.created = true
				s.o.Logger.Info("durable consumer created", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable))
			}
		}
		return err
	})
	if err != nil {
		return nil, jsError(where, err)
	}
	if s.created {
		return cons, nil
	}
	have := cons.CachedInfo()
	if have.Config.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("%w: %s exists with ack policy %v; hangwatch needs explicit acks: delete it or choose another --durable",
			ErrJetStream, where, have.Config.AckPolicy)
	}
	if !slices.Equal(filterSubjects(have.Config), s.o.Subjects) || have.Config.AckWait != want.AckWait || have.Config.MaxAckPending != want.MaxAckPending {
		upd := have.Config // its deliver policy and start cannot change
		setFilter(&upd, s.o.Subjects)
		upd.AckWait, upd.MaxAckPending = want.AckWait, want.MaxAckPending
		if cons, err = s.stream.UpdateConsumer(ctx, upd); err != nil {
			return nil, jsError(where, err)
		}
	}
	s.o.Logger.Info("durable consumer resumed", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable),
		zap.Uint64("ack_floor", have.AckFloor.Stream), zap.Int("ack_pending", have.NumAckPending), zap.Uint64("pending", have.NumPending))
	// The durable counts the deliveries it made to the engines before this one: a proof
	// must not wait for this one to receive them (with nothing new stored, it never
	// would, and nothing would ever fire). Every later delivery, a redelivery included,
	// has a higher consumer sequence. What was handed to an engine before and never
	// acknowledged comes again after the ack wait, out of order: as for a delivery lost
	// in flight, no mark until the ack floor has passed it.
	s.mu.Lock()
	s.lastCons, s.lastSeq = have.Delivered.Consumer, have.Delivered.Stream
	if have.NumAckPending > 0 {
		s.lossTo = have.Delivered.Stream
	}
	s.mu.Unlock()
	return cons, nil
}

// Abandon deletes the durable consumer if this source created it: the start it was made
// for failed, and it must not stay behind on the user's stream.
func (s *JetStreamSource) Abandon(ctx context.Context) {
	if !s.created {
		return
	}
	// Two instances started at once may both have created it (identical creates both
	// succeed): one that pulls from it, or was delivered anything, is in use.
	if info, err := s.durable.Info(ctx); err != nil || info.NumWaiting > 0 || info.Delivered.Consumer > 0 {
		s.o.Logger.Info("the durable consumer of a failed start is in use (or unknown): left in place", zap.String("durable", s.co.Durable))
		return
	}
	if err := s.stream.DeleteConsumer(ctx, s.co.Durable); err != nil {
		s.o.Logger.Warn("could not delete the durable consumer of a failed start", zap.String("durable", s.co.Durable), zap.Error(err))
	}
}

// Ready reports whether the source consumes live: the replay is over, it is not
// draining, and the stream answers.
func (s *JetStreamSource) Ready() bool { return s.ready.Load() && s.conn.NATS().IsConnected() }

// Probe implements engine.Prober.
func (s *JetStreamSource) Probe() {
	select {
	case s.probe <- struct{}{}:
	default:
	}
}

// Run replays the stored calls under a hold, then consumes live through the durable
// consumer until ctx is done, through reconnections and server restarts; then it
// drains: the events already pulled are still delivered until the drain timeout after
// ctx was done (those left are delivered again on the next start), and it returns.
func (s *JetStreamSource) Run(ctx context.Context, in engine.Intake) error {
	s.in = in
	in.Hold()
	covered, err := s.replay(ctx, in)
	if err == nil && ctx.Err() == nil {
		// What an engine before this one was handed and never acknowledged (it crashed)
		// was stored by then: the replay applied the latest message of its subject, which
		// holds it. Its redelivery after the ack wait changes nothing, and need not be
		// waited for before any deadline fires.
		s.mu.Lock()
		if s.lossTo != 0 && s.lossTo <= covered {
			s.lossTo = 0
		}
		s.covered = covered
		s.mu.Unlock()
	}
	in.Release()
	if err != nil || ctx.Err() != nil {
		return err
	}
	it, err := s.durable.Messages(s.pullOptions()...)
	if err != nil {
		return jsError("consume "+s.co.Durable, err)
	}
	// The drain timeout runs from when ctx is done, not from when the loop sees it (a
	// delivery may hold the loop meanwhile): it is one deadline with the rest of a
	// shutdown.
	doneAt := make(chan time.Time, 1)
	defer context.AfterFunc(ctx, func() { doneAt <- time.Now() })()
	var wg sync.WaitGroup
	probeCtx, stopProbes := context.WithCancel(ctx)
	wg.Go(func() { s.prober(probeCtx) })
	defer wg.Wait()
	defer stopProbes()
	s.ready.Store(true)
	s.o.Logger.Info("consuming live", zap.String("stream", s.so.Name), zap.String("durable", s.co.Durable), zap.Strings("subjects", s.o.Subjects))
	for ctx.Err() == nil {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err == nil {
			s.handle(msg, true)
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
	s.drain(it, stopped.Add(s.o.DrainTimeout))
	return nil
}

// replay delivers the latest stored message of every subject (every one kept, when the
// stream keeps a few: replayPolicy), in stream order, each received at the time it was
// stored, up to the stream's last sequence as of the call,
// which it returns: every message stored up to it is covered by what it delivered. It
// returns 0 and nil, early, once ctx is done.
func (s *JetStreamSource) replay(ctx context.Context, in engine.Intake) (uint64, error) {
	start := time.Now()
	fail := func(err error) (uint64, error) {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, jsError("replay stream "+s.so.Name, err)
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fail(err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		s.o.Logger.Info("replay: the stream is empty", zap.String("stream", s.so.Name))
		return last, nil
	}
	cons, err := s.js.OrderedConsumer(ctx, s.so.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: s.o.Subjects,
		DeliverPolicy:  replayPolicy(info.Config.MaxMsgsPerSubject),
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
		s.o.Logger.Info("replay: no stored event on the subjects", zap.String("stream", s.so.Name), zap.Strings("subjects", s.o.Subjects))
		return last, nil
	}
	var replayed int64
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fail(err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fail(err)
		}
		if s.rejects.IsDeadLetter(msg.Subject(), msg.Headers()) {
			s.stats.replaySkipped.Add(1)
		} else {
			replayed++
			s.stats.replayed.Add(1)
			m := s.pool.Get().(*jsMsg)
			m.m, m.stored = msg, meta.Timestamp
			in.Deliver(m)
		}
		// Caught up: the replay has reached where the stream stood, or nothing the
		// filter matches is left (the last message may be on another subject).
		if meta.Sequence.Stream >= last || meta.NumPending == 0 {
			break
		}
	}
	s.o.Logger.Info("replayed the stored calls", zap.String("stream", s.so.Name), zap.Int64("events", replayed),
		zap.Uint64("last_seq", last), zap.Duration("took", time.Since(start)))
	return last, nil
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

func (s *JetStreamSource) pullOptions() []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(pullBatch),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	}
}

// handle hands one live message to the engine, received when it was stored, as a mark
// unless a delivery was lost; it is acknowledged by Done. A dead letter that came back
// in is terminated.
func (s *JetStreamSource) handle(msg jetstream.Msg, live bool) {
	if s.rejects.IsDeadLetter(msg.Subject(), msg.Headers()) {
		s.settled(msg.Term())
		// Received all the same: a proof may wait for it.
		if meta, err := msg.Metadata(); err == nil {
			s.mu.Lock()
			s.received(meta.Sequence.Consumer, meta.Sequence.Stream)
			s.markIfProved()
			s.mu.Unlock()
		}
		return
	}
	m := s.pool.Get().(*jsMsg)
	m.m, m.live, m.stored = msg, live, s.o.Now()
	meta, err := msg.Metadata()
	if err != nil { // no server sends a message without it
		s.mu.Lock()
		s.in.Deliver(m)
		s.mu.Unlock()
		return
	}
	m.stored = meta.Timestamp
	if meta.NumDelivered > 1 {
		s.stats.redelivered.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received(meta.Sequence.Consumer, meta.Sequence.Stream)
	if s.lossTo == 0 && meta.NumDelivered == 1 {
		s.in.DeliverOrdered(m)
	} else {
		s.in.Deliver(m)
	}
	s.markIfProved()
}

// received counts a delivery of consumer sequence cons and stream sequence seq; s.mu is
// held.
func (s *JetStreamSource) received(cons, seq uint64) {
	if s.lastCons != 0 && cons > s.lastCons+1 {
		// Deliveries lost in flight: they come again, after AckWait, out of stored order.
		s.stats.lost.Add(int64(cons - s.lastCons - 1))
		s.lossTo = max(s.lossTo, s.lastSeq, seq)
		s.limited().Warn("deliveries lost in flight: waiting for their redelivery before any deadline fires",
			zap.Uint64("from", s.lastCons+1), zap.Uint64("to", cons-1))
	}
	s.lastCons, s.lastSeq = max(s.lastCons, cons), max(s.lastSeq, seq)
}

// markIfProved marks the time of the proof that waits once every delivery it counted
// has been received, and the stream's leader knew of no message of the subjects not
// received yet. When it knew of one, the proof ends without a mark once that one is
// received, and another is asked for: messages may have been stored after it before
// the proof began. s.mu is held.
func (s *JetStreamSource) markIfProved() {
	if !s.proving || s.lastCons < s.pending || s.lossTo != 0 {
		return
	}
	switch {
	case s.next == 0:
		s.in.Mark(s.proofAt)
	case max(s.lastSeq, s.covered) >= s.next:
		s.Probe()
	default:
		return
	}
	s.proving = false
}

func (s *JetStreamSource) limited() *zap.Logger { return s.rejects.limited }

// prober proves the input's progress on request and every ProbeEvery, while Run
// consumes live.
func (s *JetStreamSource) prober(ctx context.Context) {
	tick := time.NewTicker(s.o.ProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.probe:
		case <-tick.C:
		}
		for err := s.prove(ctx); err != nil && ctx.Err() == nil; err = s.prove(ctx) {
			// Nothing fires until a proof succeeds: say why (a server unreachable, or
			// credentials that may not ask the stream's API).
			s.limited().Warn("proof of the input failed: no deadline fires until one succeeds", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(probeRetry):
			}
		}
	}
}

// prove asks the consumer's info at t, then the stream's leader for a message of the
// subjects not received yet: when nothing is pending, every delivery the consumer counts
// has been, or will be, received, and there is no such message, the mark at t (or at
// the server's time of the answer, when earlier) follows the last of them. The stream's
// leader is asked because the consumer answers from its own replica, which may lag
// behind what the stream stored (nextStored). A lost delivery blocks marks until the ack
// floor passes it.
func (s *JetStreamSource) prove(ctx context.Context) error {
	s.stats.probes.Add(1)
	t := s.o.Now()
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := s.durable.Info(ctx)
	if err != nil {
		s.stats.probeErrors.Add(1)
		return err
	}
	s.mu.Lock()
	from := max(s.lastSeq, s.covered) + 1
	s.mu.Unlock()
	next, err := nextStored(ctx, s.conn.NATS(), s.so.Name, s.o.Subjects, from)
	if err != nil {
		s.stats.probeErrors.Add(1)
		return err
	}
	// Stored times, which the deliveries mark at, are read from the server's clock: a
	// local clock ahead of it would mark past what the server has stored, and a deadline
	// would fire before the messages it stores next. So mark no later than the server's
	// clock when it answered.
	if ts := info.TimeStamp; !ts.IsZero() && ts.Before(t) {
		t = ts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lossTo != 0 && info.AckFloor.Stream >= s.lossTo {
		s.lossTo = 0 // every lost delivery came again and was applied
	}
	if info.NumPending > 0 || s.lossTo != 0 {
		return nil // a backlog is on its way: its deliveries are marks themselves
	}
	s.proving, s.pending, s.next, s.proofAt = true, info.Delivered.Consumer, next, t
	s.markIfProved()
	return nil
}

// recover handles an error of the live iterator and returns the iterator to go on with:
// the same one, or a new one when the server closed it; nil and no error once ctx is
// done.
func (s *JetStreamSource) recover(ctx context.Context, it jetstream.MessagesContext, err error) (jetstream.MessagesContext, error) {
	s.stats.consumeError.Add(1)
	switch {
	case s.conn.NATS().IsClosed():
		return nil, fmt.Errorf("consume %s: %w", s.co.Durable, s.conn.closedForGood(s.o.Logger, err))
	case errors.Is(err, jetstream.ErrNoHeartbeat):
		// The pull request went with a server or a connection, and the next call pulls
		// anew; or with the durable, deleted while no pull was pending to hear of it, and
		// no pull ever will.
		ictx, cancel := context.WithTimeout(ctx, infoTimeout)
		_, ierr := s.durable.Info(ictx)
		cancel()
		if errors.Is(ierr, jetstream.ErrConsumerNotFound) {
			s.o.Logger.Error("live consumer missing: resuming", zap.String("durable", s.co.Durable))
			it.Stop()
			return s.resume(ctx)
		}
		s.limited().Warn("live consumer: no heartbeat, pulling again", zap.String("durable", s.co.Durable))
		return it, nil
	case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest):
		s.o.Logger.Error("live consumer closed by the server: resuming", zap.String("durable", s.co.Durable), zap.Error(err))
		it.Stop()
		return s.resume(ctx)
	default:
		// Transient; should the iterator have stopped, the next call says so.
		s.limited().Warn("live consumer", zap.String("durable", s.co.Durable), zap.Error(err))
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
				s.durable = cons
				s.o.Logger.Info("live consumer resumed", zap.String("durable", s.co.Durable))
				return it, nil
			}
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) && time.Now().After(lostAt) {
			return nil, fmt.Errorf("%w: %w %s on stream %s: restart to replay the stored calls", ErrJetStream, ErrDurableLost, s.co.Durable, s.so.Name)
		}
		s.limited().Warn("live consumer: resuming", zap.String("durable", s.co.Durable), zap.Error(err))
		if !sleepCtx(ctx, backoff(attempt)) {
			return nil, nil
		}
	}
}

// drain stops pulling and delivers what was pulled already, until deadline.
func (s *JetStreamSource) drain(it jetstream.MessagesContext, deadline time.Time) {
	if !drainIterator(it, deadline, func(msg jetstream.Msg) bool { s.handle(msg, true); return true }) {
		s.o.Logger.Warn("live consumer: drain not done; the server delivers the rest again on the next start",
			zap.Duration("drain_timeout", s.o.DrainTimeout))
	}
}

// drainIterator stops it pulling and hands what it pulled already to handle, until
// deadline or until handle says stop. It reports false when the deadline came first.
func drainIterator(it jetstream.MessagesContext, deadline time.Time, handle func(jetstream.Msg) bool) bool {
	it.Drain()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				it.Stop()
				return false
			}
			return true
		}
		if !handle(msg) {
			it.Stop()
			return true
		}
	}
}

func (s *JetStreamSource) settled(err error) {
	if err != nil {
		s.stats.ackErrors.Add(1)
		s.limited().Warn("could not acknowledge: the server will deliver the event again", zap.Error(err))
		return
	}
	s.stats.acked.Add(1)
}

// Stats returns the source's counters.
func (s *JetStreamSource) Stats() JetStreamStats {
	return JetStreamStats{
		RejectStats:    s.rejects.Stats(),
		Replayed:       s.stats.replayed.Load(),
		ReplaySkipped:  s.stats.replaySkipped.Load(),
		Acked:          s.stats.acked.Load(),
		AckErrors:      s.stats.ackErrors.Load(),
		Redelivered:    s.stats.redelivered.Load(),
		LostDeliveries: s.stats.lost.Load(),
		ConsumeErrors:  s.stats.consumeError.Load(),
		Probes:         s.stats.probes.Load(),
		ProbeErrors:    s.stats.probeErrors.Load(),
	}
}
