package engine

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// This file checks the input pipeline: order, back-pressure, isolation of calls and
// shards, bad input.

// TestEnginePerCallOrder: with several decode workers that take random times, every
// call's messages are applied in the order they were delivered.
func TestEnginePerCallOrder(t *testing.T) {
	h := newHarness(t, WithShards(3), WithDecoders(4))
	var mu sync.Mutex
	rng, delays := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(3, 4))
	h.dec.delay = func() {
		mu.Lock()
		d := time.Duration(delays.IntN(200)) * time.Microsecond
		mu.Unlock()
		time.Sleep(d) // real time, for the interleaving only: the test asserts order, not timing
	}
	const calls, each = 30, 40
	applied := make(map[string][]int)
	var next [calls]int
	for range calls * each {
		c := rng.IntN(calls)
		for next[c] == each {
			c = (c + 1) % calls
		}
		id, seq := fmt.Sprint("c", c), next[c]
		next[c]++
		msg := h.msg(statusEvent(id, detector.StatusOngoing))
		msg.onDone = func() {
			mu.Lock()
			applied[id] = append(applied[id], seq)
			mu.Unlock()
		}
		h.in.Deliver(msg)
		if rng.IntN(10) == 0 { // bad input between them changes nothing
			h.in.Deliver(&testMsg{data: []byte("garbage"), received: h.clock.Now(), partition: -1, src: h.src})
		}
	}
	h.sync()
	mu.Lock()
	defer mu.Unlock()
	for c := range calls {
		id := fmt.Sprint("c", c)
		got := applied[id]
		for i := range got {
			if got[i] != i {
				t.Fatalf("%s applied in the order %v", id, got)
			}
		}
		if len(got) != each {
			t.Errorf("%s: %d applied, want %d", id, len(got), each)
		}
	}
}

// TestEngineNoHeadOfLineBlocking: a shard stuck in its sink delays neither another
// shard's hang nor the events that go to that shard.
func TestEngineNoHeadOfLineBlocking(t *testing.T) {
	h := newHarness(t, WithShards(2))
	h.sink.notify()
	ids := callsOn(h.e, "c")
	stuck, free := ids[0], ids[1]
	h.send(conv(stuck, 1, user("user-1", 0)))
	h.send(conv(free, 1, user("user-1", 0)))
	entered, open := h.sink.hold(stuck)
	defer open()
	h.clock.Advance(5 * time.Second)
	h.in.Mark(h.clock.Now())
	<-entered
	if got, want := brief(h.sink.wait(t)), "hang "+free+" user-1 turn-timeout 5000ms@5000"; got != want {
		t.Fatalf("published %q, want %q", got, want)
	}
	// Events for the stuck shard queue up; the other shard goes on.
	for i := range 20 {
		h.in.Deliver(h.msg(statusEvent(fmt.Sprint(stuck, "-", i), detector.StatusOngoing)))
	}
	h.clock.Advance(time.Second)
	h.in.Deliver(h.msg(conv(free, 6001, user("user-1", 0), reply("r-1", 6000))))
	if got, want := brief(h.sink.wait(t)), "hang-resolved "+free+" user-1 turn-timeout 6000ms@6000 reply=r-1"; got != want {
		t.Fatalf("published %q, want %q", got, want)
	}
	open()
	if got, want := brief(h.sink.wait(t)), "hang "+stuck+" user-1 turn-timeout 5000ms@5000"; got != want {
		t.Errorf("published %q, want %q", got, want)
	}
	h.sync()
	if st := h.e.Stats(); st.Calls != 22 {
		t.Errorf("%d calls, want 22", st.Calls)
	}
}

// blockedShard makes the shard of call "stuck" wait in its sink, and returns the
// function that lets it go.
func blockedShard(t *testing.T, h *harness) (open func()) {
	t.Helper()
	h.send(conv("stuck", 1, user("user-1", 0)))
	entered, open := h.sink.hold("stuck")
	t.Cleanup(open)
	h.clock.Advance(5 * time.Second)
	h.in.Mark(h.clock.Now())
	<-entered
	return open
}

// delivering delivers msgs from a goroutine of its own; the channel is closed once the
// last Deliver has returned.
func delivering(h *harness, msgs ...*testMsg) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range msgs {
			h.in.Deliver(m)
		}
	}()
	return done
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestEngineByteBudget: Deliver waits while the bytes in flight are at the budget, and
// goes on once the shard has applied what it holds.
func TestEngineByteBudget(t *testing.T) {
	h := newHarness(t, WithShards(1), WithInflight(3000, 100))
	open := blockedShard(t, h)
	var msgs []*testMsg
	for i := range 10 {
		msgs = append(msgs, h.msg(statusEvent(fmt.Sprint("c", i), detector.StatusOngoing)))
	}
	done := delivering(h, msgs...)
	eventually(t, "Deliver waits for room", func() bool { return h.e.Stats().InflightWaits > 0 })
	st := h.e.Stats()
	if closed(done) || st.Inflight > 3000 {
		t.Fatalf("delivered all (%v) with %d bytes in flight, budget 3000", closed(done), st.Inflight)
	}
	open()
	<-done
	h.sync()
	if st := h.e.Stats(); st.Calls != 11 || st.Inflight != 0 {
		t.Errorf("calls %d, in flight %d; want 11, 0", st.Calls, st.Inflight)
	}
}

// TestEngineLargeMessage: a message larger than the whole budget is let in alone: after
// what is in flight, and before what comes after it.
func TestEngineLargeMessage(t *testing.T) {
	h := newHarness(t, WithShards(1), WithInflight(1000, 100))
	open := blockedShard(t, h)
	small := h.msg(statusEvent("before", detector.StatusOngoing))
	h.in.Deliver(small) // in flight, behind the stuck publish
	big := h.msg(conv("big", 1, user("user-1", 0)))
	key := string(big.data) + strings.Repeat(" ", 5000)
	h.dec.mu.Lock()
	h.dec.events[key] = h.dec.events[string(big.data)]
	h.dec.mu.Unlock()
	big.data = []byte(key)
	decoded := h.dec.gate(key) // keeps it in flight once it is in
	done := delivering(h, big, h.msg(statusEvent("after", detector.StatusOngoing)))
	eventually(t, "the large message waits", func() bool { return h.e.Stats().InflightWaits == 1 })
	if closed(done) {
		t.Fatal("a message larger than the budget went in beside another")
	}
	open()
	eventually(t, "the next message waits for the large one", func() bool { return h.e.Stats().InflightWaits == 2 })
	if closed(done) {
		t.Fatal("a message went in beside one larger than the budget")
	}
	decoded()
	<-done
	h.sync()
	if st := h.e.Stats(); st.Calls != 4 || st.Inflight != 0 || st.InflightWaits != 2 {
		t.Errorf("calls %d, in flight %d, waits %d; want 4, 0, 2", st.Calls, st.Inflight, st.InflightWaits)
	}
}

// TestEngineBadInput: a message that does not decode is rejected and counted, is not
// done, and touches no call.
func TestEngineBadInput(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 0)))
	for _, data := range []string{"", "garbage", "{}"} {
		h.in.Deliver(&testMsg{data: []byte(data), received: h.clock.Now(), partition: -1, src: h.src})
	}
	h.sync()
	h.advance(5 * time.Second)
	if got, want := briefs(h.sink.take()), []string{"hang c1 user-1 turn-timeout 5000ms@5000"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("outputs %q, want %q", got, want)
	}
	st := h.e.Stats()
	h.src.mu.Lock()
	rejected, done := h.src.rejected, h.src.done
	h.src.mu.Unlock()
	if st.Bad != 3 || rejected != 3 || done != 1 || st.Calls != 1 {
		t.Errorf("bad %d, rejected %d, done %d, calls %d; want 3, 3, 1, 1", st.Bad, rejected, done, st.Calls)
	}
}

// TestEngineAfterRun: a source that goes on after Run returned (one that gave up
// draining) neither panics nor blocks, and nothing it hands over is applied or done.
func TestEngineAfterRun(t *testing.T) {
	h := newHarness(t, WithInflight(600, 1))
	h.stop()
	msgs := []*testMsg{h.msg(conv("late", 1, user("user-1", 0))), h.msg(conv("late-2", 1, user("user-1", 0))), h.msg(endEvent("late"))}
	done := delivering(h, msgs...) // more than the budget and the queues hold
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Deliver blocked after the engine stopped")
	}
	h.in.Mark(h.clock.Now())
	h.in.Gap(start, h.clock.Now())
	h.in.Hold()
	h.in.Release()
	h.in.Revoke(1)
	h.barrier()
	if st := h.e.Stats(); st.Calls != 0 || h.src.doneCount() != 0 {
		t.Errorf("after the stop: %d calls, %d done; want 0, 0", st.Calls, h.src.doneCount())
	}
}

// TestEngineDeliverBlockedAtStop: a Deliver that waits for room when the engine stops
// returns, without the message being applied or done.
func TestEngineDeliverBlockedAtStop(t *testing.T) {
	h := newHarness(t, WithShards(1), WithInflight(1000, 100))
	open := blockedShard(t, h)
	h.in.Deliver(h.msg(statusEvent("in-flight", detector.StatusOngoing)))
	blocked := h.msg(statusEvent("blocked", detector.StatusOngoing))
	done := delivering(h, blocked)
	eventually(t, "Deliver waits for room", func() bool { return h.e.Stats().InflightWaits > 0 })
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.stop()
	}()
	<-done // returns while the shard is still stuck
	open()
	<-stopped
	if st := h.e.Stats(); st.Calls != 2 || h.src.doneCount() != 2 {
		t.Errorf("calls %d, done %d; want 2 (stuck, in-flight), 2", st.Calls, h.src.doneCount())
	}
}

// TestPipelineMarkSkipsIdleSequencer: a mark given while the sequencer holds nothing
// goes straight to every shard's queue; one given while a job waits in the order takes
// its place behind it. (The engine is not run: the queues are looked at as they are.)
func TestPipelineMarkSkipsIdleSequencer(t *testing.T) {
	e, err := New(&testSource{}, &testDecoder{}, &recordingSink{}, WithShards(3))
	if err != nil {
		t.Fatal(err)
	}
	p := e.pipe
	marks := func() (n int) {
		for _, s := range e.shards {
			items, _ := s.q.take(nil)
			for _, it := range items {
				if it.job == nil && it.barrier == nil && it.ctl == ctlNone && it.mark > 0 {
					n++
				}
			}
		}
		return n
	}
	p.Mark(at(time.Second))
	if got := marks(); got != 3 || len(p.order) != 0 {
		t.Fatalf("idle sequencer: %d shards got the mark, %d jobs in the order; want 3, 0", got, len(p.order))
	}
	p.Hold() // a job the sequencer has not handed on
	p.Mark(at(2 * time.Second))
	if got := marks(); got != 0 || len(p.order) != 2 {
		t.Fatalf("busy sequencer: %d shards got the mark, %d jobs in the order; want 0, 2", got, len(p.order))
	}
}

// TestEngineMarkBehindReply: a reply held in decoding, then a mark past its call's
// deadline: the mark waits behind the reply, so no hang fires (evidence before
// verdict), and the sequencer's shortcut for marks never overtakes a message.
func TestEngineMarkBehindReply(t *testing.T) {
	h := newHarness(t)
	h.send(conv("c1", 1, user("user-1", 0)))
	h.cut()
	h.advance(5 * time.Second) // due: the shard asks, nobody answers yet
	msg := h.msg(conv("c1", 2, user("user-1", 0), reply("reply-1", 4900)))
	open := h.dec.gate(string(msg.data))
	h.in.Deliver(msg)
	h.in.Mark(h.clock.Now())
	open()
	h.barrier()
	if got := briefs(h.sink.take()); len(got) != 0 {
		t.Fatalf("published %q before the reply held in decoding was applied", got)
	}
	if n := h.e.pipe.queued.Load(); n != 0 {
		t.Errorf("%d jobs counted in the order after a barrier, want 0: marks would never skip the sequencer", n)
	}
}
