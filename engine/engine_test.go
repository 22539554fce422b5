package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hangwatch/hangwatch/detector"
)

func TestEngineNewValidates(t *testing.T) {
	_, err := New(&testSource{}, &recordingSink{}, WithConfig(detector.Config{Timeout: 0}))
	if !errors.Is(err, detector.ErrConfig) {
		t.Fatalf("New() with a zero timeout = %v, want ErrConfig", err)
	}
}

// TestEngineTimerFires checks the path without Sync: the shard's one clock timer is set
// to the deadline, and advancing the fake clock makes it fire on its own.
func TestEngineTimerFires(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.sink.c = make(chan published, 1)
	h.send(conv("c1", user("user-1", 0)))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the shard set no timer: %v", err)
	}
	h.clock.Advance(4999 * time.Millisecond)
	h.sync()
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("published before the deadline: %v", briefs(got))
	}
	h.clock.Advance(time.Millisecond)
	select {
	case p := <-h.sink.c:
		if got, want := brief(p), "hang c1 user-1 turn-timeout 5000ms@5000"; got != want {
			t.Errorf("published %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the timer did not fire")
	}
}

func TestEngineCalls(t *testing.T) {
	h := newHarness(t)
	// Ten calls over two shards; odd calls are answered in time, even ones stall.
	for i := range 10 {
		h.send(conv(fmt.Sprint("c", i), user("user-1", 0)))
	}
	h.advance(2 * time.Second)
	for i := 1; i < 10; i += 2 {
		h.send(conv(fmt.Sprint("c", i), user("user-1", 0), reply("r1", 2000)))
	}
	st := h.e.Stats()
	if st.Calls != 10 || st.Armed != 5 || st.Idle != 5 {
		t.Errorf("Stats() calls/armed/idle = %d/%d/%d, want 10/5/5", st.Calls, st.Armed, st.Idle)
	}
	h.advance(3 * time.Second)
	got := briefs(h.sink.take())
	slices.Sort(got)
	want := []string{
		"hang c0 user-1 turn-timeout 5000ms@5000", "hang c2 user-1 turn-timeout 5000ms@5000",
		"hang c4 user-1 turn-timeout 5000ms@5000", "hang c6 user-1 turn-timeout 5000ms@5000",
		"hang c8 user-1 turn-timeout 5000ms@5000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	st = h.e.Stats()
	if st.Hung != 5 || st.HangsTurnTimeout != 5 || st.Retained != 0 {
		t.Errorf("Stats() hung/hangs/retained = %d/%d/%d, want 5/5/0", st.Hung, st.HangsTurnTimeout, st.Retained)
	}
	h.send(conv("c0", user("user-1", 0), reply("r1", 4900))) // stamped 100 ms before it arrived
	if got, want := briefs(h.sink.take()), []string{"hang-resolved c0 user-1 turn-timeout 4900ms@5000 reply=r1"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if st := h.e.Stats(); st.Resolved != 1 || st.Hung != 4 {
		t.Errorf("Stats() resolved/hung = %d/%d, want 1/4", st.Resolved, st.Hung)
	}
}

// TestEngineDeadlineBeforeEvent checks the order of a deadline and an event that races
// it: a deadline that passed before the event was received fires first, even when the
// shard meets the event before its timer (here the clock, and so the timer, has not even
// reached the deadline yet).
func TestEngineDeadlineBeforeEvent(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.send(conv("c1", user("user-1", 0)))
	ev := conv("c1", user("user-1", 0), reply("r1", 5050))
	ev.Received, ev.Payload = h.now()+int64(5100*time.Millisecond), payload("late")
	h.deliver(ev)
	h.sync()
	want := []string{"hang c1 user-1 turn-timeout 5100ms@5100", "hang-resolved c1 user-1 turn-timeout 5050ms@5100 reply=r1"}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
}

func TestEngineRetainsOnlyArmedHistory(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", user("user-1", 0), reply("r1", 0)))
	if st := h.e.Stats(); st.Retained != 0 {
		t.Errorf("idle call retains %d bytes, want 0", st.Retained)
	}
	h.send(conv("c1", user("user-1", 0), reply("r1", 0), user("user-2", 0))) // payload "e1"
	if st := h.e.Stats(); st.Retained != 2 {
		t.Errorf("armed call retains %d bytes, want 2", st.Retained)
	}
	h.advance(5 * time.Second)
	if st := h.e.Stats(); st.Retained != 0 || st.Hung != 1 {
		t.Errorf("hung call retains %d bytes (hung %d), want 0 (1)", st.Retained, st.Hung)
	}
}

func TestEngineCallTTL(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.CallTTL = time.Minute
	h := newHarness(t, WithConfig(cfg))
	h.send(conv("idle", user("user-1", 0), reply("r1", 0)))
	h.send(conv("stalled", user("user-1", 0)))
	h.send(statusEvent("ended", detector.StatusFinished))
	h.advance(59 * time.Second)
	if st := h.e.Stats(); st.Calls != 3 || st.Expired != 0 {
		t.Fatalf("before the TTL: calls/expired = %d/%d, want 3/0", st.Calls, st.Expired)
	}
	h.send(statusEvent("idle", detector.StatusOngoing)) // keeps "idle" alive
	h.advance(time.Second)
	if st := h.e.Stats(); st.Calls != 1 || st.Expired != 2 || st.Hung != 0 || st.Tombs != 0 {
		t.Fatalf("at the TTL: calls/expired/hung/tombs = %d/%d/%d/%d, want 1/2/0/0", st.Calls, st.Expired, st.Hung, st.Tombs)
	}
	h.advance(59 * time.Second)
	if st := h.e.Stats(); st.Calls != 0 || st.Expired != 3 {
		t.Fatalf("after the TTL: calls/expired = %d/%d, want 0/3", st.Calls, st.Expired)
	}
	if got := briefs(h.sink.take()); len(got) != 1 {
		t.Errorf("published %v, want the hang of the stalled call only", got)
	}
}

func TestEngineMaxCalls(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	cfg := detector.DefaultConfig()
	cfg.CallTTL = time.Minute
	h := newHarness(t, WithMaxCalls(2), WithConfig(cfg), WithLogger(zap.New(core)))
	h.send(conv("c1", user("user-1", 0)))
	h.send(conv("c2", user("user-1", 0), reply("r1", 0)))
	for range 3 {
		h.send(conv("c3", user("user-1", 0)))
	}
	h.send(conv("c2", user("user-1", 0), reply("r1", 0), user("user-2", 0))) // a known call keeps working
	st := h.e.Stats()
	if st.Calls != 2 || st.Refused != 3 {
		t.Errorf("Stats() calls/refused = %d/%d, want 2/3", st.Calls, st.Refused)
	}
	if n := logs.FilterMessage("call refused: max-calls reached").Len(); n != 1 {
		t.Errorf("logged %d refusals within a second, want 1 (rate-limited)", n)
	}
	h.advance(5 * time.Second)
	if got := len(h.sink.take()); got != 2 {
		t.Errorf("published %d hangs, want 2 (c1, c2)", got)
	}
	h.advance(time.Minute) // both calls expire and make room
	h.send(conv("c3", user("user-1", 0)))
	if st := h.e.Stats(); st.Calls != 1 || st.Refused != 3 {
		t.Errorf("after expiry: calls/refused = %d/%d, want 1/3", st.Calls, st.Refused)
	}
}

func TestEngineDoneForEveryEvent(t *testing.T) {
	var done atomic.Int64
	h := newHarness(t, WithMaxCalls(1))
	for _, ev := range []*detector.Event{
		conv("c1", user("user-1", 0)),
		conv("c2", user("user-1", 0)), // refused
		{Type: detector.TypeOutput, CallID: "c1"},
		statusEvent("c1", detector.StatusFinished),
		conv("c1", user("user-1", 0)), // after the end
	} {
		ev.Done = func() { done.Add(1) }
		h.send(ev)
	}
	if got := done.Load(); got != 5 {
		t.Errorf("Done called %d times, want 5", got)
	}
}

func TestEnginePublishErrorsCounted(t *testing.T) {
	h := newHarness(t)
	h.sink.err = errors.New("broker gone")
	h.send(conv("c1", user("user-1", 0)))
	h.advance(5 * time.Second)
	if st := h.e.Stats(); st.PublishErrors != 1 || st.HangsTurnTimeout != 1 {
		t.Errorf("Stats() publish errors/hangs = %d/%d, want 1/1", st.PublishErrors, st.HangsTurnTimeout)
	}
}

// TestEngineShutdownPublishesDue checks that Run, once cancelled, applies what was
// delivered and publishes every hang that is due before it returns.
func TestEngineShutdownPublishesDue(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", user("user-1", 0)))
	h.send(conv("c2", user("user-1", 0)))
	h.clock.Advance(6 * time.Second) // no Sync
	h.deliver(&detector.Event{Type: detector.TypeConversationUpdate, CallID: "c3", Received: h.now(), Messages: 1,
		Stretches: conv("", user("user-1", 0)).Stretches})
	h.stop()
	got := briefs(h.sink.take())
	slices.Sort(got)
	want := []string{"hang c1 user-1 turn-timeout 6000ms@6000", "hang c2 user-1 turn-timeout 6000ms@6000"}
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if st := h.e.Stats(); st.Calls != 3 {
		t.Errorf("applied %d calls before returning, want 3", st.Calls)
	}
}

func TestEngineRunOnce(t *testing.T) {
	h := newHarness(t)
	if err := h.e.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Run() = %v, want ErrStarted", err)
	}
}

func TestEngineSyncAfterStop(t *testing.T) {
	h := newHarness(t)
	h.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.e.Sync(ctx); err != nil {
		t.Errorf("Sync() after Run returned = %v, want nil", err)
	}
}

// gatedSink holds the publication of one call's output until the test opens the gate,
// which keeps the shard busy.
type gatedSink struct {
	*recordingSink
	call    string
	entered chan struct{}
	gate    chan struct{}
}

func (s *gatedSink) Publish(callID string, out *detector.Output) error {
	if callID == s.call {
		close(s.entered)
		<-s.gate
	}
	return s.recordingSink.Publish(callID, out)
}

// TestEngineQueuedReplyBeatsTimer: while the shard is busy publishing call a's hang,
// call b's reply arrives and waits in the queue, then b's deadline passes. The reply
// was received before the deadline, so b must not hang, whichever of the queue and the
// timer the shard looks at first.
func TestEngineQueuedReplyBeatsTimer(t *testing.T) {
	for range 20 {
		clk := clockwork.NewFakeClockAt(start)
		sink := &gatedSink{recordingSink: &recordingSink{}, call: "a", entered: make(chan struct{}), gate: make(chan struct{})}
		src := &testSource{deliver: make(chan func(*detector.Event), 1)}
		e, err := New(src, sink, WithClock(clk), WithShards(1))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := runEngine(e)
		deliver := <-src.deliver
		send := func(ev *detector.Event, at time.Duration) {
			ev.Received, ev.Payload = start.Add(at).UnixNano(), payload("p")
			deliver(ev)
		}
		send(conv("a", user("user-1", 0)), 0)
		send(conv("b", user("user-1", 1000)), time.Second)
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(5 * time.Second) // a's deadline: the shard publishes, and blocks
		<-sink.entered
		send(conv("b", user("user-1", 1000), reply("r1", 5900)), 5900*time.Millisecond)
		clk.Advance(1100 * time.Millisecond) // b's deadline passes, its reply still queued
		close(sink.gate)
		if err := e.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got, want := briefs(sink.take()), []string{"hang a user-1 turn-timeout 5000ms@5000"}; !slices.Equal(got, want) {
			t.Fatalf("published %v, want %v", got, want)
		}
	}
}

// TestEngineDeliverAfterStop checks that a source that delivers after the engine has
// stopped (one that gave up draining) does not block forever, and that the event is
// neither applied nor acknowledged.
func TestEngineDeliverAfterStop(t *testing.T) {
	h := newHarness(t, WithShards(1), WithQueue(1))
	h.stop()
	var done atomic.Bool
	delivered := make(chan struct{})
	go func() {
		for range 3 { // more than the queue holds
			h.deliver(&detector.Event{Type: detector.TypeConversationUpdate, CallID: "late", Done: func() { done.Store(true) }})
		}
		close(delivered)
	}()
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("deliver blocked after the engine stopped")
	}
	if done.Load() || h.e.Stats().Calls != 0 {
		t.Error("an event delivered after the stop was applied or acknowledged")
	}
}
