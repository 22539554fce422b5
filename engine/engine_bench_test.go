package engine

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// benchEngine runs an engine on the real clock for a benchmark.
func benchEngine(b *testing.B, opts ...Option) (*Engine, func(*detector.Event), func()) {
	b.Helper()
	src := &testSource{deliver: make(chan func(*detector.Event), 1)}
	e, err := New(src, &discardSink{}, append([]Option{WithClock(clock.Real())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	_, stopRun := runEngine(e)
	deliver := <-src.deliver
	return e, deliver, func() {
		if err := stopRun(); err != nil {
			b.Error(err)
		}
	}
}

type discardSink struct{}

func (discardSink) Publish(string, *detector.Output) error { return nil }

// callID returns a call id shaped like the pipeline's (39 bytes).
func callID(i int) string { return fmt.Sprintf("WC-%08x-1b7d-4c61-9a3e-2d8b7c6e%04x", i, i&0xffff) }

// shared is one payload that every event of the memory benchmarks carries, so that what
// they measure is the engine's own cost per call, without the retained snapshot.
var shared = payload("shared")

func syncEngine(b *testing.B, e *Engine) {
	b.Helper()
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEngineEvents measures the throughput of the engine (decode excluded) with
// `calls` live calls spread over the shards. Each round gives every call one turn, in
// turn a user turn that arms it and a reply that answers it, with a history one message
// longer each time, delivered from one goroutine like a subscription does.
func BenchmarkEngineEvents(b *testing.B) {
	for _, calls := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			e, deliver, stop := benchEngine(b)
			defer stop()
			evs := make([]detector.Event, calls)
			for i := range evs {
				evs[i] = detector.Event{Type: detector.TypeConversationUpdate, CallID: callID(i), Payload: shared,
					Stretches: make([]detector.Stretch, 0, 1)}
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				i, round := n%calls, int32(n/calls)
				// Message 2k is a user turn, 2k+1 its reply: round 2k delivers the history up
				// to the turn, round 2k+1 up to the reply. Only the latest stretch matters.
				ev := &evs[i]
				ev.Messages = round + 1
				turn := detector.Turn{ID: "user", Index: round &^ 1}
				st := detector.Stretch{First: turn, Last: turn}
				if round%2 == 1 {
					st.Reply, st.Answered = detector.Turn{ID: "reply", Index: round}, true
				}
				ev.Stretches = append(ev.Stretches[:0], st)
				ev.Received = time.Now().UnixNano()
				deliver(ev)
				n++
				if n%calls == 0 {
					// Every event of the round is applied before its struct is reused.
					syncEngine(b, e)
				}
			}
			syncEngine(b, e)
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			if st := e.Stats(); st.Events != int64(n) || st.Ignored != 0 {
				b.Fatalf("applied %d events, ignored %d; want %d, 0", st.Events, st.Ignored, n)
			}
		})
	}
}

// BenchmarkEngineMemory reports the heap bytes the engine holds per call: idle (nothing
// unanswered) and armed (a stretch unanswered; the retained snapshot itself excluded).
func BenchmarkEngineMemory(b *testing.B) {
	for _, calls := range []int{100_000, 1_000_000} {
		for _, armed := range []bool{false, true} {
			state := "idle"
			if armed {
				state = "armed"
			}
			b.Run(fmt.Sprintf("calls=%d/%s", calls, state), func(b *testing.B) {
				for b.Loop() {
					perCall := engineHeapPerCall(b, calls, armed)
					b.ReportMetric(perCall, "B/call")
				}
			})
		}
	}
}

func engineHeapPerCall(b *testing.B, calls int, armed bool) float64 {
	before := heapInUse()
	// A fake clock that never moves: delivering a million events takes longer than the
	// turn timeout, and an armed call must stay armed to be measured.
	fake := clockwork.NewFakeClockAt(start)
	e, deliver, stop := benchEngine(b, WithClock(fake))
	now := fake.Now().UnixNano()
	for i := range calls {
		ev := conv(callID(i), user("user-1", 0), reply("r1", 0))
		if armed {
			ev = conv(callID(i), user("user-1", 0))
		}
		ev.Received, ev.Payload = now, shared
		deliver(ev)
	}
	syncEngine(b, e)
	after := heapInUse()
	if st := e.Stats(); st.Calls != int64(calls) || (armed && st.Armed != int64(calls)) {
		b.Fatalf("Stats() = %+v, want %d calls", st, calls)
	}
	runtime.KeepAlive(e)
	stop()
	return float64(after-before) / float64(calls)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
