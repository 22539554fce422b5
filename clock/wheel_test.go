package clock

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

const (
	ns  = int64(time.Nanosecond)
	ms  = int64(time.Millisecond)
	sec = int64(time.Second)
	hr  = int64(time.Hour)
	day = 24 * hr
)

// origin is a realistic Unix time aligned to 2^26 ms, the span of level 3, so that
// offsets from it fall on the wheel's level boundaries.
var origin = (int64(1_700_000_000_000) >> topBits << topBits) * tickNs

type opKind uint8

const (
	opSet opKind = iota
	opCancel
	opAdvance
)

type op struct {
	kind opKind
	id   uint32
	at   int64
}

func set(id uint32, at int64) op { return op{kind: opSet, id: id, at: at} }
func cancel(id uint32) op        { return op{kind: opCancel, id: id} }
func advance(now int64) op       { return op{kind: opAdvance, at: now} }

// fire is one call of fire: which operation of give (an Advance) made it.
type fire struct {
	op int
	id uint32
	at int64
}

func (f fire) String() string {
	return fmt.Sprintf("{op %d: id %d at origin%+dns}", f.op, f.id, f.at-origin)
}

// play applies ops to w and records what fires, calling onFire (if any) from fire.
func play(w *Wheel, give []op, onFire func(w *Wheel, id uint32, at int64)) []fire {
	var got []fire
	for i, o := range give {
		switch o.kind {
		case opSet:
			w.Set(o.id, o.at)
		case opCancel:
			w.Cancel(o.id)
		case opAdvance:
			w.Advance(o.at, func(id uint32, at int64) {
				got = append(got, fire{i, id, at})
				if onFire != nil {
					onFire(w, id, at)
				}
			})
		}
	}
	return got
}

func TestWheelAdvance(t *testing.T) {
	o := origin
	tests := []struct {
		name   string
		start  int64 // origin if 0
		give   []op
		onFire func(w *Wheel, id uint32, at int64)
		want   []fire
	}{
		{
			name: "empty wheel",
			give: []op{advance(o + hr), advance(o + 40*day)},
		},
		{
			name: "fires at the nanosecond, not at the slot",
			give: []op{set(1, o+5*ms+123), advance(o + 5*ms + 122), advance(o + 5*ms + 123)},
			want: []fire{{2, 1, o + 5*ms + 123}},
		},
		{
			name: "same millisecond in (deadline, id) order",
			give: []op{
				set(3, o+7*ms+500), set(1, o+7*ms+900), set(2, o+7*ms+500), set(4, o+7*ms+1),
				advance(o + 8*ms),
			},
			want: []fire{{4, 4, o + 7*ms + 1}, {4, 2, o + 7*ms + 500}, {4, 3, o + 7*ms + 500}, {4, 1, o + 7*ms + 900}},
		},
		{
			name: "same deadline at level 3 in id order",
			give: []op{set(9, o+3*hr), set(3, o+3*hr), set(7, o+3*hr), advance(o + 3*hr)},
			want: []fire{{3, 3, o + 3*hr}, {3, 7, o + 3*hr}, {3, 9, o + 3*hr}},
		},
		{
			name: "one jump over every level in order",
			give: []op{
				set(6, o+25*hr), set(5, o+2*hr), set(4, o+20*60*sec), set(3, o+20*sec),
				set(2, o+300*ms), set(1, o+ms), advance(o + 26*hr),
			},
			want: []fire{
				{6, 1, o + ms}, {6, 2, o + 300*ms}, {6, 3, o + 20*sec},
				{6, 4, o + 20*60*sec}, {6, 5, o + 2*hr}, {6, 6, o + 25*hr},
			},
		},
		{
			name: "later deadline of the same millisecond waits",
			give: []op{set(1, o+3*ms+10), set(2, o+3*ms+20), advance(o + 3*ms + 15), advance(o + 3*ms + 20)},
			want: []fire{{2, 1, o + 3*ms + 10}, {3, 2, o + 3*ms + 20}},
		},
		{
			name: "set in the past is due at the next Advance",
			give: []op{advance(o + 10*ms), set(1, o), set(2, 0), set(3, math.MinInt64), advance(o + 10*ms)},
			want: []fire{{4, 3, math.MinInt64}, {4, 2, 0}, {4, 1, o}},
		},
		{
			name: "backwards Advance fires only what is due",
			give: []op{advance(o + sec), set(1, o+2*sec), set(2, o+500*ms), advance(o)},
			want: []fire{{3, 2, o + 500*ms}},
		},
		{
			name: "move earlier",
			give: []op{set(1, o+5*sec), set(1, o+sec), advance(o + sec), advance(o + 10*sec)},
			want: []fire{{2, 1, o + sec}},
		},
		{
			name: "move later",
			give: []op{set(1, o+sec), set(1, o+5*sec), advance(o + sec), advance(o + 5*sec)},
			want: []fire{{3, 1, o + 5*sec}},
		},
		{
			name: "cancel",
			give: []op{set(1, o+sec), set(2, o+sec), cancel(1), advance(o + 2*sec)},
			want: []fire{{3, 2, o + sec}},
		},
		{
			name: "cancel and set again fires once",
			give: []op{set(1, o+sec), cancel(1), set(1, o+sec), advance(o + 2*sec)},
			want: []fire{{3, 1, o + sec}},
		},
		{
			name: "re-arm inside fire fires again in the same Advance",
			give: []op{set(1, o+10*ms), advance(o + 100*ms)},
			onFire: func(w *Wheel, id uint32, at int64) {
				if at < o+20*ms {
					w.Set(id, at+5*ms)
				}
			},
			want: []fire{{1, 1, o + 10*ms}, {1, 1, o + 15*ms}, {1, 1, o + 20*ms}},
		},
		{
			name: "re-arm inside fire later than now waits",
			give: []op{set(1, o+10*ms), advance(o + 10*ms), advance(o + 10*sec)},
			onFire: func(w *Wheel, id uint32, at int64) {
				if at == o+10*ms {
					w.Set(id, at+5*sec)
				}
			},
			want: []fire{{1, 1, o + 10*ms}, {2, 1, o + 5*sec + 10*ms}},
		},
		{
			name: "set inside fire before the rest of the slot fires first",
			give: []op{set(1, o+10*ms+100), set(2, o+10*ms+200), advance(o + 11*ms)},
			onFire: func(w *Wheel, id uint32, at int64) {
				if id == 1 {
					w.Set(3, o+10*ms+150)
					w.Set(4, o) // already past: the least due deadline
				}
			},
			want: []fire{{2, 1, o + 10*ms + 100}, {2, 4, o}, {2, 3, o + 10*ms + 150}, {2, 2, o + 10*ms + 200}},
		},
		{
			name: "cancel inside fire of a due deadline not yet fired",
			give: []op{set(1, o+5*ms), set(2, o+6*ms), set(3, o+5*ms), advance(o + 10*ms)},
			onFire: func(w *Wheel, id uint32, at int64) {
				if id == 1 {
					w.Cancel(3) // same slot
					w.Cancel(2) // a later slot
				}
			},
			want: []fire{{3, 1, o + 5*ms}},
		},
		{
			name: "move inside fire of a due deadline not yet fired",
			give: []op{set(1, o+5*ms), set(2, o+5*ms), advance(o + 10*ms), advance(o + hr)},
			onFire: func(w *Wheel, id uint32, at int64) {
				if id == 1 {
					w.Set(2, o+hr)
				}
			},
			want: []fire{{2, 1, o + 5*ms}, {3, 2, o + hr}},
		},
		{
			name: "deadlines at the end of time",
			give: []op{set(1, math.MaxInt64), set(2, math.MaxInt64-1), advance(math.MaxInt64 - 2), advance(math.MaxInt64)},
			want: []fire{{3, 2, math.MaxInt64 - 1}, {3, 1, math.MaxInt64}},
		},
		{
			name:  "start near the end of time",
			start: math.MaxInt64 - sec,
			give:  []op{set(1, math.MaxInt64), set(2, math.MaxInt64-3*ms), advance(math.MaxInt64)},
			want:  []fire{{2, 2, math.MaxInt64 - 3*ms}, {2, 1, math.MaxInt64}},
		},
		{
			name:  "before 1970",
			start: -sec - 7,
			give:  []op{set(1, -999*ms+7), set(2, -ms), set(3, 5), advance(-ms), advance(10)},
			want:  []fire{{3, 1, -999*ms + 7}, {3, 2, -ms}, {4, 3, 5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := tt.start
			if start == 0 {
				start = origin
			}
			w := NewWheel(start)
			got := play(w, tt.give, tt.onFire)
			if !slices.Equal(got, tt.want) {
				t.Errorf("fired\n  %v\nwant\n  %v", got, tt.want)
			}
		})
	}
}

func TestWheelNext(t *testing.T) {
	o := origin
	tests := []struct {
		name   string
		start  int64 // origin if 0
		give   []op
		want   int64
		wantOK bool
	}{
		{name: "empty"},
		{name: "all cancelled", give: []op{set(1, o+sec), cancel(1)}},
		{name: "exact nanosecond", give: []op{set(1, o+5*ms+7)}, want: o + 5*ms + 7, wantOK: true},
		{name: "earliest of several", give: []op{set(1, o+9*ms), set(2, o+5*ms+7), set(3, o+hr)}, want: o + 5*ms + 7, wantOK: true},
		{name: "exact just under 256 ms", give: []op{set(1, o+256*ms-1)}, want: o + 256*ms - 1, wantOK: true},
		{
			name:   "exact across a block boundary",
			start:  o + 255*ms + 999_999,
			give:   []op{set(1, o+256*ms+255*ms)},
			want:   o + 511*ms,
			wantOK: true,
		},
		{
			// 10 s is level 1, slot 39 (ticks 9984..10239): handed down when the
			// lookahead reaches tick 9984, i.e. at tick 9728.
			name:   "cascade point for a far deadline",
			give:   []op{set(1, o+10*sec)},
			want:   o + 9728*ms,
			wantOK: true,
		},
		{
			name:   "cascade point of the overflow list",
			give:   []op{set(1, o+400*day)},
			want:   o + (400*day/tickNs>>topBits<<topBits)*tickNs - 256*ms,
			wantOK: true,
		},
		{name: "past deadline is returned as is", give: []op{set(1, o-sec)}, want: o - sec, wantOK: true},
		{name: "after cancelling the earliest", give: []op{set(1, o+ms), set(2, o+2*ms), cancel(1)}, want: o + 2*ms, wantOK: true},
		{
			name:   "after an Advance that fired some",
			give:   []op{set(1, o+ms), set(2, o+ms+5), set(3, o+300*ms), advance(o + ms + 1)},
			want:   o + ms + 5,
			wantOK: true,
		},
		{
			name:   "end of time",
			start:  math.MaxInt64 - 100*ms,
			give:   []op{set(1, math.MaxInt64)},
			want:   math.MaxInt64,
			wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := tt.start
			if start == 0 {
				start = origin
			}
			w := NewWheel(start)
			play(w, tt.give, nil)
			got, ok := w.Next()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Next() = origin%+d, %v, want origin%+d, %v", got-origin, ok, tt.want-origin, tt.wantOK)
			}
		})
	}
}

// TestWheelBoundaries starts the wheel at and around every level boundary (and the
// points 256 ms before them, where the lookahead crosses them) with deadlines a
// nanosecond either side, and drives it as a timer would: each deadline must fire when
// the wheel is woken at Next, at exactly its time, with at most one wake per level.
func TestWheelBoundaries(t *testing.T) {
	type row struct {
		name  string
		start int64
		give  []int64 // deadlines
	}
	var tests []row
	for _, u := range units {
		for _, k := range []int64{1, 2} {
			b := origin + k*u
			starts := []int64{origin, b - 257*ms, b - 256*ms - 1, b - 256*ms, b - 255*ms, b - ms, b - 1}
			starts = slices.DeleteFunc(starts, func(s int64) bool { return s < origin })
			slices.Sort(starts)
			for _, start := range slices.Compact(starts) {
				tests = append(tests, row{
					name:  fmt.Sprintf("boundary=%dms/start=boundary%+dns", k*u/ms, start-b),
					start: start,
					give:  []int64{b - 1, b, b + 1, b + u - 1, b + u + 256*ms, b - 256*ms},
				})
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One id per deadline, and the same again in one jump.
			h := newHarness(t, tt.start, tt.name)
			for i, at := range tt.give {
				h.set(uint32(i), at)
			}
			wakes := 0
			for h.wake() {
				wakes++
			}
			if max := (levels + 2) * len(tt.give); wakes > max {
				t.Errorf("%d wakes, want at most %d", wakes, max)
			}

			h = newHarness(t, tt.start, tt.name+"/jump")
			for i, at := range tt.give {
				h.set(uint32(i), at)
			}
			h.advance(tt.start+3*units[len(units)-1], nil)
		})
	}
}

// TestWheelHorizon checks deadlines beyond the reach of level 3 (18.6 h): they wait in
// the overflow list and still fire at their exact time, after a handful of wakes.
func TestWheelHorizon(t *testing.T) {
	o := origin
	top := o + (1<<topBits)*tickNs // the end of level 3's reach from o
	tests := []struct {
		name  string
		start int64
		give  []int64
	}{
		{name: "just past the top level", start: o, give: []int64{top - 1, top, top + tickNs + 7}},
		{
			name:  "days and years",
			start: o + 123*ms,
			give:  []int64{o + 19*hr, o + 30*day + 7, o + 400*day, o + 3*365*day + 1},
		},
		{name: "end of time", start: o, give: []int64{math.MaxInt64, math.MaxInt64 - 1, o + 2*hr}},
		{name: "call TTL just before a top boundary", start: top - 5*ms, give: []int64{top - 5*ms + 2*hr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.start, tt.name)
			for i, at := range tt.give {
				h.set(uint32(i), at)
			}
			wakes := 0
			for h.wake() {
				wakes++
			}
			// Per deadline: the overflow list, levels 3, 2 and 1, then the deadline.
			if max := (levels + 2) * len(tt.give); wakes > max {
				t.Errorf("%d wakes, want at most %d", wakes, max)
			}
		})
	}
}

func TestWheelDeadlineAndLen(t *testing.T) {
	w := NewWheel(origin)
	if _, ok := w.Deadline(5); ok {
		t.Error("Deadline(5) of an empty wheel: ok")
	}
	w.Set(5, origin+sec)
	w.Set(1_000_000, origin+2*sec) // grows the node slice
	w.Set(5, origin+3*sec)
	if at, ok := w.Deadline(5); !ok || at != origin+3*sec {
		t.Errorf("Deadline(5) = %d, %v", at, ok)
	}
	if w.Len() != 2 {
		t.Errorf("Len() = %d, want 2", w.Len())
	}
	if !w.Cancel(1_000_000) || w.Cancel(1_000_000) || w.Cancel(7) || w.Cancel(1<<30) {
		t.Error("Cancel: want true once, then false")
	}
	if w.Len() != 1 {
		t.Errorf("Len() = %d, want 1", w.Len())
	}
	if w.Now() != origin {
		t.Errorf("Now() = %d, want %d", w.Now(), origin)
	}
}

func TestWheelSetPanicsAboveMaxID(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Set(MaxID+1) did not panic")
		}
	}()
	NewWheel(0).Set(MaxID+1, 0)
}

func TestWheelAdvanceInsideFirePanics(t *testing.T) {
	w := NewWheel(0)
	w.Set(1, 0)
	defer func() {
		if recover() == nil {
			t.Error("Advance from inside fire did not panic")
		}
	}()
	w.Advance(0, func(uint32, int64) { w.Advance(0, func(uint32, int64) {}) })
}

// TestWheelNoAllocs checks the steady state: arming, moving, cancelling, firing and
// asking Next allocate nothing once the slices have grown.
func TestWheelNoAllocs(t *testing.T) {
	w := NewWheelSize(origin, 1024)
	now := origin
	for id := range uint32(1000) {
		w.Set(id, now+int64(id)*10*ms)
	}
	fire := func(id uint32, at int64) { w.Set(id, at+10*sec) }
	step := func() {
		w.Set(1000, now+5*sec)
		w.Set(1000, now+7*sec)
		w.Cancel(1000)
		w.Set(1001, now-1)
		now += 3 * ms
		w.Advance(now, fire)
		w.Next()
	}
	for range 5000 { // grow the due buffer and wrap every level
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per step, want 0", n)
	}
}
