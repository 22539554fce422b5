package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
)

// start is the fake clock's start: 2025-11-20T14:02:11Z.
var start = time.UnixMilli(1_763_647_331_000).UTC()

// payload is a fake detector.Payload, named after the event that carried it.
type payload string

func (p payload) Len() int { return len(p) }

// testSource hands the engine's deliver function to the test, which then delivers from
// its own goroutine: so an event delivered before Sync is applied before Sync returns.
type testSource struct {
	deliver chan func(*detector.Event)
}

func (s *testSource) Run(ctx context.Context, deliver func(*detector.Event)) error {
	s.deliver <- deliver
	<-ctx.Done()
	return nil
}

// published is an output as the sink received it.
type published struct {
	callID string
	out    detector.Output
}

// recordingSink records every output; it can be told to fail.
type recordingSink struct {
	mu   sync.Mutex
	outs []published
	c    chan published
	err  error
}

func (s *recordingSink) Publish(callID string, out *detector.Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	p := published{callID: callID, out: *out}
	s.outs = append(s.outs, p)
	if s.c != nil {
		s.c <- p
	}
	return nil
}

func (s *recordingSink) take() []published {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.outs
	s.outs = nil
	return o
}

// runEngine runs e in a goroutine of its own. stop cancels the context that Run was
// given (the one returned) and returns Run's error once Run has returned.
func runEngine(e *Engine) (ctx context.Context, stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return ctx, func() error {
		cancel()
		return <-done
	}
}

// harness runs an engine on a fake clock.
type harness struct {
	t       testing.TB
	e       *Engine
	clock   *clockwork.FakeClock
	sink    *recordingSink
	deliver func(*detector.Event)
	stopRun func() error // nil once stopped
	seq     int
}

func newHarness(t testing.TB, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, clock: clockwork.NewFakeClockAt(start), sink: &recordingSink{}}
	src := &testSource{deliver: make(chan func(*detector.Event), 1)}
	e, err := New(src, h.sink, append([]Option{WithClock(h.clock), WithShards(2)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	_, h.stopRun = runEngine(e)
	h.deliver = <-src.deliver
	t.Cleanup(func() { h.stop() })
	return h
}

// stop stops the engine and waits for Run to return.
func (h *harness) stop() {
	if h.stopRun == nil {
		return
	}
	err := h.stopRun()
	h.stopRun = nil
	if err != nil {
		h.t.Errorf("Run() = %v", err)
	}
}

// now returns the fake time in Unix nanoseconds.
func (h *harness) now() int64 { return h.clock.Now().UnixNano() }

// send delivers ev as received now, named "e<n>", and waits until it is applied.
func (h *harness) send(ev *detector.Event) {
	h.t.Helper()
	ev.Received = h.now()
	if ev.Payload == nil {
		ev.Payload = payload(fmt.Sprintf("e%d", h.seq))
	}
	h.seq++
	h.deliver(ev)
	h.sync()
}

// advance moves the fake clock and waits until every due deadline has fired.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.sync()
}

func (h *harness) sync() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.e.Sync(ctx); err != nil {
		h.t.Fatalf("Sync() = %v", err)
	}
}

// msg is a message of a test history; at is its timestamp in ms after start.
type msg struct {
	id, role, text string
	at             int64
}

func user(id string, at int64) msg  { return msg{id, "user", "Hello?", at} }
func reply(id string, at int64) msg { return msg{id, "assistant", "Sure.", at} }

// conv builds a conversation-update of call id.
func conv(id string, msgs ...msg) *detector.Event {
	ev := &detector.Event{Type: detector.TypeConversationUpdate, CallID: id, Status: detector.StatusOngoing,
		Messages: int32(len(msgs))}
	for i, m := range msgs {
		ev.Stretches = detector.AddMessage(ev.Stretches, detector.ParseRole(m.role), strings.TrimSpace(m.text) != "",
			detector.Turn{ID: m.id, Index: int32(i), HasTime: true, Time: start.UnixMilli() + m.at})
	}
	return ev
}

func statusEvent(id string, s detector.Status) *detector.Event {
	return &detector.Event{Type: detector.TypeStatusUpdate, CallID: id, Status: s}
}

// brief renders an output compactly: "hang c1 user-1 turn-timeout 5000ms@5000".
func brief(p published) string {
	o := p.out
	at := (o.At - start.UnixNano()) / int64(time.Millisecond)
	s := fmt.Sprintf("%v %s %s %v %dms@%d", o.Kind, p.callID, o.UserMessageID, o.Reason, o.Wait.Milliseconds(), at)
	if o.Kind == detector.KindResolved {
		s += " reply=" + o.ReplyMessageID
	}
	return s
}

func briefs(ps []published) []string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, brief(p))
	}
	return s
}
