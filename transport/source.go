package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/engine"
)

// DefaultSubject is the default of --subject.
const DefaultSubject = "voice.events.>"

// SourceOptions configures a Source, or a JetStreamSource (which has no use for
// PendingMsgs and PendingBytes: it pulls).
type SourceOptions struct {
	// Subjects to consume (default DefaultSubject).
	Subjects []string
	// PendingMsgs and PendingBytes bound what a subscription buffers while the engine
	// is behind (defaults 1,000,000 and DefaultPendingBytes); past them NATS drops
	// events, reports a slow consumer, and the source reports an input gap.
	PendingMsgs, PendingBytes int
	// DeadLetter, when set, is the subject rejected events are republished on, with
	// headers that give the reason.
	DeadLetter string
	// DrainTimeout bounds how long Run takes to stop once its context is done: a last
	// proof of its progress, then the drain of its subscriptions (default 10 s).
	DrainTimeout time.Duration
	// ProbeEvery is how often the source proves, unasked, how far its input has caught
	// up (default DefaultProbeEvery); the engine asks in between when a deadline waits.
	ProbeEvery time.Duration
	// Now stamps when an event was received (default time.Now). Tests pass a fake
	// clock's Now.
	Now    func() time.Time
	Logger *zap.Logger
	// Limited logs what a publisher can flood (bad input, refusals, errors of a
	// connection); the caller makes it rate-limited (default Logger).
	Limited *zap.Logger
}

// Defaults of SourceOptions.
const (
	DefaultPendingBytes = 64 << 20
	DefaultProbeEvery   = time.Second
	// probeTimeout bounds a flush round trip: a server that does not answer within it
	// gives no evidence, and nothing fires.
	probeTimeout = 2 * time.Second
)

func (o SourceOptions) withDefaults() SourceOptions {
	if len(o.Subjects) == 0 {
		o.Subjects = []string{DefaultSubject}
	}
	if o.PendingMsgs == 0 {
		o.PendingMsgs = 1_000_000
	}
	if o.PendingBytes == 0 {
		o.PendingBytes = DefaultPendingBytes
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = DefaultProbeEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Limited == nil {
		o.Limited = o.Logger
	}
	return o
}

// Source consumes events from core NATS subscriptions and hands them to the engine.
//
// Its evidence (SPEC §2) is a flush: a round trip to the server begun at t, after which
// every message the server routed to the subscriptions before it is in their queues;
// then a barrier through every subscription's queue, after which each of those messages
// has been handed to the engine; then a mark at t. While disconnected nothing is marked,
// so nothing fires. What core NATS loses — what was published while disconnected,
// what it dropped because the subscription fell behind — is reported as an input gap.
type Source struct {
	conn    *Conn
	o       SourceOptions
	rejects *Rejects
	pool    sync.Pool
	probe   chan struct{} // a probe asked for
	subs    atomic.Pointer[[]*countedSub]
	ready   atomic.Bool
	stats   sourceCounters
}

var (
	_ engine.Source = (*Source)(nil)
	_ engine.Prober = (*Source)(nil)
)

type sourceCounters struct {
	probes, probeErrors, gaps atomic.Int64
}

// countedSub is a subscription with the count of events it dropped as last read: a
// subscription no longer says once it is drained, and the counter must not fall while
// the metrics are still served.
type countedSub struct {
	sub     *nats.Subscription
	dropped atomic.Int64
}

// droppedNow reads the count of dropped events, and keeps it while it can be read.
func (c *countedSub) droppedNow() int64 {
	n, err := c.sub.Dropped()
	for err == nil {
		seen := c.dropped.Load()
		if int64(n) <= seen || c.dropped.CompareAndSwap(seen, int64(n)) {
			break
		}
	}
	return c.dropped.Load()
}

// coreMsg is a message of a core subscription as the engine sees it.
type coreMsg struct {
	m        *nats.Msg
	received time.Time
	src      *Source
}

var _ engine.Lasting = (*coreMsg)(nil)

// Lasting implements engine.Lasting: nats.go allocates each message's bytes anew.
func (m *coreMsg) Lasting() {}

func (m *coreMsg) Data() []byte                { return m.m.Data }
func (m *coreMsg) Received() (time.Time, bool) { return m.received, false }
func (m *coreMsg) Partition() int              { return -1 }
func (m *coreMsg) Done()                       { m.src.put(m) }
func (m *coreMsg) Reject(err error) {
	m.src.rejects.Reject(m.m.Subject, m.m.Data, err)
	m.src.put(m)
}

func (s *Source) put(m *coreMsg) {
	*m = coreMsg{src: s}
	s.pool.Put(m)
}

// NewSource returns a source that consumes through c.
func NewSource(c *Conn, o SourceOptions) *Source {
	o = o.withDefaults()
	s := &Source{conn: c, o: o, rejects: NewRejects(c.NATS(), o.DeadLetter, o.Logger, o.Limited), probe: make(chan struct{}, 1)}
	s.pool.New = func() any { return &coreMsg{src: s} }
	return s
}

// Ready reports whether the source is subscribed, connected and not draining.
func (s *Source) Ready() bool { return s.ready.Load() && s.conn.NATS().IsConnected() }

// Probe implements engine.Prober.
func (s *Source) Probe() {
	select {
	case s.probe <- struct{}{}:
	default:
	}
}

// Run subscribes, hands every event to in until ctx is done, proves its progress with
// marks, then proves it once more, drains its subscriptions (the events NATS already
// holds are still delivered) and returns.
func (s *Source) Run(ctx context.Context, in engine.Intake) error {
	nc := s.conn.NATS()
	handle := func(m *nats.Msg) {
		if s.rejects.IsDeadLetter(m.Subject, m.Header) {
			return
		}
		cm := s.pool.Get().(*coreMsg)
		cm.m, cm.received = m, s.o.Now()
		in.Deliver(cm)
	}
	subs := make([]*nats.Subscription, 0, len(s.o.Subjects))
	for _, subject := range s.o.Subjects {
		sub, err := nc.Subscribe(subject, handle)
		if err == nil {
			err = sub.SetPendingLimits(s.o.PendingMsgs, s.o.PendingBytes)
		}
		if err != nil {
			s.drain(subs, s.o.DrainTimeout)
			return fmt.Errorf("subscribe %q: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	counted := make([]*countedSub, len(subs))
	for i, sub := range subs {
		counted[i] = &countedSub{sub: sub}
	}
	s.subs.Store(&counted)
	// The first mark says the subscriptions are in place: from then on nothing is
	// missed unless reported.
	p := prober{s: s, in: in, last: s.o.Now(), reconnects: nc.Stats().Reconnects}
	// A server that does not answer now (restarting, or paused) is waited for, as it
	// would be later: nothing is marked meanwhile, so nothing fires.
	for attempt := 0; ; attempt++ {
		err := p.prove(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			s.drain(subs, s.o.DrainTimeout)
			return nil
		}
		if nc.IsClosed() {
			return fmt.Errorf("%w: %w", ErrConnClosed, err)
		}
		s.o.Limited.Warn("subscribed, but NATS does not answer yet: retrying", zap.Error(err))
		if !sleepCtx(ctx, backoff(attempt)) {
			s.drain(subs, s.o.DrainTimeout)
			return nil
		}
	}
	// A subscription the server refused (the credentials may not subscribe to it) is
	// known by now: the server answers it before the flush of the first proof.
	if err := refusedSubscription(nc, s.o.Subjects); err != nil {
		s.drain(subs, s.o.DrainTimeout)
		return err
	}
	s.ready.Store(true)
	s.o.Logger.Info("consuming", zap.Strings("subjects", s.o.Subjects))

	probeCtx, stopProbes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.run(probeCtx) })
	var err error
	select {
	case <-ctx.Done():
	case <-s.conn.Closed():
		err = s.conn.closedForGood(s.o.Logger, nil)
	}
	// The stop's deadline runs from now: the proofs in flight that stopping waits for
	// (a flush to a server that does not answer waits up to probeTimeout) take their
	// share of it.
	stopBy := time.Now().Add(s.o.DrainTimeout)
	stopProbes()
	wg.Wait()
	s.ready.Store(false)
	s.dropped() // read before the subscriptions drain and stop saying
	if err == nil {
		// The deadlines due by now may fire as the engine stops, but only on the same
		// evidence as ever: a proof begun now, which reports what was lost since the
		// last one before it marks, and marks nothing when the server does not answer.
		//
		// That the subscriptions drained is no such evidence. nats.go's drain flushes
		// (a PONG after the UNSUB would say that every message routed before the UNSUB
		// has been read), but ignores the flush's error: when the connection goes stale
		// or reconnects, its pending flushes fail at once, nothing is pending, and the
		// subscription says it is closed, while what the server accepted before the
		// stop is still in a link that hangs. Nor would a flush after the drain do:
		// when the drain's own flush times out instead, the subscription is removed,
		// and the messages read after that are dropped without being counted.
		proofCtx, cancel := context.WithDeadline(context.Background(), stopBy)
		if perr := p.prove(proofCtx); perr != nil {
			s.o.Logger.Warn("stopping without proof that the input caught up: the deadlines due now do not fire", zap.Error(perr))
		}
		cancel()
	}
	s.drain(subs, time.Until(stopBy))
	return err
}

// prober proves the progress of a Source's input: on request (the engine waits on a
// deadline) and every ProbeEvery.
//
// A proof is asked for when a deadline is reached, and only one begun after it can let
// it fire: so a request never waits for a proof already in flight, which began too
// early, but begins its own at once, beside it (at most maxProofs at a time). The
// proofs end in the order they began: the round trips and the barriers are answered
// in order, and the gaps and marks are told in that order too.
type prober struct {
	s  *Source
	in engine.Intake
	// Read and written by the end of a proof, one at a time (see run).
	last       time.Time // when the latest proof began
	dropped    int64     // the subscriptions' drops as of its round trip's answer
	reconnects uint64    // the connection's reconnections as of then
}

// proof is a proof begun at t, with what had been lost as of its round trip's answer:
// the connection's reconnections and the subscriptions' drops then.
type proof struct {
	t          time.Time
	reconnects uint64
	dropped    int64
}

// maxProofs bounds the proofs in flight at once.
const maxProofs = 8

func (p *prober) run(ctx context.Context) {
	tick := time.NewTicker(p.s.o.ProbeEvery)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxProofs)
	prev := make(chan struct{}) // closed when the proof begun last has ended
	close(prev)
	// A proof whose barrier is passed as the prober stops may end in the callback after
	// its own goroutine has exited: wait for that end too, so that none runs beside the
	// proof Run gives as it stops.
	defer func() { <-prev }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.s.probe:
		case <-tick.C:
		case <-p.s.conn.Reconnected():
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		before, ended := prev, make(chan struct{})
		prev = ended
		wg.Go(func() {
			// The proof ends once: in the barrier's callback when the one begun before it
			// has ended by then (the marks reach the engine from the subscription's
			// goroutine, without waking this one first), else here after it.
			var once atomic.Bool
			pr, err := p.begin(ctx, func(pr proof) {
				select {
				case <-before:
					if once.CompareAndSwap(false, true) {
						p.end(pr)
						close(ended)
					}
				default:
				}
			})
			<-before
			if once.CompareAndSwap(false, true) {
				if err == nil {
					p.end(pr)
				}
				close(ended)
			}
			<-slots
			if err != nil && ctx.Err() == nil {
				// Unreachable or slow: nothing is marked, so nothing fires; try again soon,
				// or as soon as the connection is back.
				select {
				case <-ctx.Done():
				case <-time.After(probeRetry):
					p.s.Probe()
				case <-p.s.conn.Reconnected():
				}
			}
		})
	}
}

// probeRetry is how soon a failed proof is tried again.
const probeRetry = 100 * time.Millisecond

// prove proves once; see begin and end.
func (p *prober) prove(ctx context.Context) error {
	pr, err := p.begin(ctx, nil)
	if err == nil {
		p.end(pr)
	}
	return err
}

// errReconnectedDuringProof fails a proof whose round trip saw the connection come
// back: it may have begun while the connection was down.
var errReconnectedDuringProof = errors.New("reconnected during the proof's round trip")

// begin runs a proof begun at t: a flush round trip, then a barrier behind every
// message queued before its answer. passed, when not nil, is called with the proof as
// the barrier is passed, from the goroutine that passes it (a subscription's), before
// begin returns.
func (p *prober) begin(ctx context.Context, passed func(proof)) (pr proof, err error) {
	s := p.s
	nc := s.conn.NATS()
	s.stats.probes.Add(1)
	if !nc.IsConnected() {
		s.stats.probeErrors.Add(1)
		return pr, nats.ErrConnectionReconnecting
	}
	reconnects := nc.Stats().Reconnects
	pr.t = s.o.Now()
	timeout := probeTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := nc.FlushTimeout(timeout); err != nil {
		s.stats.probeErrors.Add(1)
		return pr, fmt.Errorf("flush: %w", err)
	}
	// The losses are read here, as the round trip is answered, not when the proof ends
	// behind the barrier: by now every loss of a message the server routed before the
	// PING is counted (a subscription counts a drop as it reads the message, and what
	// was routed before the PING is read before its PONG), and one counted later came
	// after t: the next proof reports it, in a gap that begins at t. A disconnection
	// after the PING fails the flush (nats.go fails the pending flushes at once); one
	// after the PONG is after t. One before the PING, just after IsConnected said
	// connected, leaves the PING pending until the connection is back, and the flush
	// then succeeds with t inside the outage: nats.go counts the reconnection before it
	// sends what is pending, so the count tells, and the proof is tried again.
	pr.reconnects, pr.dropped = nc.Stats().Reconnects, s.dropped()
	if pr.reconnects != reconnects {
		s.stats.probeErrors.Add(1)
		return pr, errReconnectedDuringProof
	}
	handed := make(chan struct{})
	if err := nc.Barrier(func() {
		if passed != nil {
			passed(pr)
		}
		close(handed)
	}); err != nil {
		s.stats.probeErrors.Add(1)
		return pr, fmt.Errorf("barrier: %w", err)
	}
	select {
	case <-handed:
	case <-ctx.Done():
		return pr, ctx.Err()
	}
	return pr, nil
}

// end marks pr.t, the beginning of a proof that succeeded. A reconnection or drops of
// the subscriptions since the last proof's round trip, and before this one's, are
// reported first, as a gap between the two proofs: what was published then may be
// lost.
func (p *prober) end(pr proof) {
	s := p.s
	// nats.go counts a reconnection before it says it is connected, and runs the
	// reconnect handler later, from its callback goroutine: only the count tells, at
	// once, that the connection was down since the last proof. Whatever was in flight
	// then, or published while down, may be lost: the gap runs from the last proof.
	lost := false
	if pr.reconnects != p.reconnects {
		p.reconnects, lost = pr.reconnects, true
	}
	if pr.dropped > p.dropped {
		p.dropped, lost = pr.dropped, true
	}
	if lost {
		s.stats.gaps.Add(1)
		p.in.Gap(p.last, pr.t)
	}
	p.in.Mark(pr.t)
	p.last = pr.t
}

// drain drains the subscriptions and waits until they are closed, for at most timeout.
func (s *Source) drain(subs []*nats.Subscription, timeout time.Duration) error {
	closed := make([]<-chan nats.SubStatus, len(subs))
	for i, sub := range subs {
		closed[i] = sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for i, c := range closed {
		select {
		case <-c:
		case <-s.conn.Closed():
			// A closed connection closes its subscriptions without saying so, and
			// delivers nothing more.
			return fmt.Errorf("drain subscriptions: %w", nats.ErrConnectionClosed)
		case <-timer.C:
			for _, sub := range subs[i:] {
				_ = sub.Unsubscribe()
			}
			return fmt.Errorf("drain subscriptions: not done after %v", timeout)
		}
	}
	return nil
}

// SourceStats are the counters of a Source.
type SourceStats struct {
	RejectStats
	// Dropped counts the events NATS dropped because the subscription fell behind.
	Dropped int64
	// Probes counts the proofs of progress tried, ProbeErrors those that failed (the
	// server unreachable or slow), Gaps the input gaps reported.
	Probes, ProbeErrors, Gaps int64
}

// Stats returns the source's counters.
func (s *Source) Stats() SourceStats {
	return SourceStats{
		RejectStats: s.rejects.Stats(),
		Dropped:     s.dropped(),
		Probes:      s.stats.probes.Load(),
		ProbeErrors: s.stats.probeErrors.Load(),
		Gaps:        s.stats.gaps.Load(),
	}
}

// dropped returns how many events NATS dropped because the subscriptions fell behind.
func (s *Source) dropped() int64 {
	var n int64
	if subs := s.subs.Load(); subs != nil {
		for _, c := range *subs {
			n += c.droppedNow()
		}
	}
	return n
}

// refusedSubscription returns an error naming the subject when the server refused the
// subscription to one of subjects for lack of permission: with it the source would
// receive nothing, and look healthy.
func refusedSubscription(nc *nats.Conn, subjects []string) error {
	err := nc.LastError()
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	for _, subject := range subjects {
		if strings.Contains(strings.ToLower(err.Error()), "subscription to \""+strings.ToLower(subject)+"\"") {
			return fmt.Errorf("subscribe %q: the server refused it: the NATS user hangwatch connects as may not subscribe to it (check --subject and the credentials' subscribe permissions): %w", subject, err)
		}
	}
	return nil
}
