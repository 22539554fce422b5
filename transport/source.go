package transport

import (
	"context"
	"fmt"
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

// DefaultSubject is the default of --subject.
const DefaultSubject = "voice.events.>"

// Headers of a dead letter: the reason an event was rejected, the error, and the
// subject it came on.
const (
	HeaderBadInputReason = "Hangwatch-Bad-Input"
	HeaderBadInputError  = "Hangwatch-Error"
	HeaderSubject        = "Hangwatch-Subject"
)

// SourceOptions configures a Source, or a JetStreamSource (which has no use for
// PendingMsgs and PendingBytes: it pulls; and stamps the stored time, capped by Now).
type SourceOptions struct {
	// Subjects to consume (default DefaultSubject).
	Subjects []string
	// Limits bound what an event may be (default DefaultLimits).
	Limits wire.Limits
	// PendingMsgs and PendingBytes bound what a subscription buffers while the engine
	// is behind; past them NATS drops events and reports a slow consumer (defaults
	// 1,000,000 and 1 GiB).
	PendingMsgs, PendingBytes int
	// DeadLetter, when set, is the subject rejected events are republished on,
	// unchanged, with headers that give the reason.
	DeadLetter string
	// DrainTimeout bounds how long Run waits for its subscriptions to drain, from when
	// its context is done (default 10 s).
	DrainTimeout time.Duration
	// Now stamps when an event was received (default time.Now). Tests pass a fake
	// clock's Now.
	Now    func() time.Time
	Logger *zap.Logger
}

// Source consumes events from core NATS subscriptions and hands them, decoded, to the
// engine. It implements engine.Source.
type Source struct {
	intake
	deliver func(*detector.Event)
	subs    atomic.Pointer[[]*countedSub] // for their count of dropped events
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

// intake is what the core NATS Source and the JetStreamSource share: it decodes a
// received message into a pooled event stamped with its received time, counts events by
// type, and counts, logs (rate-limited, never the text) and dead-letters bad input.
type intake struct {
	conn    *Conn
	o       SourceOptions
	log     *zap.Logger
	limited *zap.Logger
	pool    sync.Pool
	// settle acknowledges the JetStream message of a pooled event once the engine is
	// done with it; nil for core NATS, whose events carry no message.
	settle func(jetstream.Msg)
	stats  sourceCounters
	// ready says the source consumes live and does not drain: what Ready reports.
	ready atomic.Bool
}

type sourceCounters struct {
	events       [detector.TypeOutput + 1]atomic.Int64
	bad          [wire.NumReasons]atomic.Int64
	deadLettered atomic.Int64
	deadErrors   atomic.Int64
	deadIgnored  atomic.Int64
}

// SourceStats are the counters of a Source.
type SourceStats struct {
	// Events counts the events decoded, by type.
	Events map[detector.Type]int64
	// Bad counts the events rejected, by reason.
	Bad map[wire.Reason]int64
	// Dropped counts the events NATS dropped because the subscription fell behind (core
	// NATS only; a JetStream consumer pulls, so it does not drop).
	Dropped int64
	// DeadLettered and DeadLetterErrors count the rejected events republished on the
	// dead-letter subject, and those that could not be; DeadLettersIgnored the dead
	// letters that came back in and were dropped.
	DeadLettered, DeadLetterErrors, DeadLettersIgnored int64
}

// pooled is an event with its Done bound once, so that a delivery allocates nothing but
// the payload.
type pooled struct {
	ev   detector.Event
	msg  jetstream.Msg // acknowledged by Done; nil when there is nothing to acknowledge
	done func()
}

// NewSource returns a source that consumes through c.
func NewSource(c *Conn, o SourceOptions) *Source {
	s := &Source{}
	s.init(c, o)
	return s
}

// init applies the defaults of o and readies the pool.
func (in *intake) init(c *Conn, o SourceOptions) {
	if len(o.Subjects) == 0 {
		o.Subjects = []string{DefaultSubject}
	}
	if o.Limits == (wire.Limits{}) {
		o.Limits = wire.DefaultLimits()
	}
	if o.PendingMsgs == 0 {
		o.PendingMsgs = 1_000_000
	}
	if o.PendingBytes == 0 {
		o.PendingBytes = 1 << 30
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	in.conn, in.o, in.log, in.limited = c, o, log, logs.RateLimited(log)
	in.pool.New = func() any {
		p := &pooled{}
		p.done = func() { in.release(p) }
		return p
	}
}

// Ready reports whether the source is subscribed and not draining.
func (s *Source) Ready() bool { return s.ready.Load() }

// Run subscribes, hands every event to deliver until ctx is done, then drains its
// subscriptions (the events NATS already holds are still delivered) and returns.
func (s *Source) Run(ctx context.Context, deliver func(*detector.Event)) error {
	s.deliver = deliver
	nc := s.conn.NATS()
	subs := make([]*nats.Subscription, 0, len(s.o.Subjects))
	for _, subject := range s.o.Subjects {
		sub, err := nc.Subscribe(subject, s.handle)
		if err == nil {
			err = sub.SetPendingLimits(s.o.PendingMsgs, s.o.PendingBytes)
		}
		if err != nil {
			s.drain(subs)
			return fmt.Errorf("subscribe %q: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	// The server knows the subscriptions once it has answered a ping: from then on no
	// event is missed, and the source says it is ready.
	if err := nc.Flush(); err != nil {
		s.drain(subs)
		return fmt.Errorf("subscribe: %w", err)
	}
	counted := make([]*countedSub, len(subs))
	for i, sub := range subs {
		counted[i] = &countedSub{sub: sub}
	}
	s.subs.Store(&counted)
	s.ready.Store(true)
	s.log.Info("consuming", zap.Strings("subjects", s.o.Subjects))
	select {
	case <-ctx.Done():
	case <-s.conn.Closed():
		// Nothing will come any more: end, so that the process exits and is restarted
		// rather than live on deaf.
		s.ready.Store(false)
		err := s.conn.NATS().LastError()
		s.log.Error("NATS closed the connection for good", zap.Error(err))
		if err == nil {
			return ErrConnClosed
		}
		return fmt.Errorf("%w: %w", ErrConnClosed, err)
	}
	s.ready.Store(false)
	s.dropped() // read before the subscriptions drain and stop saying
	return s.drain(subs)
}

// drain drains the subscriptions and waits until they are closed, for at most the
// drain timeout.
func (s *Source) drain(subs []*nats.Subscription) error {
	closed := make([]<-chan nats.SubStatus, len(subs))
	for i, sub := range subs {
		closed[i] = sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	timeout := time.NewTimer(s.o.DrainTimeout)
	defer timeout.Stop()
	for i, c := range closed {
		select {
		case <-c:
		case <-timeout.C:
			for _, sub := range subs[i:] {
				_ = sub.Unsubscribe()
			}
			return fmt.Errorf("drain subscriptions: not done after %v", s.o.DrainTimeout)
		}
	}
	return nil
}

// handle decodes one message and delivers it; it runs on the subscription's goroutine,
// so the events of a subject arrive in order.
func (s *Source) handle(m *nats.Msg) {
	if s.deadLetter(m.Subject, m.Header) {
		return
	}
	p, err := s.decode(m.Data, s.o.Now().UnixNano())
	if err != nil {
		s.reject(m.Subject, m.Data, err)
		return
	}
	s.deliver(&p.ev)
}

// deadLetter reports whether a message is one of hangwatch's dead letters, which comes
// back in when the dead-letter subject is one the source consumes: it is dropped, not
// rejected again, which would loop forever.
func (in *intake) deadLetter(subject string, h nats.Header) bool {
	if h.Get(HeaderBadInputReason) == "" {
		return false
	}
	in.stats.deadIgnored.Add(1)
	in.limited.Warn("a dead letter came back in: ignored; the dead-letter subject should not be consumed", zap.String("subject", subject))
	return true
}

// decode decodes data into a pooled event received at received (Unix ns) and counts
// it. On error, nothing is kept: the caller rejects or skips the message.
func (in *intake) decode(data []byte, received int64) (*pooled, error) {
	p := in.pool.Get().(*pooled)
	if err := wire.Decode(&p.ev, data, in.o.Limits); err != nil {
		in.pool.Put(p)
		return nil, err
	}
	p.ev.Received, p.ev.Done = received, p.done
	in.stats.events[p.ev.Type].Add(1)
	return p, nil
}

// release is a pooled event's Done: the engine is finished with the event, so its
// message is acknowledged and the event goes back to the pool.
func (in *intake) release(p *pooled) {
	if p.msg != nil {
		in.settle(p.msg)
		p.msg = nil
	}
	in.pool.Put(p)
}

// reject counts a bad event, logs it (rate-limited per reason; its text only at debug
// level) and dead-letters it. It returns the reason.
func (in *intake) reject(subject string, data []byte, err error) wire.Reason {
	reason, _ := wire.BadInputReason(err)
	in.stats.bad[reason].Add(1)
	in.limited.Warn("bad input: "+reason.String(), zap.String("subject", subject), zap.Int("bytes", len(data)), zap.Error(err))
	if ce := in.log.Check(zap.DebugLevel, "bad input payload"); ce != nil {
		ce.Write(zap.String("subject", subject), zap.ByteString("payload", data[:min(len(data), 1024)]))
	}
	if in.o.DeadLetter == "" {
		return reason
	}
	dl := nats.NewMsg(in.o.DeadLetter)
	dl.Data = data
	dl.Header.Set(HeaderBadInputReason, reason.String())
	dl.Header.Set(HeaderBadInputError, err.Error())
	dl.Header.Set(HeaderSubject, subject)
	if err := in.conn.NATS().PublishMsg(dl); err != nil {
		in.stats.deadErrors.Add(1)
		in.limited.Error("dead letter", zap.String("subject", in.o.DeadLetter), zap.Error(err))
		return reason
	}
	in.stats.deadLettered.Add(1)
	return reason
}

// Stats returns the source's counters.
func (s *Source) Stats() SourceStats {
	st := s.sourceStats()
	st.Dropped = s.dropped()
	return st
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

func (in *intake) sourceStats() SourceStats {
	st := SourceStats{Events: map[detector.Type]int64{}, Bad: map[wire.Reason]int64{}}
	for t := range in.stats.events {
		if n := in.stats.events[t].Load(); n > 0 {
			st.Events[detector.Type(t)] = n
		}
	}
	for _, r := range wire.Reasons() {
		if n := in.stats.bad[r].Load(); n > 0 {
			st.Bad[r] = n
		}
	}
	st.DeadLettered, st.DeadLetterErrors = in.stats.deadLettered.Load(), in.stats.deadErrors.Load()
	st.DeadLettersIgnored = in.stats.deadIgnored.Load()
	return st
}
