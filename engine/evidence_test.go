package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// This file checks SPEC §2, "Evidence before verdict": a deadline fires only once a
// mark says the input has caught up with it, whatever the clock says.

// TestEngineFiresOnlyOnEvidence: the input is cut off, the clock runs 3 s past the
// deadline, and only a mark at or after the deadline lets it fire, with the wait
// measured to the moment of detection.
func TestEngineFiresOnlyOnEvidence(t *testing.T) {
	tests := []struct {
		name string
		give []time.Duration // marks, after start
		want []string
	}{
		{name: "no mark"},
		{name: "a mark before the deadline", give: []time.Duration{4999 * time.Millisecond}},
		{name: "marks up to just before it", give: []time.Duration{time.Second, 3 * time.Second, 4999 * time.Millisecond}},
		{name: "a mark at the deadline", give: []time.Duration{5 * time.Second},
			want: []string{"hang c1 user-1 turn-timeout 8000ms@8000"}},
		{name: "a mark after it", give: []time.Duration{2 * time.Second, 7 * time.Second},
			want: []string{"hang c1 user-1 turn-timeout 8000ms@8000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.send(conv("c1", 1, user("user-1", 0)))
			h.cut()
			h.advance(8 * time.Second)
			for _, d := range tt.give {
				h.in.Mark(at(d))
			}
			h.sync()
			if got := briefs(h.sink.take()); !slices.Equal(got, tt.want) {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEngineQueuedInputFirst: what waited in the input while the engine had no
// evidence (paused, or cut off from its server) is applied before the deadlines that
// passed meanwhile: a reply sent in time wins, a reply sent late resolves the hang that
// the evidence lets fire first.
func TestEngineQueuedInputFirst(t *testing.T) {
	tests := []struct {
		name string
		give func(h *harness)
		want []string
	}{
		{
			name: "a reply sent in time, queued across the deadline",
			give: func(h *harness) {
				h.advance(8 * time.Second)
				h.send(conv("c1", 3501, user("user-1", 0), reply("r-1", 3500)))
				h.restore()
			},
		},
		{
			name: "the same, the clock 1 h past the deadline",
			give: func(h *harness) {
				h.advance(time.Hour)
				h.send(conv("c1", 3501, user("user-1", 0), reply("r-1", 3500)))
				h.restore()
			},
		},
		{
			name: "a reply after the deadline, delivered after the mark",
			give: func(h *harness) {
				h.advance(7 * time.Second)
				h.restore()
				h.send(conv("c1", 6001, user("user-1", 0), reply("r-1", 6000)))
			},
			want: []string{"hang c1 user-1 turn-timeout 7000ms@7000", "hang-resolved c1 user-1 turn-timeout 6000ms@7000 reply=r-1"},
		},
		{
			name: "a reply after the deadline, received before a mark that covers it",
			give: func(h *harness) {
				// Core NATS cannot tell when a message it received late was sent: it is applied
				// before the mark that comes after it, so no hang. (JetStream can: see
				// TestEngineStoredBacklog.)
				h.advance(7 * time.Second)
				h.send(conv("c1", 6001, user("user-1", 0), reply("r-1", 6000)))
				h.restore()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.send(conv("c1", 1, user("user-1", 0)))
			h.cut()
			tt.give(h)
			if got := briefs(h.sink.take()); !slices.Equal(got, tt.want) {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEngineLateHangsTrueWait: a hang detected late carries the wait measured to the
// moment of detection, and its deadline, whichever threshold fired.
func TestEngineLateHangsTrueWait(t *testing.T) {
	tests := []struct {
		name  string
		turns []m
		give  time.Duration // when the evidence comes back
		want  string
		dl    time.Duration // the deadline
	}{
		{name: "on time", turns: []m{user("user-1", 0)}, give: 5 * time.Second,
			want: "hang c1 user-1 turn-timeout 5000ms@5000", dl: 5 * time.Second},
		{name: "2 s late", turns: []m{user("user-1", 0)}, give: 7 * time.Second,
			want: "hang c1 user-1 turn-timeout 7000ms@7000", dl: 5 * time.Second},
		{name: "an hour late", turns: []m{user("user-1", 0)}, give: time.Hour,
			want: "hang c1 user-1 turn-timeout 3600000ms@3600000", dl: 5 * time.Second},
		{name: "max wait, 3 s late", turns: []m{user("user-1", 0), user("user-2", 0), user("user-3", 0)}, give: 13 * time.Second,
			want: "hang c1 user-3 max-wait 13000ms@13000", dl: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.send(conv("c1", 1, tt.turns[0]))
			for i := 1; i < len(tt.turns); i++ {
				h.advance(4 * time.Second) // "hello?" re-arms the turn timeout
				tt.turns[i].at = int64(4000 * i)
				h.send(conv("c1", int64(4000*i+1), tt.turns[:i+1]...))
			}
			h.cut()
			h.advance(tt.give - time.Duration(h.now()-start.UnixNano()))
			h.restore()
			got := h.sink.take()
			if len(got) != 1 || brief(got[0]) != tt.want {
				t.Fatalf("outputs %q, want %q", briefs(got), tt.want)
			}
			if d := time.Duration(got[0].out.Deadline - start.UnixNano()); d != tt.dl {
				t.Errorf("deadline %v, want %v", d, tt.dl)
			}
		})
	}
}

// stored is one event of a call's traffic: at is when the pipeline published it (and a
// stream stored it).
type storedEvent struct {
	at time.Duration
	ev *detector.Event
}

// TestEngineStoredBacklog: a JetStream source marks each stored time before the message
// stored then, so that a backlog applied after an outage fires the deadlines it passed
// in the order they passed, between the messages: the verdicts are those of live
// delivery, only later.
func TestEngineStoredBacklog(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.MaxWait, cfg.ToolTimeout = 10*time.Second, 20*time.Second
	ms := func(d int64) time.Duration { return time.Duration(d) * time.Millisecond }
	traffic := []storedEvent{
		{1000, conv("in-time", 1000, user("user-1", 1000))},
		{1000, conv("late", 1000, user("user-1", 1000))},
		{1500, conv("never", 1500, user("user-1", 1500))},
		// The outage starts at 2 s.
		{3000, conv("max-wait", 3000, user("user-1", 3000))},
		{3000, conv("ended-early", 3000, user("user-1", 3000))},
		{3000, conv("ended-hung", 3000, user("user-1", 3000))},
		{3000, conv("tool", 3000, user("user-1", 3000))},
		{4000, conv("in-time", 4000, user("user-1", 1000), reply("r-1", 4000))},
		{4000, conv("tool", 4000, user("user-1", 3000), toolCall("t-1", 4000, "x"))},
		{5000, endEvent("ended-early")},
		{6000, conv("max-wait", 6000, user("user-1", 3000), user("user-2", 6000))},
		{8000, conv("late", 8000, user("user-1", 1000), reply("r-1", 8000))},
		{9000, conv("max-wait", 9000, user("user-1", 3000), user("user-2", 6000), user("user-3", 9000))},
		{12000, conv("max-wait", 12000, user("user-1", 3000), user("user-2", 6000), user("user-3", 9000), user("user-4", 12000))},
		{15000, conv("max-wait", 15000, user("user-1", 3000), user("user-2", 6000), user("user-3", 9000), user("user-4", 12000), reply("r-4", 15000))},
		// The result moves the deadline back to 8 s, which has passed: the hang fires at
		// once, before the max wait at 13 s.
		{9000, conv("tool", 9000, user("user-1", 3000), toolCall("t-1", 4000, "x"), toolResult("t-1r", 9000, "x"))},
		{10000, conv("tool", 10000, user("user-1", 3000), toolCall("t-1", 4000, "x"), toolResult("t-1r", 9000, "x"), reply("r-1", 10000))},
		{20000, endEvent("ended-hung")},
	}
	slices.SortStableFunc(traffic, func(a, b storedEvent) int { return int(a.at - b.at) })
	const outage, back = 2 * time.Second, 40 * time.Second
	run := func(t *testing.T, backlog bool) map[string][]string {
		h := newHarness(t, WithConfig(cfg))
		if backlog {
			h.cut()
		}
		for _, x := range traffic {
			when := ms(int64(x.at))
			ev := *x.ev
			switch {
			case !backlog || when < outage:
				h.advance(when - time.Duration(h.now()-start.UnixNano()))
				h.in.Mark(h.clock.Now())
				h.send(&ev)
			default:
				if h.now() < at(back).UnixNano() {
					h.advance(at(back).Sub(h.clock.Now()))
					if got := h.sink.take(); len(got) != 0 {
						t.Fatalf("during the outage: %q", briefs(got))
					}
				}
				h.in.Mark(at(when))
				h.in.Deliver(h.msgAt(&ev, at(when), true))
			}
		}
		h.restore()
		h.advance(time.Minute)
		got := map[string][]string{}
		for _, p := range h.sink.take() {
			got[p.callID] = append(got[p.callID], verdict(p))
			if p.out.Kind == detector.KindHang && p.out.At < p.out.Deadline {
				t.Errorf("%s: fired at %d before its deadline %d", p.callID, p.out.At, p.out.Deadline)
			}
		}
		return got
	}
	live := run(t, false)
	want := map[string][]string{
		"late":  {"hang late user-1/user-1 turn-timeout awaiting-assistant", "hang-resolved late user-1/user-1 turn-timeout awaiting-assistant reply=r-1"},
		"never": {"hang never user-1/user-1 turn-timeout awaiting-assistant"},
		"max-wait": {"hang max-wait user-1/user-4 max-wait awaiting-assistant",
			"hang-resolved max-wait user-1/user-4 max-wait awaiting-assistant reply=r-4"},
		"ended-hung": {"hang ended-hung user-1/user-1 turn-timeout awaiting-assistant",
			"hang-unresolved ended-hung user-1/user-1 turn-timeout awaiting-assistant"},
		"tool": {"hang tool user-1/user-1 turn-timeout after-tool", "hang-resolved tool user-1/user-1 turn-timeout after-tool reply=r-1"},
	}
	if !maps.EqualFunc(live, want, slices.Equal) {
		t.Fatalf("live verdicts:\n%s\nwant\n%s", show(live), show(want))
	}
	if got := run(t, true); !maps.EqualFunc(got, live, slices.Equal) {
		t.Errorf("verdicts of the backlog:\n%s\nwant those of live delivery:\n%s", show(got), show(live))
	}
}

// TestEngineBacklogFromBeforeStart: a restarted engine is handed a backlog stored before
// it started (a JetStream durable resuming after a kill -9), marked at its stored times,
// so its evidence starts before the engine's own start. A deadline that passed before
// the start fires once the evidence covers it, exactly once, and the engine goes on.
func TestEngineBacklogFromBeforeStart(t *testing.T) {
	h := newUnmarkedHarness(t)
	h.in.Hold()
	for _, x := range []struct {
		ago time.Duration
		ev  *detector.Event
	}{
		{20 * time.Second, conv("stalled", -20000, user("user-1", -20000))},
		{20 * time.Second, conv("answered", -20000, user("user-1", -20000))},
		{18 * time.Second, conv("answered", -18000, user("user-1", -20000), reply("r-1", -18000))},
	} {
		when := h.clock.Now().Add(-x.ago)
		h.in.DeliverOrdered(h.msgAt(x.ev, when, true))
	}
	h.in.Release()
	h.barrier() // before the fix, a shard spun here forever
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("fired before the evidence covered the deadline: %q", briefs(got))
	}
	h.in.DeliverOrdered(h.msgAt(conv("other", -10000, user("user-1", -10000)), h.clock.Now().Add(-10*time.Second), true))
	h.barrier()
	h.in.Mark(h.clock.Now())
	h.sync()
	want := []string{"hang other user-1 turn-timeout 10000ms@0", "hang stalled user-1 turn-timeout 20000ms@0"}
	got := briefs(h.sink.take())
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("once the evidence is in: %q, want %q", got, want)
	}
	h.advance(time.Minute)
	if got := h.sink.take(); len(got) != 0 {
		t.Errorf("later: %q, want nothing more", briefs(got))
	}
}

func show(m map[string][]string) string {
	keys := slices.Sorted(maps.Keys(m))
	s := ""
	for _, k := range keys {
		for _, v := range m[k] {
			s += "  " + v + "\n"
		}
	}
	return s
}

// TestEngineFutureTimes: a stored time or a mark after the engine's clock (a server
// whose clock runs ahead) is taken as the clock's now: it neither anchors a turn in the
// future nor claims evidence of what has not happened yet.
func TestEngineFutureTimes(t *testing.T) {
	h := newHarness(t)
	h.cut()
	h.in.Mark(at(time.Hour))
	h.in.Deliver(h.msgAt(conv("c1", 1, user("user-1", 0)), at(10*time.Second), true))
	h.advance(6 * time.Second)
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("fired on a mark from the future: %q", briefs(got))
	}
	h.in.Mark(h.clock.Now())
	h.sync()
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 6000ms@6000"}; !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q: the turn anchored at the clock's now when it came", got, want)
	}
}

// TestEngineHold: while a source rebuilds its calls from stored state, nothing fires,
// whatever the marks say; on Release everything due fires, except what the rebuilt
// state shows answered or ended.
func TestEngineHold(t *testing.T) {
	h := newHarness(t)
	h.advance(30 * time.Second)
	now := h.now() - start.UnixNano()
	rel := func(d time.Duration) int64 { return (now - int64(d)) / int64(time.Millisecond) } // ms after start, d before now
	stored := []struct {
		ago time.Duration
		ev  *detector.Event
	}{
		{20 * time.Second, conv("stalled", rel(20*time.Second), user("user-1", rel(20*time.Second)))},
		// Its deadline passed 13 s before its end, read in the rebuild: the latest
		// snapshot of a stream that keeps the latest event of each kind shows it
		// unanswered, so it hung; its end is final, and its hang and hang-unresolved go
		// out as the end is applied (SPEC §6: published late, once).
		{20 * time.Second, conv("ended", rel(20*time.Second), user("user-1", rel(20*time.Second)))},
		{20 * time.Second, conv("answered", rel(20*time.Second), user("user-1", rel(20*time.Second)))},
		{2 * time.Second, conv("recent", rel(2*time.Second), user("user-1", rel(2*time.Second)))},
		{2 * time.Second, endEvent("ended")},
		{time.Second, conv("answered", rel(time.Second), user("user-1", rel(20*time.Second)), reply("r-1", rel(17*time.Second)))},
	}
	h.in.Hold()
	for _, x := range stored {
		when := h.clock.Now().Add(-x.ago)
		h.in.Mark(when)
		h.in.Deliver(h.msgAt(x.ev, when, true))
	}
	h.in.Mark(h.clock.Now())
	h.sync()
	h.advance(10 * time.Second) // the clock runs on, marks too: still held
	h.in.Mark(h.clock.Now())
	h.sync()
	wantEnded := []string{"hang ended user-1 turn-timeout 20000ms@30000", "hang-unresolved ended user-1 turn-timeout 18000ms@30000"}
	if got := briefs(h.sink.take()); !slices.Equal(got, wantEnded) {
		t.Fatalf("published while held: %q, want only the ended call's %q", got, wantEnded)
	}
	h.in.Release()
	h.sync()
	// Every due deadline fires at the release, measured to it (40 s after start).
	want := []string{"hang recent user-1 turn-timeout 12000ms@40000", "hang stalled user-1 turn-timeout 30000ms@40000"}
	got := briefs(h.sink.take())
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("at the release: %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Calls != 3 || st.Hung != 2 {
		t.Errorf("calls/hung = %d/%d, want 3/2", st.Calls, st.Hung)
	}
}

// TestEngineHoldsNest: two holds need two releases.
func TestEngineHoldsNest(t *testing.T) {
	h := newHarness(t)
	h.in.Hold()
	h.in.Hold()
	h.send(conv("c1", 1, user("user-1", 0)))
	h.advance(6 * time.Second)
	h.in.Release()
	h.advance(time.Second)
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("published with one hold in force: %q", briefs(got))
	}
	h.in.Release()
	h.sync()
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 7000ms@7000"}; !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineReleaseBeforeNextEvent: what the release makes due fires before the event
// that comes after the release, even when the shard takes both in one batch: a reply
// that arrives after the rebuild resolves the hang of a deadline that passed during
// it; it does not hide it.
func TestEngineReleaseBeforeNextEvent(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.sink.notify()
	// Keep the shard busy publishing the hang of "busy" while the rest queues up.
	h.send(conv("busy", 1, user("user-1", 0)))
	entered, open := h.sink.hold("busy")
	defer open()
	h.clock.Advance(8 * time.Second)
	h.in.Mark(h.clock.Now())
	<-entered

	h.in.Hold()
	h.in.Deliver(h.msgAt(conv("c1", 1000, user("user-1", 1000)), at(time.Second), true))
	h.in.Release()
	h.in.Deliver(h.msg(conv("c1", 8000, user("user-1", 1000), reply("r-1", 7500))))
	eventually(t, "the shard's queue holds the four items", func() bool { return h.e.shards[0].q.len() == 4 })
	open()
	h.sync()
	want := []string{
		"hang busy user-1 turn-timeout 8000ms@8000",
		"hang c1 user-1 turn-timeout 7000ms@8000",
		"hang-resolved c1 user-1 turn-timeout 6500ms@8000 reply=r-1",
	}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineOverdueBeforeNextEvent: a tool's result moves the deadline back to a time
// that has passed: the hang fires at once, before the reply that the shard takes in
// the same batch.
func TestEngineOverdueBeforeNextEvent(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.ToolTimeout = 20 * time.Second
	h := newHarness(t, WithShards(1), WithConfig(cfg))
	h.sink.notify()
	h.send(conv("c1", 1, user("user-1", 0)))
	h.send(conv("c1", 2, user("user-1", 0), toolCall("t-1", 1, "x")))
	h.send(conv("busy", 3, user("user-1", 0)))
	entered, open := h.sink.hold("busy")
	defer open()
	h.clock.Advance(8 * time.Second) // c1 awaits its tool: its deadline is at 20 s
	h.in.Mark(h.clock.Now())
	<-entered
	h.in.Deliver(h.msg(conv("c1", 8000, user("user-1", 0), toolCall("t-1", 1, "x"), toolResult("t-1r", 8000, "x"))))
	h.in.Deliver(h.msg(conv("c1", 8001, user("user-1", 0), toolCall("t-1", 1, "x"), toolResult("t-1r", 8000, "x"), reply("r-1", 8000))))
	eventually(t, "the shard's queue holds both", func() bool { return h.e.shards[0].q.len() == 2 })
	open()
	h.sync()
	want := []string{
		"hang busy user-1 turn-timeout 8000ms@8000",
		"hang c1 user-1 turn-timeout 8000ms@8000",
		"hang-resolved c1 user-1 turn-timeout 8000ms@8000 reply=r-1",
	}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineProbesMidBatch: a deadline that falls due while the shard applies a long
// batch asks for its proof within askEvery items, not once the whole batch is applied:
// the proof's round trip runs while the rest is.
func TestEngineProbesMidBatch(t *testing.T) {
	h := newHarness(t, WithShards(1))
	// Two hung calls whose replies publish their resolutions: "busy" holds the shard
	// while the batch queues up, "mid" holds it in the middle of the batch.
	h.send(conv("busy", 1, user("user-1", 0)))
	h.send(conv("mid", 1, user("user-1", 0)))
	h.advance(6 * time.Second)
	h.send(conv("c1", 6000, user("user-1", 6000))) // due at 11 s
	h.cut()
	var mu sync.Mutex
	var applied []int64 // the events applied when each probe was asked for
	h.src.mu.Lock()
	h.src.onProbe = func() {
		mu.Lock()
		applied = append(applied, h.e.Stats().Events)
		mu.Unlock()
	}
	h.src.mu.Unlock()

	entered, open := h.sink.hold("busy")
	defer open()
	h.in.Deliver(h.msg(conv("busy", 6500, user("user-1", 0), reply("r-1", 6500))))
	<-entered
	const fill = 200
	for i := range fill {
		if i == fill/2 {
			h.in.Deliver(h.msg(conv("mid", 6500, user("user-1", 0), reply("r-1", 6500))))
		}
		h.in.Deliver(h.msg(statusEvent(fmt.Sprint("f", i), detector.StatusOngoing)))
	}
	eventually(t, "the shard's queue holds the batch", func() bool { return h.e.shards[0].q.len() == fill+1 })
	midEntered, openMid := h.sink.hold("mid")
	defer openMid()
	open()
	<-midEntered
	before := h.e.Stats().Events // "busy"'s reply and half the batch
	h.clock.Advance(6 * time.Second)
	openMid()
	h.barrier()
	after := h.e.Stats().Events
	mu.Lock()
	defer mu.Unlock()
	if after-before != fill/2 || len(applied) == 0 {
		t.Fatalf("%d events applied after the deadline fell due, %d probes (%v); want %d and a probe", after-before, len(applied), applied, fill/2)
	}
	if applied[0] >= after || applied[0]-before > askEvery {
		t.Errorf("the probe was asked for with %d of the last %d events applied, want at most %d (askEvery)", applied[0]-before, fill/2, askEvery)
	}
}

// TestEngineProbesOnce: a shard whose deadline is due without evidence asks the source
// for a mark once, however often it wakes, until the evidence moves past its request.
func TestEngineProbesOnce(t *testing.T) {
	h := newHarness(t)
	ids := callsOn(h.e, "c")
	h.send(conv(ids[0], 1, user("user-1", 0)))
	h.send(conv(ids[1], 1, user("user-1", 1000)))
	if n := h.e.Stats().Probes; n != 0 {
		t.Fatalf("%d probes before any deadline", n)
	}
	h.cut()
	for range 20 {
		h.advance(time.Second)
	}
	if n := h.e.Stats().Probes; n != 2 {
		t.Errorf("%d probes for two blocked deadlines on two shards, over 20 wake-ups; want 2", n)
	}
	h.restore()
	if got := len(h.sink.take()); got != 2 {
		t.Errorf("%d hangs after the evidence came, want 2", got)
	}
	// The next deadline blocks again: one more probe.
	h.send(conv(ids[0], 20_001, user("user-1", 0), reply("r-1", 20_000), user("user-2", 20_000)))
	for range 10 {
		h.advance(time.Second)
	}
	if n := h.e.Stats().Probes; n != 3 {
		t.Errorf("%d probes after a third blocked deadline, want 3", n)
	}
}

// TestEngineProbesLaterDeadline: a deadline that falls due while the proof asked for an
// earlier one is on its way asks for its own at once: that proof began before it and
// cannot let it fire, and waiting for it to come back would add a round trip.
func TestEngineProbesLaterDeadline(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.send(conv("c1", 1, user("user-1", 0)))
	h.clock.Advance(100 * time.Millisecond)
	h.send(conv("c2", 101, user("user-1", 100)))
	// The input has caught up to 4.9 s (the wheel's wakes on the way may have asked).
	h.clock.Advance(4800 * time.Millisecond)
	h.in.Mark(h.clock.Now())
	h.barrier()
	before := h.e.Stats().Probes
	h.cut()
	h.advance(100 * time.Millisecond)
	if n := h.e.Stats().Probes - before; n != 1 {
		t.Fatalf("%d probes once the first deadline is due, want 1", n)
	}
	for range 4 {
		h.advance(50 * time.Millisecond)
	}
	if n := h.e.Stats().Probes - before; n != 2 {
		t.Errorf("%d probes once the second deadline is due, the first proof still out; want 2", n)
	}
	h.restore()
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 5200ms@5200", "hang c2 user-1 turn-timeout 5100ms@5200"}; !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
}

// TestEngineAnsweredTurnAsksNothing: the deadline of a turn answered is moved to the
// call's TTL at once, not left to an early tick, which would need a proof of the input
// (a round trip) first: nothing is asked of the source when that deadline's time comes.
func TestEngineAnsweredTurnAsksNothing(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.send(conv("c1", 1, user("user-1", 0)))
	h.clock.Advance(100 * time.Millisecond)
	h.send(conv("c1", 101, user("user-1", 0), reply("r-1", 100)))
	h.cut()
	before := h.e.Stats().Probes
	for range 60 {
		h.advance(100 * time.Millisecond) // past the turn's deadline, at 5 s
	}
	if n := h.e.Stats().Probes - before; n != 0 {
		t.Errorf("%d probes for the deadline of a turn answered, want 0", n)
	}
	h.restore()
	if got := h.sink.take(); len(got) != 0 {
		t.Errorf("published %q, want nothing", briefs(got))
	}
}

// TestEngineAsksOnTime: with timers that call a hook as they fire (the machine's), the
// proof of a deadline is asked for as the deadline falls due, by the timer's own
// goroutine, before the shard wakes (in the middle of a batch, or waiting for a CPU, it
// would ask late); the shard, once awake, does not ask again.
func TestEngineAsksOnTime(t *testing.T) {
	h, hooked := newHookedHarness(t, WithShards(1))
	h.send(conv("c1", 1, user("user-1", 0)))
	hooked.Advance(4999 * time.Millisecond)
	h.in.Mark(h.clock.Now())
	h.barrier() // the timer is set for the deadline itself
	h.cut()
	before := h.e.Stats().Probes
	hooked.Advance(time.Millisecond)
	if n := h.e.Stats().Probes - before; n != 1 {
		t.Fatalf("%d probes as the deadline fell due, before the shard woke; want 1", n)
	}
	h.barrier()
	if n := h.e.Stats().Probes - before; n != 1 {
		t.Errorf("%d probes once the shard woke, want 1: it asked again", n)
	}
	// Asked for, not proved (the source does not answer): nothing fires yet (SPEC §2).
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("published %q before the proof came back", briefs(got))
	}
	h.restore()
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 5000ms@5000"}; !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
	// A timer late for a deadline that the input has caught up with meanwhile (a mark
	// came first) asks nothing.
	s := h.e.shards[0]
	h.in.Mark(h.clock.Now())
	h.barrier()
	before = h.e.Stats().Probes
	s.onTimer()
	if n := h.e.Stats().Probes - before; n != 0 {
		t.Errorf("%d probes from a timer whose time the evidence covers, want 0", n)
	}
	h.clock.Advance(time.Millisecond)
	s.onTimer()
	if n := h.e.Stats().Probes - before; n != 1 {
		t.Errorf("%d probes from a timer past the evidence, want 1", n)
	}
}

// TestEngineTimerFires checks the path without Sync: the shard's one clock timer fires
// at the deadline, the shard asks for a mark, and the source's answer fires the hang.
func TestEngineTimerFires(t *testing.T) {
	h := newHarness(t, WithShards(1))
	h.sink.notify()
	h.src.setAuto(true)
	h.send(conv("c1", 1, user("user-1", 0)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the shard set no timer: %v", err)
	}
	h.clock.Advance(4999 * time.Millisecond)
	h.barrier()
	if got := h.sink.take(); len(got) != 0 {
		t.Fatalf("published before the deadline: %q", briefs(got))
	}
	h.clock.Advance(time.Millisecond)
	if got, want := brief(h.sink.wait(t)), "hang c1 user-1 turn-timeout 5000ms@5000"; got != want {
		t.Errorf("published %q, want %q", got, want)
	}
}

// TestEngineMarksReachIdleShards: a shard that gets no message still sees the input
// catch up, while messages keep flowing to the other shard.
func TestEngineMarksReachIdleShards(t *testing.T) {
	h := newHarness(t)
	h.sink.notify()
	ids := callsOn(h.e, "c")
	busy, quiet := ids[0], ids[1]
	h.send(conv(quiet, 1, user("user-1", 0)))
	h.send(conv(busy, 1, user("user-1", 0), reply("r-1", 0)))
	h.cut() // no probe is answered: the marks come with the flow only
	applied := make(chan struct{}, 1)
	for i := 1; i <= 60; i++ {
		h.clock.Advance(100 * time.Millisecond)
		h.in.Mark(h.clock.Now())
		msg := h.msg(statusEvent(busy, detector.StatusOngoing))
		msg.onDone = func() { applied <- struct{}{} }
		h.in.Deliver(msg)
		<-applied
		if i == 50 {
			if got, want := brief(h.sink.wait(t)), "hang "+quiet+" user-1 turn-timeout 5000ms@5000"; got != want {
				t.Fatalf("published %q, want %q", got, want)
			}
		}
	}
}

// TestEngineMarkNotLostBehindControl: a mark that the sequencer holds back (it came in a
// burst, right after another) still reaches every shard when what follows it is not a
// message (a gap, a hold): a shard that asked for it must not wait for more input.
func TestEngineMarkNotLostBehindControl(t *testing.T) {
	tests := []struct {
		name string
		give func(in Intake)
		want string // after the hang
	}{
		{name: "a gap", give: func(in Intake) { in.Gap(at(100*time.Millisecond), at(200*time.Millisecond)) }, want: " gap=100ms"},
		{name: "a hold and its release", give: func(in Intake) { in.Hold(); in.Release() }},
		{name: "a revoke", give: func(in Intake) { in.Revoke(7) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.sink.notify()
			ids := callsOn(h.e, "c")
			h.send(conv(ids[1], 1, user("user-1", 0)))
			h.cut()
			h.advance(5 * time.Second) // the deadline is due: the shard asks, nobody answers
			// A mark broadcast now, just short of the deadline, so that the next one at the
			// same instant is not broadcast on its own.
			h.in.Mark(at(4999 * time.Millisecond))
			h.barrier()
			// Hold the sequencer on a message, queue a mark behind it and a control behind
			// the mark, then let it go.
			msg := h.msg(statusEvent(ids[0], detector.StatusOngoing))
			open := h.dec.gate(string(msg.data))
			h.in.Deliver(msg)
			h.in.Mark(h.clock.Now())
			tt.give(h.in)
			open()
			if got, want := brief(h.sink.wait(t)), "hang "+ids[1]+" user-1 turn-timeout 5000ms@5000"+tt.want; got != want {
				t.Fatalf("published %q, want %q", got, want)
			}
		})
	}
}

// TestEngineGaps: a hang whose stretch was armed before an input gap says how much of
// its wait the gap covers; one armed after it says nothing.
func TestEngineGaps(t *testing.T) {
	s := time.Second
	type gap struct{ from, to time.Duration }
	tests := []struct {
		name  string
		armed int64 // ms
		give  []gap
		want  string
	}{
		{name: "no gap", want: "hang c1 user-1 turn-timeout 5000ms@5000"},
		{name: "a gap within the wait", give: []gap{{2 * s, 3500 * time.Millisecond}},
			want: "hang c1 user-1 turn-timeout 5000ms@5000 gap=1500ms"},
		{name: "a gap that began before the stretch: the overlap only", give: []gap{{-2 * s, s}},
			want: "hang c1 user-1 turn-timeout 5000ms@5000 gap=1000ms"},
		{name: "a gap that ended before the stretch", armed: 4000, give: []gap{{s, 2 * s}},
			want: "hang c1 user-1 turn-timeout 5000ms@9000"},
		{name: "a gap after the hang", give: []gap{{6 * s, 7 * s}},
			want: "hang c1 user-1 turn-timeout 5000ms@5000"},
		{name: "two gaps", give: []gap{{s, 2 * s}, {3 * s, 3500 * time.Millisecond}},
			want: "hang c1 user-1 turn-timeout 5000ms@5000 gap=1500ms"},
		{name: "a stretch armed after the gap", armed: 4000, give: []gap{{2 * s, 3500 * time.Millisecond}},
			want: "hang c1 user-1 turn-timeout 5000ms@9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.advance(time.Duration(tt.armed) * time.Millisecond)
			h.send(conv("c1", tt.armed+1, user("user-1", tt.armed)))
			// A source reports a gap once it is over.
			var total time.Duration
			deadline := at(time.Duration(tt.armed)*time.Millisecond + 5*time.Second)
			for _, g := range tt.give {
				if d := deadline.Sub(h.clock.Now()); d > 0 && at(g.to).After(deadline) {
					h.advance(d)
				}
				if d := at(g.to).Sub(h.clock.Now()); d > 0 {
					h.advance(d)
				}
				h.in.Gap(at(g.from), at(g.to))
				total += g.to - g.from
			}
			if d := deadline.Sub(h.clock.Now()); d > 0 {
				h.advance(d)
			}
			h.sync()
			if got := briefs(h.sink.take()); len(got) != 1 || got[0] != tt.want {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
			if st := h.e.Stats(); st.Gaps != int64(len(tt.give)) || st.GapTime != total {
				t.Errorf("Stats() gaps %d (%v), want %d (%v)", st.Gaps, st.GapTime, len(tt.give), total)
			}
		})
	}
}

// TestEngineWallSteps: steps of the machine's wall clock neither fire nor delay a
// deadline (they run on the monotonic clock); outputs are stamped with the wall clock.
func TestEngineWallSteps(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // the step, 2 s after start
	}{
		{name: "no step"},
		{name: "an hour forward", give: time.Hour},
		{name: "an hour back", give: -time.Hour},
		{name: "a day back", give: -24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *harness
			step := time.Duration(0)
			wall := func() time.Time { return h.clock.Now().Add(step) }
			h = newHarness(t, WithWall(wall))
			h.send(conv("c1", 1, user("user-1", 0)))
			h.advance(2 * time.Second)
			step = tt.give // the test's goroutine is the only one that reads the wall here
			h.advance(2999 * time.Millisecond)
			if got := h.sink.take(); len(got) != 0 {
				t.Fatalf("fired early: %q", briefs(got))
			}
			h.advance(time.Millisecond)
			got := h.sink.take()
			if len(got) != 1 || brief(got[0]) != "hang c1 user-1 turn-timeout 5000ms@5000" {
				t.Fatalf("outputs %q, want the hang at 5 s", briefs(got))
			}
			if w, want := got[0].out.Wall, at(5*time.Second+tt.give).UnixNano(); w != want {
				t.Errorf("hang stamped %v, want %v", time.Unix(0, w).UTC(), time.Unix(0, want).UTC())
			}
			h.send(conv("c1", 6001, user("user-1", 0), reply("r-1", 6000)))
			if got := h.sink.take(); len(got) != 1 || got[0].out.Wall != at(5*time.Second+tt.give).UnixNano() {
				t.Errorf("resolved %q stamped %v, want the stepped wall", briefs(got), got[0].out.Wall)
			}
		})
	}
}

// TestEngineStoredReplyReplaced: a stream that keeps one message per subject replaced
// the snapshot that held the reply (stored before the deadline) with a later one (stored
// after it), while the engine was behind. The later snapshot's mark covers the deadline,
// but the call's own deadline is left to the detector, which reads the reply's own time:
// no hang. Another call's deadline covered by the same mark fires.
func TestEngineStoredReplyReplaced(t *testing.T) {
	h := newHarness(t)
	h.cut()
	h.send(conv("c1", 1, user("user-1", 0)))
	h.send(conv("c2", 1, user("user-1", 0)))
	h.advance(7 * time.Second)
	// Stored at 6.5 s: the reply came at 3 s, then user-2 at 6 s.
	when := start.Add(6500 * time.Millisecond)
	h.in.DeliverOrdered(h.msgAt(conv("c1", 6500, user("user-1", 0), reply("r-1", 3000), user("user-2", 6000)), when, true))
	h.sync()
	want := []string{"hang c2 user-1 turn-timeout 7000ms@7000"}
	if got := briefs(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineEndWhileEvidenceLags: core NATS, the engine has no evidence past the deadline
// yet (paused, or a flush in flight) when the caller's hang-up arrives, sent 6.5 s into a
// 5 s silence by the pipeline's own clock: the hang, then its hang-unresolved, although
// the end frees the call before the evidence comes.
func TestEngineEndWhileEvidenceLags(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 1)))
	h.cut()
	h.advance(7 * time.Second)
	end := statusEvent("c1", detector.StatusEnded)
	end.Time = start.UnixMilli() + 6500
	end.EndedReason = "customer-ended-call"
	h.send(end)
	h.restore()
	h.advance(time.Minute)
	got := briefs(h.sink.take())
	want := []string{"hang c1 user-1 turn-timeout 7000ms@7000", "hang-unresolved c1 user-1 turn-timeout 6499ms@7000"}
	if !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineTurnWhileEvidenceLags: the engine is paused (no evidence) across user-1's
// deadline (5 s); on waking it reads a snapshot with user-2, spoken at 6 s by the
// pipeline's clock, after the deadline: user-1's hang, not a timeout re-armed from user-2
// (with max wait off the reply at 10.5 s would have come before it: no hang at all).
func TestEngineTurnWhileEvidenceLags(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.MaxWait = 0
	h := newHarness(t, WithConfig(cfg))
	h.send(conv("c1", 1, user("user-1", 1)))
	h.cut()
	h.advance(9 * time.Second)
	h.send(conv("c1", 6001, user("user-1", 1), user("user-2", 6000)))
	h.restore()
	h.advance(2 * time.Second)
	h.send(conv("c1", 10_501, user("user-1", 1), user("user-2", 6000), reply("r1", 10_500)))
	h.advance(time.Minute)
	got := verdicts(h.sink.take())
	want := []string{
		"hang c1 user-1/user-1 turn-timeout awaiting-assistant",
		"hang-resolved c1 user-1/user-2 turn-timeout awaiting-assistant reply=r1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}
