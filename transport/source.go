package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/logs"
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

// SourceOptions configures a Source.
type SourceOptions struct {
	// Subjects to consume (default DefaultSubject).
	Subjects []string
	// Limits bound what an event may be (default DefaultLimits).
	Limits Limits
	// PendingMsgs and PendingBytes bound what a subscription buffers while the engine
	// is behind; past them NATS drops events and reports a slow consumer (defaults
	// 1,000,000 and 1 GiB).
	PendingMsgs, PendingBytes int
	// DeadLetter, when set, is the subject rejected events are republished on,
	// unchanged, with headers that give the reason.
	DeadLetter string
	// DrainTimeout bounds how long Run waits for its subscriptions to drain once its
	// context is done (default 10 s).
	DrainTimeout time.Duration
	// Now stamps when an event was received (default time.Now). Tests pass a fake
	// clock's Now.
	Now    func() time.Time
	Logger *zap.Logger
}

// Source consumes events from core NATS subscriptions and hands them, decoded, to the
// engine. It implements engine.Source.
type Source struct {
	conn    *Conn
	o       SourceOptions
	log     *zap.Logger
	limited *zap.Logger
	pool    sync.Pool
	deliver func(*detector.Event)
	ready   atomic.Bool
	stats   sourceCounters
}

type sourceCounters struct {
	events       [detector.TypeOutput + 1]atomic.Int64
	bad          [len(reasonNames)]atomic.Int64
	deadLettered atomic.Int64
	deadErrors   atomic.Int64
}

// SourceStats are the counters of a Source.
type SourceStats struct {
	// Events counts the events decoded, by type.
	Events map[detector.Type]int64
	// Bad counts the events rejected, by reason.
	Bad map[Reason]int64
	// DeadLettered and DeadLetterErrors count the rejected events republished on the
	// dead-letter subject, and those that could not be.
	DeadLettered, DeadLetterErrors int64
}

// pooled is an event with its Done bound once, so that a delivery allocates nothing but
// the payload.
type pooled struct {
	ev   detector.Event
	done func()
}

// NewSource returns a source that consumes through c.
func NewSource(c *Conn, o SourceOptions) *Source {
	if len(o.Subjects) == 0 {
		o.Subjects = []string{DefaultSubject}
	}
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
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
	s := &Source{conn: c, o: o, log: log, limited: logs.RateLimited(log)}
	s.pool.New = func() any {
		p := &pooled{}
		p.done = func() { s.pool.Put(p) }
		return p
	}
	return s
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
	s.ready.Store(true)
	s.log.Info("consuming", zap.Strings("subjects", s.o.Subjects))
	<-ctx.Done()
	s.ready.Store(false)
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
	received := s.o.Now().UnixNano()
	p := s.pool.Get().(*pooled)
	if err := Decode(&p.ev, m.Data, s.o.Limits); err != nil {
		s.pool.Put(p)
		s.reject(m, err)
		return
	}
	p.ev.Received, p.ev.Done = received, p.done
	s.stats.events[p.ev.Type].Add(1)
	s.deliver(&p.ev)
}

// reject counts a bad event, logs it (rate-limited per reason; its text only at debug
// level) and dead-letters it.
func (s *Source) reject(m *nats.Msg, err error) {
	reason, _ := BadInputReason(err)
	s.stats.bad[reason].Add(1)
	s.limited.Warn("bad input: "+reason.String(), zap.String("subject", m.Subject), zap.Int("bytes", len(m.Data)), zap.Error(err))
	if ce := s.log.Check(zap.DebugLevel, "bad input payload"); ce != nil {
		ce.Write(zap.String("subject", m.Subject), zap.ByteString("payload", m.Data[:min(len(m.Data), 1024)]))
	}
	if s.o.DeadLetter == "" {
		return
	}
	dl := nats.NewMsg(s.o.DeadLetter)
	dl.Data = m.Data
	dl.Header.Set(HeaderBadInputReason, reason.String())
	dl.Header.Set(HeaderBadInputError, err.Error())
	dl.Header.Set(HeaderSubject, m.Subject)
	if err := s.conn.NATS().PublishMsg(dl); err != nil {
		s.stats.deadErrors.Add(1)
		s.limited.Error("dead letter", zap.String("subject", s.o.DeadLetter), zap.Error(err))
		return
	}
	s.stats.deadLettered.Add(1)
}

// Stats returns the source's counters.
func (s *Source) Stats() SourceStats {
	st := SourceStats{Events: map[detector.Type]int64{}, Bad: map[Reason]int64{}}
	for t := range s.stats.events {
		if n := s.stats.events[t].Load(); n > 0 {
			st.Events[detector.Type(t)] = n
		}
	}
	for _, r := range Reasons() {
		if n := s.stats.bad[r].Load(); n > 0 {
			st.Bad[r] = n
		}
	}
	st.DeadLettered, st.DeadLetterErrors = s.stats.deadLettered.Load(), s.stats.deadErrors.Load()
	return st
}
