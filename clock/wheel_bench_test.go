package clock

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// The benchmarks compare the wheel, in the same run, with a container/heap that tracks
// each id's index (the usual exact alternative) and with one runtime timer per deadline
// (time.AfterFunc). Each holds live deadlines spread over 0–10 s; the runtime timers are
// put an hour further out so that none fires during the run.

var benchSizes = []int{1_000, 100_000, 1_000_000}

// benchTable is a table of random values, so that the measured loop spends no time in
// rand; its length is a power of two.
type benchTable []int64

func newBenchTable(seed uint64, n int, limit int64) benchTable {
	r := rand.New(rand.NewPCG(seed, seed))
	t := make(benchTable, n)
	for i := range t {
		t[i] = r.Int64N(limit)
	}
	return t
}

func (t benchTable) at(i int) int64 { return t[i&(len(t)-1)] }

// opIDs returns the ids a benchmark works on, in order or shuffled, offset by base.
func opIDs(pattern string, n int, base uint32) []uint32 {
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = base + uint32(i)
	}
	if pattern == "rand" {
		r := rand.New(rand.NewPCG(7, 7))
		r.Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	return ids
}

// heapPerLive returns the live heap per deadline that build allocates. Report it after
// the loop: b.Loop drops metrics reported before it.
func heapPerLive(n int, build func()) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// benchCases runs f for each size and id pattern.
func benchCases(b *testing.B, f func(b *testing.B, n int, pattern string)) {
	for _, n := range benchSizes {
		for _, pattern := range []string{"seq", "rand"} {
			b.Run(fmt.Sprintf("live=%d/ids=%s", n, pattern), func(b *testing.B) { f(b, n, pattern) })
		}
	}
}

// liveWheel returns a wheel with deadlines on ids 0..n-1 spread over 0–10 s, with room
// for ids below room, and the heap it takes per live deadline.
func liveWheel(n, room int) (*Wheel, float64) {
	var w *Wheel
	heapB := heapPerLive(n, func() {
		offsets := newBenchTable(1, 1<<20, 10*sec)
		w = NewWheelSize(origin, room)
		for id := range n {
			w.Set(uint32(id), origin+offsets.at(id))
		}
	})
	return w, heapB
}

// BenchmarkWheelArmCancel arms an id that is not armed and cancels it, per op.
func BenchmarkWheelArmCancel(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		w, _ := liveWheel(n, 2*n)
		ids := opIDs(pattern, n, uint32(n))
		ats := newBenchTable(2, 1<<12, 10*sec)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i%n]
			w.Set(id, origin+ats.at(i))
			w.Cancel(id)
			i++
		}
	})
}

// BenchmarkWheelMove moves an armed deadline 3 s later or earlier, per op.
func BenchmarkWheelMove(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		w, heapB := liveWheel(n, n)
		ids := opIDs(pattern, n, 0)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i%n]
			at, _ := w.Deadline(id)
			w.Set(id, at+moveBy(at-origin))
			i++
		}
		b.ReportMetric(heapB, "heapB/live")
	})
}

// moveBy keeps moved deadlines within 0–13 s: 3 s later in the first half, earlier in
// the second.
func moveBy(offset int64) int64 {
	if offset < 5*sec {
		return 3 * sec
	}
	return -3 * sec
}

// BenchmarkWheelAdvance advances the wheel 1 ms per op, firing what is due and arming
// each fired id again 10 s later, so the live count stays steady; ns/fire is the cost
// per deadline fired, re-arm included.
func BenchmarkWheelAdvance(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			w, heapB := liveWheel(n, n)
			fires := 0
			fire := func(id uint32, at int64) {
				fires++
				w.Set(id, at+10*sec)
			}
			now := origin
			b.ReportAllocs()
			for b.Loop() {
				now += ms
				w.Advance(now, fire)
			}
			b.ReportMetric(heapB, "heapB/live")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(fires, 1)), "ns/fire")
		})
	}
}

// BenchmarkSchedulerRearmNoop is the cost of Rearm in a shard loop iteration that
// changed nothing the timer depends on: Next and a comparison.
func BenchmarkSchedulerRearmNoop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			s := NewSchedulerOn(NewMono(Real()), n)
			now := s.Now()
			offsets := newBenchTable(1, 1<<20, 10*sec)
			for id := range n {
				s.Set(uint32(id), now+sec+offsets.at(id))
			}
			s.Rearm()
			defer s.Stop()
			b.ReportAllocs()
			for b.Loop() {
				s.Rearm()
			}
		})
	}
}

// heapItem is one deadline of the container/heap comparison.
type heapItem struct {
	at    int64
	id    uint32
	index int // in the heap, -1 if not armed
}

type deadlineHeap []*heapItem

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].id < h[j].id
}

func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *deadlineHeap) Push(x any) {
	it := x.(*heapItem) // a pointer: no allocation to box it
	it.index = len(*h)
	*h = append(*h, it)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}

// heapTimers is the heap comparison with the Wheel's operations: arm is Push, move is
// Fix, cancel is Remove.
type heapTimers struct {
	h     deadlineHeap
	items []heapItem
}

func newHeapTimers(n int) *heapTimers {
	t := &heapTimers{h: make(deadlineHeap, 0, n), items: make([]heapItem, n)}
	for i := range t.items {
		t.items[i] = heapItem{id: uint32(i), index: -1}
	}
	return t
}

func (t *heapTimers) set(id uint32, at int64) {
	it := &t.items[id]
	it.at = at
	if it.index >= 0 {
		heap.Fix(&t.h, it.index)
		return
	}
	heap.Push(&t.h, it)
}

func (t *heapTimers) cancel(id uint32) {
	if it := &t.items[id]; it.index >= 0 {
		heap.Remove(&t.h, it.index)
	}
}

func (t *heapTimers) advance(now int64, fire func(id uint32, at int64)) {
	for len(t.h) > 0 && t.h[0].at <= now {
		it := heap.Pop(&t.h).(*heapItem)
		fire(it.id, it.at)
	}
}

func liveHeap(n, room int) (*heapTimers, float64) {
	var t *heapTimers
	heapB := heapPerLive(n, func() {
		offsets := newBenchTable(1, 1<<20, 10*sec)
		t = newHeapTimers(room)
		for id := range n {
			t.set(uint32(id), origin+offsets.at(id))
		}
	})
	return t, heapB
}

func BenchmarkHeapArmCancel(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		t, _ := liveHeap(n, 2*n)
		ids := opIDs(pattern, n, uint32(n))
		ats := newBenchTable(2, 1<<12, 10*sec)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i%n]
			t.set(id, origin+ats.at(i))
			t.cancel(id)
			i++
		}
	})
}

func BenchmarkHeapMove(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		t, heapB := liveHeap(n, n)
		ids := opIDs(pattern, n, 0)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i%n]
			at := t.items[id].at
			t.set(id, at+moveBy(at-origin))
			i++
		}
		b.ReportMetric(heapB, "heapB/live")
	})
}

func BenchmarkHeapAdvance(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			t, heapB := liveHeap(n, n)
			fires := 0
			fire := func(id uint32, at int64) {
				fires++
				t.set(id, at+10*sec)
			}
			now := origin
			b.ReportAllocs()
			for b.Loop() {
				now += ms
				t.advance(now, fire)
			}
			b.ReportMetric(heapB, "heapB/live")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(fires, 1)), "ns/fire")
		})
	}
}

// liveAfterFuncs starts n runtime timers an hour and 0–10 s out, stopped at cleanup.
func liveAfterFuncs(b *testing.B, n int) ([]*time.Timer, []time.Duration, float64) {
	timers := make([]*time.Timer, n)
	ds := make([]time.Duration, n)
	heapB := heapPerLive(n, func() {
		offsets := newBenchTable(1, 1<<20, 10*sec)
		for i := range timers {
			ds[i] = time.Hour + time.Duration(offsets.at(i))
			timers[i] = time.AfterFunc(ds[i], func() {})
		}
	})
	b.Cleanup(func() {
		for _, t := range timers {
			t.Stop()
		}
	})
	return timers, ds, heapB
}

func BenchmarkAfterFuncArmCancel(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		liveAfterFuncs(b, n)
		ats := newBenchTable(2, 1<<12, 10*sec)
		f := func() {}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			// The pattern does not apply: a new timer per arm is how AfterFunc is used.
			t := time.AfterFunc(time.Hour+time.Duration(ats.at(i)), f)
			t.Stop()
			i++
		}
	})
}

func BenchmarkAfterFuncMove(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, pattern string) {
		timers, ds, heapB := liveAfterFuncs(b, n)
		ids := opIDs(pattern, n, 0)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i%n]
			ds[id] += time.Duration(moveBy(int64(ds[id] - time.Hour)))
			timers[id].Reset(ds[id])
			i++
		}
		b.ReportMetric(heapB, "heapB/live")
	})
}
