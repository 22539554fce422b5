package clock

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// model is the trivially correct reference the Wheel is checked against: a map of
// deadlines; Advance fires the least due (at, id), one at a time, until none is due.
type model struct {
	now int64
	dl  map[uint32]int64
}

func newModel(now int64) *model { return &model{now: now, dl: map[uint32]int64{}} }

func (m *model) Set(id uint32, at int64) { m.dl[id] = at }

func (m *model) Cancel(id uint32) bool {
	_, ok := m.dl[id]
	delete(m.dl, id)
	return ok
}

func (m *model) Deadline(id uint32) (int64, bool) {
	at, ok := m.dl[id]
	return at, ok
}

func (m *model) Len() int   { return len(m.dl) }
func (m *model) Now() int64 { return m.now }

func (m *model) earliest() (entry, bool) {
	var best entry
	ok := false
	for id, at := range m.dl {
		if e := (entry{at, id}); !ok || cmpEntry(e, best) < 0 {
			best, ok = e, true
		}
	}
	return best, ok
}

func (m *model) Advance(now int64, fire func(id uint32, at int64)) {
	if now < m.now {
		now = m.now
	} else {
		m.now = now
	}
	for {
		e, ok := m.earliest()
		if !ok || e.at > now {
			return
		}
		delete(m.dl, e.id)
		fire(e.id, e.at)
	}
}

// deadlines is what the Wheel and the model have in common.
type deadlines interface {
	Set(id uint32, at int64)
	Cancel(id uint32) bool
	Deadline(id uint32) (int64, bool)
	Len() int
	Now() int64
	Advance(now int64, fire func(id uint32, at int64))
}

var (
	_ deadlines = (*Wheel)(nil)
	_ deadlines = (*model)(nil)
)

type fired struct {
	id uint32
	at int64
}

type actKind uint8

const (
	actNone   actKind = iota
	actRearm          // Set the fired id again, at its deadline + at (may be <= now)
	actCancel         // Cancel id (maybe due and not yet fired)
	actSet            // Set id at at
)

// action is what fire does on one call. A script of actions is consumed in fire order,
// so the wheel and the model do the same things as long as they fire the same sequence,
// and a finite script bounds re-arming loops.
type action struct {
	kind actKind
	id   uint32
	at   int64
}

// harness applies each operation to a Wheel and a model and compares everything
// observable after it.
type harness struct {
	tb  testing.TB
	w   *Wheel
	m   *model
	tag string   // how to reproduce: a seed
	ops []string // recent operations, printed on failure
}

func newHarness(tb testing.TB, now int64, tag string) *harness {
	return &harness{tb: tb, w: NewWheel(now), m: newModel(now), tag: tag}
}

func (h *harness) logf(format string, args ...any) {
	if len(h.ops) >= 40 {
		h.ops = slices.Delete(h.ops, 0, 20)
	}
	h.ops = append(h.ops, fmt.Sprintf(format, args...))
}

func (h *harness) fatalf(format string, args ...any) {
	h.tb.Helper()
	h.tb.Fatalf("%s: %s\nlast operations:\n  %s", h.tag, fmt.Sprintf(format, args...),
		strings.Join(h.ops, "\n  "))
}

func (h *harness) set(id uint32, at int64) {
	h.tb.Helper()
	h.logf("Set(%d, %d)", id, at)
	h.w.Set(id, at)
	h.m.Set(id, at)
	h.check()
}

func (h *harness) cancel(id uint32) {
	h.tb.Helper()
	h.logf("Cancel(%d)", id)
	if got, want := h.w.Cancel(id), h.m.Cancel(id); got != want {
		h.fatalf("Cancel(%d) = %v, want %v", id, got, want)
	}
	h.check()
}

// advance runs Advance(now) on both with the same fire script.
func (h *harness) advance(now int64, script []action) []fired {
	h.tb.Helper()
	h.logf("Advance(%d) script %v", now, script)
	got, want := run(h.w, now, script), run(h.m, now, script)
	if !slices.Equal(got, want) {
		h.fatalf("Advance(%d) fired\n  %v\nwant\n  %v", now, got, want)
	}
	h.check()
	return got
}

// wake does what a timer set to Next does: Advance to Next, and checks that, unless
// something was already due, everything it fires fires at exactly that time. It returns
// false when nothing is armed.
func (h *harness) wake() bool {
	h.tb.Helper()
	next, ok := h.w.Next()
	if !ok {
		return false
	}
	before := h.w.Now()
	for _, f := range h.advance(next, nil) {
		if next > before && f.at != next {
			h.fatalf("woken at Next %d, fired %v", next, f)
		}
	}
	return true
}

func run(d deadlines, now int64, script []action) []fired {
	var out []fired
	i := 0
	d.Advance(now, func(id uint32, at int64) {
		out = append(out, fired{id, at})
		if i >= len(script) {
			return
		}
		a := script[i]
		i++
		switch a.kind {
		case actRearm:
			d.Set(id, addSat(at, a.at))
		case actCancel:
			d.Cancel(a.id)
		case actSet:
			d.Set(a.id, a.at)
		}
	})
	return out
}

// check compares the state and checks the contract of Next.
func (h *harness) check() {
	h.tb.Helper()
	w, m := h.w, h.m
	if w.Len() != m.Len() {
		h.fatalf("Len = %d, want %d", w.Len(), m.Len())
	}
	if w.Now() != m.Now() {
		h.fatalf("Now = %d, want %d", w.Now(), m.Now())
	}
	// Equal lengths and every model id present: the wheel has no extra id.
	for id, want := range m.dl {
		if got, ok := w.Deadline(id); !ok || got != want {
			h.fatalf("Deadline(%d) = %d, %v, want %d", id, got, ok, want)
		}
	}
	e, ok := m.earliest()
	next, nok := w.Next()
	switch {
	case ok != nok:
		h.fatalf("Next ok = %v, want %v", nok, ok)
	case !ok:
	case next > e.at:
		h.fatalf("Next = %d, after the earliest deadline %d", next, e.at)
	case subSat(e.at, w.Now()) < int64(256*time.Millisecond) && next != e.at:
		h.fatalf("Next = %d, want the earliest deadline %d (Now %d)", next, e.at, w.Now())
	case e.at > w.Now() && next <= w.Now():
		h.fatalf("Next = %d, not after Now %d though nothing is due", next, w.Now())
	}
	// NextAfter, from the times where its answer changes: each deadline and just before
	// it, and around Now.
	ts := []int64{w.Now() - 1, w.Now(), w.Now() + 1}
	for _, at := range m.dl {
		ts = append(ts, at-1, at)
	}
	for _, t := range ts {
		h.checkNextAfter(t)
	}
}

// checkNextAfter checks that NextAfter(t) is the earliest deadline after t, and that it
// knows it whenever that deadline is less than 256 ms after Now.
func (h *harness) checkNextAfter(t int64) {
	h.tb.Helper()
	want, wok := int64(0), false
	for _, at := range h.m.dl {
		if at > t && (!wok || at < want) {
			want, wok = at, true
		}
	}
	got, ok := h.w.NextAfter(t)
	switch {
	case ok && (!wok || got != want):
		h.fatalf("NextAfter(%d) = %d, want %d, %v (Now %d)", t, got, want, wok, h.w.Now())
	case !ok && wok && subSat(want, h.w.Now()) < int64(256*time.Millisecond):
		h.fatalf("NextAfter(%d) found nothing, want %d (Now %d)", t, want, h.w.Now())
	}
}

func addSat(a, b int64) int64 {
	s := a + b
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		if a >= 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// Units at which the wheel changes level, in ns: a tick, a block and the spans of
// levels 1, 2 and 3.
var units = []int64{tickNs, tickNs << 8, tickNs << 14, tickNs << 20, tickNs << 26}

// gen makes random operations at every scale the wheel distinguishes.
type gen struct{ r *rand.Rand }

func (g gen) n(n int64) int64 { return g.r.Int64N(n) }

// start picks a wheel start time: realistic, aligned to a level boundary or just
// before one, negative, or near the ends of int64.
func (g gen) start() int64 {
	realistic := int64(1_700_000_000_000_000_000) + g.n(1e17)
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return realistic
	case 2:
		u := units[g.r.IntN(len(units))]
		return realistic/u*u - g.n(2*int64(time.Second))
	case 3:
		return -g.n(1e18)
	case 4:
		return math.MaxInt64 - g.n(int64(30*24*time.Hour))
	default:
		return math.MinInt64 / 2
	}
}

// at picks a deadline relative to now.
func (g gen) at(now int64) int64 {
	switch g.r.IntN(10) {
	case 0:
		return addSat(now, g.n(2*tickNs))
	case 1, 2:
		return addSat(now, g.n(int64(300*time.Millisecond)))
	case 3, 4:
		return addSat(now, g.n(int64(20*time.Second)))
	case 5:
		return addSat(now, g.n(int64(3*time.Hour)))
	case 6:
		return addSat(now, g.n(int64(60*24*time.Hour)))
	case 7:
		return addSat(now, -g.n(int64(time.Second)))
	case 8:
		// On a level boundary, or a nanosecond either side of it.
		u := units[g.r.IntN(len(units))]
		b := addSat(now, g.n(4*u))
		b = b / u * u
		return addSat(b, g.n(3)-1)
	default:
		return []int64{math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, 0, now}[g.r.IntN(5)]
	}
}

// advance picks an Advance target, sometimes backwards or exactly on a deadline.
func (g gen) advance(h *harness) int64 {
	now := h.w.Now()
	switch g.r.IntN(8) {
	case 0:
		return addSat(now, g.n(2*tickNs))
	case 1, 2:
		return addSat(now, g.n(int64(time.Second)))
	case 3:
		return addSat(now, g.n(int64(time.Hour)))
	case 4:
		return addSat(now, g.n(int64(40*24*time.Hour)))
	case 5:
		return addSat(now, -g.n(int64(time.Second)))
	case 6:
		if e, ok := h.m.earliest(); ok {
			return addSat(e.at, g.n(3)-1)
		}
		return now
	default:
		if g.r.IntN(20) == 0 {
			return math.MaxInt64
		}
		return addSat(now, g.n(int64(300*time.Millisecond)))
	}
}

func (g gen) script(now int64, ids uint32) []action {
	s := make([]action, g.r.IntN(6))
	for i := range s {
		switch g.r.IntN(4) {
		case 0:
			s[i] = action{kind: actRearm, at: g.n(int64(2*time.Second)) - int64(time.Second)}
		case 1:
			s[i] = action{kind: actCancel, id: g.r.Uint32N(ids)}
		case 2:
			s[i] = action{kind: actSet, id: g.r.Uint32N(ids), at: g.at(now)}
		}
	}
	return s
}

// runRandom drives one random sequence of operations through a harness.
func runRandom(tb testing.TB, seed uint64, nops int) {
	g := gen{rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	tag := fmt.Sprintf("seed %d (rerun: go test -run TestWheelMatchesModel ./clock -seed %d)", seed, seed)
	h := newHarness(tb, g.start(), tag)
	ids := []uint32{3, 16, 64, 1000}[g.r.IntN(4)]
	for range nops {
		switch k := g.r.IntN(100); {
		case k < 40:
			h.set(g.r.Uint32N(ids), g.at(h.w.Now()))
		case k < 50:
			// Move an armed id by a few seconds, as a new user turn does.
			id := g.r.Uint32N(ids)
			if at, ok := h.m.Deadline(id); ok {
				h.set(id, addSat(at, g.n(int64(10*time.Second))-int64(5*time.Second)))
			}
		case k < 60:
			h.cancel(g.r.Uint32N(ids))
		case k < 85:
			h.advance(g.advance(h), g.script(h.w.Now(), ids))
		default:
			for range g.r.IntN(8) {
				if !h.wake() {
					break
				}
			}
		}
	}
	// Drain as a timer would, with a bound: every deadline takes at most one wake per
	// level before it fires.
	for i := 0; h.wake(); i++ {
		if i > 10*(int(ids)+1) {
			h.fatalf("%d wakes and still %d armed", i, h.w.Len())
		}
	}
}

var seedFlag = flag.Uint64("seed", 0, "run TestWheelMatchesModel for this one seed")

// TestWheelMatchesModel runs thousands of random sequences against the model. The seeds
// are fixed so that the test is deterministic; a failure names its seed.
func TestWheelMatchesModel(t *testing.T) {
	if *seedFlag != 0 {
		runRandom(t, *seedFlag, 400)
		return
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		runRandom(t, seed, 200)
	}
}

// FuzzWheel drives the same comparison from fuzz bytes: each operation takes a kind
// byte, an id byte and eight bytes of time, read as an offset at a scale the kind
// chooses.
func FuzzWheel(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x00\x00\x00\x00\x00\x00\x10\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add(binary.LittleEndian.AppendUint64([]byte{0x40, 7}, math.MaxUint64))
	for seed := range uint64(8) {
		b := make([]byte, 200)
		r := rand.New(rand.NewPCG(seed, seed))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := int64(1_700_000_000_000_000_000)
		if len(data) > 0 && data[0]&0x80 != 0 {
			start = math.MaxInt64 - int64(48*time.Hour)
		}
		h := newHarness(t, start, "fuzz")
		for len(data) >= 10 {
			kind, id := data[0], uint32(data[1]%32)
			v := int64(binary.LittleEndian.Uint64(data[2:10]))
			data = data[10:]
			at := fuzzTime(h.w.Now(), kind>>4, v)
			switch kind & 0x0f % 6 {
			case 0, 1:
				h.set(id, at)
			case 2:
				h.cancel(id)
			case 3:
				h.advance(at, []action{{kind: actRearm, at: v % int64(time.Second)}, {kind: actCancel, id: id}})
			case 4:
				h.advance(at, []action{{kind: actSet, id: id, at: fuzzTime(h.w.Now(), kind>>4, v>>8)}})
			case 5:
				for range id % 8 {
					if !h.wake() {
						break
					}
				}
			}
		}
		for i := 0; h.wake(); i++ {
			if i > 400 {
				h.fatalf("%d wakes and still %d armed", i, h.w.Len())
			}
		}
	})
}

// fuzzTime maps fuzz bytes to a time relative to now at one of 16 scales.
func fuzzTime(now int64, scale byte, v int64) int64 {
	if scale == 15 {
		return v // anything, including far past and MaxInt64
	}
	u := units[int(scale)%len(units)]
	if scale >= 10 {
		u = 1 // nanoseconds
	}
	return addSat(now, v%(64*u))
}
