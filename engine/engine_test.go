package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
)

func TestEngineNewValidates(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.Timeout = 0
	if _, err := New(&testSource{}, &testDecoder{}, &recordingSink{}, WithConfig(cfg)); err == nil {
		t.Fatal("New accepted a zero timeout")
	}
}

// TestEngineHangAndResolve is the simplest call: a user turn unanswered for the timeout
// hangs once, and the reply resolves it.
func TestEngineHangAndResolve(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 0)))
	h.advance(4999 * time.Millisecond)
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("before the timeout: %v", briefs(got))
	}
	h.advance(time.Millisecond)
	h.advance(3 * time.Second)
	h.send(conv("c1", 8001, user("user-1", 0), reply("r-1", 8000)))
	want := []string{"hang c1 user-1 turn-timeout 5000ms@5000", "hang-resolved c1 user-1 turn-timeout 8000ms@8000 reply=r-1"}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineNoVerdictWithoutEvidence: the engine is paused across a deadline (no probe
// is answered: the process stopped, or the server is unreachable) while the reply waits
// in the input; once the input catches up, the reply is applied before the deadline can
// fire: no hang.
func TestEngineNoVerdictWithoutEvidence(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 0)))
	h.cut()
	h.advance(4 * time.Second)
	h.advance(4 * time.Second) // the deadline passed 3 s ago, without evidence
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("a deadline fired without evidence: %v", briefs(got))
	}
	// The reply, sent at 3.5 s, arrives now, and then the evidence.
	h.send(conv("c1", 3501, user("user-1", 0), reply("r-1", 3500)))
	h.restore()
	if got := h.sink.take(); len(got) != 0 {
		t.Errorf("outputs %v, want none: the reply came before the deadline", briefs(got))
	}
}

// TestEngineLateHangHasTrueWait: a deadline that fires late (the evidence came late)
// fires with the wait measured to the moment of detection.
func TestEngineLateHangHasTrueWait(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 0)))
	h.cut()
	h.advance(7 * time.Second)
	h.restore()
	want := []string{"hang c1 user-1 turn-timeout 7000ms@7000"}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

func TestEngineCalls(t *testing.T) {
	h := newHarness(t)
	// Ten calls over two shards; odd calls are answered in time, even ones stall.
	for i := range 10 {
		h.send(conv(fmt.Sprint("c", i), 1, user("user-1", 0)))
	}
	h.advance(2 * time.Second)
	for i := 1; i < 10; i += 2 {
		h.send(conv(fmt.Sprint("c", i), 2000, user("user-1", 0), reply("r1", 2000)))
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
	key := OutputKey{detector.KindHang, detector.ReasonTurnTimeout, detector.StageAwaitingAssistant}
	if st.Hung != 5 || st.Outputs[key] != 5 || st.Hangs() != 5 {
		t.Errorf("Stats() hung/hangs = %d/%d, want 5/5", st.Hung, st.Outputs[key])
	}
	h.send(conv("c0", 5000, user("user-1", 0), reply("r1", 4900))) // stamped 100 ms before it arrived
	if got, want := briefs(h.sink.take()), []string{"hang-resolved c0 user-1 turn-timeout 4900ms@5000 reply=r1"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if st := h.e.Stats(); st.Resolved() != 1 || st.Hung != 4 || st.Types[detector.TypeConversationUpdate] != 16 {
		t.Errorf("Stats() resolved/hung/updates = %d/%d/%d, want 1/4/16", st.Resolved(), st.Hung, st.Types[detector.TypeConversationUpdate])
	}
}

func TestEngineCallTTL(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.CallTTL = time.Minute
	h := newHarness(t, WithConfig(cfg))
	h.send(conv("idle", 1, user("user-1", 0), reply("r1", 0)))
	h.send(conv("stalled", 1, user("user-1", 0)))
	h.advance(59 * time.Second)
	if st := h.e.Stats(); st.Calls != 2 || st.Expired != 0 {
		t.Fatalf("before the TTL: calls/expired = %d/%d, want 2/0", st.Calls, st.Expired)
	}
	h.send(statusEvent("idle", detector.StatusOngoing)) // keeps "idle" alive
	h.advance(time.Second)
	if st := h.e.Stats(); st.Calls != 1 || st.Expired != 1 || st.Hung != 0 {
		t.Fatalf("at the TTL: calls/expired/hung = %d/%d/%d, want 1/1/0", st.Calls, st.Expired, st.Hung)
	}
	h.advance(59 * time.Second)
	if st := h.e.Stats(); st.Calls != 0 || st.Expired != 2 {
		t.Fatalf("after the TTL: calls/expired = %d/%d, want 0/2", st.Calls, st.Expired)
	}
	if got := briefs(h.sink.take()); len(got) != 1 {
		t.Errorf("published %v, want the hang of the stalled call only", got)
	}
}

// TestEngineOwnOutput: a hang event (hangwatch's own output, or a platform's) drives
// nothing, unless its call status ends the call.
func TestEngineOwnOutput(t *testing.T) {
	h := newHarness(t)
	h.send(&detector.Event{Type: detector.TypeOutput, CallID: "unknown", Status: detector.StatusOngoing})
	h.send(conv("c1", 1, user("user-1", 0)))
	h.send(&detector.Event{Type: detector.TypeOutput, CallID: "c1", Status: detector.StatusOngoing})
	h.send(conv("c2", 1, user("user-1", 0)))
	h.send(&detector.Event{Type: detector.TypeOutput, CallID: "c2", Status: detector.StatusFinished})
	h.advance(5 * time.Second)
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 5000ms@5000"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if st := h.e.Stats(); st.Calls != 1 || st.Ended != 1 || st.Ignored != 2 {
		t.Errorf("calls/ended/ignored = %d/%d/%d, want 1/1/2", st.Calls, st.Ended, st.Ignored)
	}
}

func TestEnginePublishErrorsCounted(t *testing.T) {
	h := newHarness(t)
	h.sink.err = errors.New("broker gone")
	h.send(conv("c1", 1, user("user-1", 0)))
	h.advance(5 * time.Second)
	if st := h.e.Stats(); st.PublishErrors != 1 || st.Hangs() != 1 {
		t.Errorf("Stats() publish errors/hangs = %d/%d, want 1/1", st.PublishErrors, st.Hangs())
	}
}

// TestEngineRevoke: the calls of a partition that another instance took are dropped
// without a word; the others go on.
func TestEngineRevoke(t *testing.T) {
	h := newHarness(t)
	send := func(ev *detector.Event, partition int) {
		msg := h.msg(ev)
		msg.partition = partition
		h.in.Deliver(msg)
		h.sync()
	}
	send(conv("hung", 1, user("user-1", 0)), 3)
	h.advance(5 * time.Second)
	send(conv("armed", 5001, user("user-1", 5000)), 3)
	send(conv("other", 5001, user("user-1", 5000)), 5)
	send(conv("no-partition", 5001, user("user-1", 5000)), -1)
	if got := len(h.sink.take()); got != 1 {
		t.Fatalf("%d outputs before the revoke, want the hang of hung", got)
	}
	h.in.Revoke(3)
	h.sync()
	if st := h.e.Stats(); st.Revoked != 2 || st.Calls != 2 {
		t.Errorf("revoked %d, calls %d; want 2, 2", st.Revoked, st.Calls)
	}
	h.advance(5 * time.Second)
	send(endEvent("hung"), 3) // no hang-unresolved: the call is gone, and no tomb holds it
	got := briefs(h.sink.take())
	slices.Sort(got)
	want := []string{"hang no-partition user-1 turn-timeout 5000ms@10000", "hang other user-1 turn-timeout 5000ms@10000"}
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	send(conv("armed", 10_001, user("user-1", 10_000)), 3) // the partition came back: a new call
	if st := h.e.Stats(); st.Calls != 3 {
		t.Errorf("calls %d, want 3", st.Calls)
	}
}

// TestEngineShutdown: Run, once cancelled, applies what was delivered and publishes the
// hangs that are due and evidenced before it returns; not those without evidence.
func TestEngineShutdown(t *testing.T) {
	tests := []struct {
		name string
		mark bool
		want []string
	}{
		{name: "a mark covers the deadlines", mark: true,
			want: []string{"hang c1 user-1 turn-timeout 6000ms@6000", "hang c2 user-1 turn-timeout 6000ms@6000"}},
		{name: "no mark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.send(conv("c1", 1, user("user-1", 0)))
			h.send(conv("c2", 1, user("user-1", 0)))
			h.advance(2 * time.Second)
			h.send(conv("later", 2001, user("user-1", 2000)))
			h.clock.Advance(4 * time.Second) // no Sync
			if tt.mark {
				h.in.Mark(h.clock.Now())
			}
			h.in.Deliver(h.msg(conv("c3", 6001, user("user-1", 6000))))
			h.stop()
			got := briefs(h.sink.take())
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("published %v, want %v", got, tt.want)
			}
			if st := h.e.Stats(); st.Calls != 4 {
				t.Errorf("applied %d calls before returning, want 4", st.Calls)
			}
		})
	}
}

func TestEngineRunOnce(t *testing.T) {
	h := newHarness(t)
	if err := h.e.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Run() = %v, want ErrStarted", err)
	}
	h.stop()
	if err := h.e.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("Run() after it returned = %v, want ErrStarted", err)
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

func TestEngineRunReturnsSourceError(t *testing.T) {
	src := &testSource{runErr: errors.New("subscription gone")}
	e, err := New(src, &testDecoder{}, &recordingSink{}, WithClock(clockwork.NewFakeClockAt(start)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); !errors.Is(err, src.runErr) {
		t.Errorf("Run() = %v, want the source's error", err)
	}
}
