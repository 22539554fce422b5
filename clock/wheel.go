package clock

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
)

// Layout of the wheel. Times are cut into ticks of 1 ms; a block is 256 ticks.
//
//   - Level 0 has 512 slots of one tick and holds every deadline before the end of the
//     block after the current one. Two blocks rather than one so that a deadline less
//     than 256 ms away is always in level 0, where Next can see its exact time.
//   - Levels 1, 2 and 3 have 64 slots each, 256 ticks (256 ms), 2^14 ticks (16.4 s) and
//     2^20 ticks (17.5 min) wide, so level 3 reaches 2^26 ticks (18.6 h) ahead.
//   - Beyond that, deadlines wait in one overflow list, re-placed when the lookahead
//     enters the 2^26-tick span of the earliest of them (so a jump of years over a
//     far deadline costs a few cascades, not one per 18.6 h).
//
// Levels 1 and up place a deadline by the highest bit in which its tick differs from the
// lookahead (the first tick of the next block), as in Tokio's timer wheel: a slot is
// handed down one level when the lookahead enters its range. So every occupied slot of a
// level lies after the lookahead's own slot, and the lowest set bit of a level's
// occupancy word is its next cascade.
const (
	tickNs = int64(1e6) // level-0 slot width: 1 ms

	blockBits = 8
	blockLen  = 1 << blockBits // ticks per level-1 slot

	l0Len  = 2 * blockLen // level-0 slots: the current block and the next one
	l0Mask = l0Len - 1

	levels    = 3 // levels above level 0
	levelBits = 6
	levelLen  = 1 << levelBits
	topBits   = blockBits + levels*levelBits // 26: the reach of level 3, in ticks

	// Slot numbers: level 0 is 0..511, level l (1..3) is l0Len+(l-1)*64.., the overflow
	// list is last. One occupancy bit per slot, so slot>>6 is its word in occ.
	overflowSlot = l0Len + levels*levelLen
	numSlots     = overflowSlot + 1

	// headFlag marks a prev link that names a slot head instead of a node.
	headFlag = 1 << 31
)

// MaxID is the largest id a Wheel accepts, 2^31-2: links store id+1 and keep the top
// bit (headFlag) to mark a slot head.
const MaxID = 1<<31 - 2

// node is the per-id record, 16 bytes. Links hold id+1 so that the zero node is "not
// armed" and a grown node slice needs no initialisation.
type node struct {
	at   int64  // the deadline, Unix ns
	next uint32 // id+1 of the next node in the slot list, 0 at the end
	prev uint32 // id+1 of the previous node, headFlag|slot for the first, 0 if not armed
}

// entry is one deadline of the sorted due view.
type entry struct {
	at int64
	id uint32
}

func cmpEntry(a, b entry) int {
	if c := cmp.Compare(a.at, b.at); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// Wheel is a hierarchical timing wheel of deadlines keyed by a small integer id, with
// 1 ms slots and times in int64 Unix nanoseconds. Set, Cancel and moves are O(1) and
// allocate nothing once the id slice has grown. Next is O(levels), plus sorting the
// earliest 1 ms slot the first time it looks at it; Advance fires from that sorted view
// and skips empty slots with occupancy bitmaps, so a jump of hours over few deadlines
// is cheap. Memory is 16 bytes per id below the largest id set.
//
// A Wheel is not safe for concurrent use. It reads no clock and starts no goroutine.
type Wheel struct {
	nodes []node                  // indexed by id
	heads [numSlots]uint32        // id+1 of each slot list's first node
	occ   [numSlots/64 + 1]uint64 // one bit per non-empty slot

	now   int64 // the time of the last Advance (or of NewWheel)
	cur   int64 // tickOf(now), except inside Advance: the tick being fired
	block int64 // cur >> blockBits
	count int   // armed deadlines

	// overMin is at most the earliest tick in the overflow list, while it is not empty.
	// It is not raised on Cancel: too early only costs a needless re-placement.
	overMin int64

	// due is the level-0 slot of tick dueTick sorted by (at, id), from duePos on, so that
	// Next and Advance do not sort a slot again for each call. It may hold stale entries
	// (cancelled or moved ids), skipped when met; a deadline linked into that slot is
	// inserted in order.
	due     []entry
	duePos  int
	dueTick int64
	dueOK   bool

	advancing bool // guards against Advance from inside fire
}

// NewWheel returns an empty wheel whose time is now.
func NewWheel(now int64) *Wheel { return NewWheelSize(now, 0) }

// NewWheelSize returns an empty wheel whose time is now, with room for ids below n, so
// that arming them never grows a slice.
func NewWheelSize(now int64, n int) *Wheel {
	w := &Wheel{}
	w.init(now, n)
	return w
}

func (w *Wheel) init(now int64, n int) {
	w.now = now
	w.cur = tickOf(now)
	w.block = w.cur >> blockBits
	if n > 0 {
		w.nodes = make([]node, min(n, MaxID+1))
	}
}

// tickOf returns the tick of t, rounding down also before 1970.
func tickOf(t int64) int64 {
	q := t / tickNs
	if t%tickNs < 0 {
		q--
	}
	return q
}

// Now returns the time the wheel has been advanced to.
func (w *Wheel) Now() int64 { return w.now }

// Len returns the number of armed deadlines.
func (w *Wheel) Len() int { return w.count }

// Deadline returns the deadline of id, and false if id is not armed.
func (w *Wheel) Deadline(id uint32) (at int64, ok bool) {
	if int(id) >= len(w.nodes) || w.nodes[id].prev == 0 {
		return 0, false
	}
	return w.nodes[id].at, true
}

// Set arms id to fire at at, or moves it there if it is armed. A deadline at or before
// Now is due at the next Advance. It panics if id > MaxID.
func (w *Wheel) Set(id uint32, at int64) {
	if id > MaxID {
		panic(fmt.Sprintf("clock: id %d above MaxID", id))
	}
	if int(id) >= len(w.nodes) {
		w.grow(id)
	}
	n := &w.nodes[id]
	if n.prev != 0 {
		if n.at == at {
			return
		}
		w.unlink(id)
	} else {
		w.count++
	}
	n.at = at
	w.place(id, at)
}

// Cancel disarms id. It returns false if id was not armed.
func (w *Wheel) Cancel(id uint32) bool {
	if int(id) >= len(w.nodes) || w.nodes[id].prev == 0 {
		return false
	}
	w.unlink(id)
	w.count--
	return true
}

// grow makes room for id. The capacity grows as append's does, so that dense ids grow
// in amortized O(1) with as little slack as the owner's own slice of them (a shard's
// calls): doubling would leave up to a node unused per id.
func (w *Wheel) grow(id uint32) {
	old := len(w.nodes)
	n := min(int(id)+1, MaxID+1)
	w.nodes = slices.Grow(w.nodes, n-old)[:n]
	clear(w.nodes[old:])
}

// Next returns when Advance must next be called: never later than the earliest
// deadline, and exactly that deadline when it is less than 256 ms after Now (or already
// due), so a timer set to Next fires at the deadline itself. Otherwise it is the point
// where a higher level must be handed down, strictly after Now. ok is false when no
// deadline is armed.
func (w *Wheel) Next() (at int64, ok bool) {
	at, _, ok = w.next()
	return at, ok
}

// next is Next, and whether at is a deadline (not a hand-down point).
func (w *Wheel) next() (at int64, deadline, ok bool) {
	if w.count == 0 {
		return 0, false, false
	}
	// Everything in level 0 is earlier than everything above it.
	if t, ok := w.firstLevel0Tick(); ok {
		w.loadDue(t)
		if e, ok := w.dueFront(); ok {
			return e.at, true, true
		}
	}
	c, _ := w.nextCascadeTick()
	return c * tickNs, false, true
}

// NextAfter returns the earliest deadline after t, when that deadline lies in level 0
// (less than 256 ms after Now), where its exact time is known. ok is false when no
// deadline after t is there, or t lies past level 0. It changes nothing: an owner that
// waits for evidence before firing what is due sets its timer with it to the first
// deadline that a pending request does not cover.
func (w *Wheel) NextAfter(t int64) (at int64, ok bool) {
	if w.count == 0 {
		return 0, false
	}
	for tk := max(tickOf(t), w.cur); ; tk++ {
		var occupied bool
		if tk, occupied = w.level0From(tk); !occupied {
			return 0, false
		}
		for r := w.heads[tk&l0Mask]; r != 0; r = w.nodes[r-1].next {
			if a := w.nodes[r-1].at; a > t && (!ok || a < at) {
				at, ok = a, true
			}
		}
		if ok {
			return at, true
		}
	}
}

// level0From returns the first tick at or after tk, up to the end of level 0, whose slot
// is occupied. The ticks of one occupancy word's slots are consecutive: the slot array
// wraps round at a word boundary.
func (w *Wheel) level0From(tk int64) (int64, bool) {
	last := (w.block+2)<<blockBits - 1
	for tk <= last {
		s := uint32(tk & l0Mask)
		if word := w.occ[s>>6] >> (s & 63); word != 0 {
			t := tk + int64(bits.TrailingZeros64(word))
			return t, t <= last
		}
		tk += int64(64 - s&63)
	}
	return 0, false
}

// Advance moves the wheel to now and calls fire for every deadline at or before now, in
// (deadline, id) order, each once, after disarming it. A now before Now only fires what
// is already due. fire may Set and Cancel any id: a deadline it sets at or before now
// fires in this same Advance, and an id it cancels does not fire. fire must not call
// Advance. Inside fire, Now already returns now.
func (w *Wheel) Advance(now int64, fire func(id uint32, at int64)) {
	if w.advancing {
		panic("clock: Advance called from inside fire")
	}
	w.advancing = true
	defer func() { w.advancing = false }()

	if now < w.now {
		now = w.now
	} else {
		w.now = now
	}
	end := tickOf(now)
	for {
		w.fireTick(now, fire)
		if w.cur >= end {
			return
		}
		// The current slot is empty now (all of it was <= now): jump to the next tick
		// that has something to fire or to hand down, or to the end.
		next := end
		if t, ok := w.firstLevel0Tick(); ok && t < next {
			next = t
		}
		if t, ok := w.nextCascadeTick(); ok && t < next {
			next = t
		}
		w.moveTo(next)
	}
}

// fireTick fires the deadlines <= now of the current tick's slot, in order. Deadlines
// that fire sets into this slot are inserted into the due view, so they fire here too.
func (w *Wheel) fireTick(now int64, fire func(id uint32, at int64)) {
	s := uint32(w.cur & l0Mask)
	for w.occ[s>>6]&(1<<(s&63)) != 0 {
		w.loadDue(w.cur)
		e, ok := w.dueFront()
		if !ok || e.at > now {
			return
		}
		w.duePos++
		w.unlink(e.id)
		w.count--
		fire(e.id, e.at)
	}
}

// moveTo makes t the current tick. Every slot between the old tick and t must be empty,
// which Advance ensures by stopping at each occupied tick and each non-empty cascade.
func (w *Wheel) moveTo(t int64) {
	w.cur = t
	b := t >> blockBits
	if b == w.block {
		return
	}
	w.block = b
	p := w.lookahead()
	// When p enters a slot's span at some level it enters a new span of every level
	// below, whose slot at p is empty (its deadlines went down before p left the
	// previous span) and receives nothing (a deadline in p's block goes to level 0),
	// so the order of these cascades does not matter.
	if p&(1<<topBits-1) == 0 {
		w.cascade(overflowSlot)
	}
	for l := levels - 1; l >= 0; l-- {
		shift := blockBits + l*levelBits
		if p&(1<<shift-1) == 0 {
			w.cascade(l0Len + uint32(l)*levelLen + uint32(p>>shift)&(levelLen-1))
		}
	}
}

// lookahead returns the first tick of the block after the current one: level 0 holds
// the ticks before lookahead+blockLen, the levels above hold the rest.
func (w *Wheel) lookahead() int64 { return (w.block + 1) << blockBits }

// cascade empties slot s and places its deadlines again, now lower down.
func (w *Wheel) cascade(s uint32) {
	r := w.heads[s]
	if r == 0 {
		return
	}
	w.heads[s] = 0
	w.occ[s>>6] &^= 1 << (s & 63)
	for r != 0 {
		id := r - 1
		r = w.nodes[id].next
		w.place(id, w.nodes[id].at)
	}
}

// place links id, whose deadline is at, into the slot that the current tick assigns it.
func (w *Wheel) place(id uint32, at int64) {
	t := tickOf(at)
	var s uint32
	switch {
	case t <= w.cur:
		// Due, or due later in the current tick: the slot that Advance looks at first.
		t = w.cur
		s = uint32(t & l0Mask)
	case t < w.lookahead()+blockLen:
		s = uint32(t & l0Mask)
	default:
		s = slotAbove(t, w.lookahead())
		if s == overflowSlot && (w.heads[s] == 0 || t < w.overMin) {
			w.overMin = t
		}
	}
	w.link(id, s)
	if w.dueOK && s < l0Len && t == w.dueTick {
		w.dueInsert(entry{at, id})
	}
}

// slotAbove returns the slot above level 0 for tick t >= p+blockLen, p the lookahead:
// the level of the highest bit where t and p differ (uint64, so that a sign change
// counts as a far difference), or the overflow list past level 3.
func slotAbove(t, p int64) uint32 {
	x := uint64(t ^ p)
	switch {
	case x < 1<<(blockBits+levelBits):
		return l0Len + uint32(t>>blockBits)&(levelLen-1)
	case x < 1<<(blockBits+2*levelBits):
		return l0Len + levelLen + uint32(t>>(blockBits+levelBits))&(levelLen-1)
	case x < 1<<topBits:
		return l0Len + 2*levelLen + uint32(t>>(blockBits+2*levelBits))&(levelLen-1)
	default:
		return overflowSlot
	}
}

// link pushes id onto the front of slot s.
func (w *Wheel) link(id, s uint32) {
	n := &w.nodes[id]
	first := w.heads[s]
	n.next = first
	n.prev = headFlag | s
	if first != 0 {
		w.nodes[first-1].prev = id + 1
	} else {
		w.occ[s>>6] |= 1 << (s & 63)
	}
	w.heads[s] = id + 1
}

// unlink takes id out of its slot list and marks it not armed.
func (w *Wheel) unlink(id uint32) {
	n := &w.nodes[id]
	if n.prev&headFlag != 0 {
		s := n.prev &^ headFlag
		w.heads[s] = n.next
		if n.next == 0 {
			w.occ[s>>6] &^= 1 << (s & 63)
		}
	} else {
		w.nodes[n.prev-1].next = n.next
	}
	if n.next != 0 {
		w.nodes[n.next-1].prev = n.prev
	}
	n.next, n.prev = 0, 0
}

// firstLevel0Tick returns the first tick at or after cur whose level-0 slot is occupied.
// Level 0 holds the ticks from cur to the end of the next block, 512-(cur%256) of them,
// at most 512-(cur%64): searching the 8 words circularly from cur's slot never wraps
// round into the bits of the first word below it.
func (w *Wheel) firstLevel0Tick() (int64, bool) {
	start := uint32(w.cur & l0Mask)
	first := start >> 6
	for i := range uint32(l0Len / 64) {
		wi := (first + i) % (l0Len / 64)
		word := w.occ[wi]
		if i == 0 {
			word &^= 1<<(start&63) - 1 // slots from start on
		}
		if word != 0 {
			s := wi<<6 | uint32(bits.TrailingZeros64(word))
			return w.cur + int64((s-start)&l0Mask), true
		}
	}
	return 0, false
}

// nextCascadeTick returns the tick at which Advance must next hand a non-empty slot
// down: the tick at which the lookahead reaches that slot's first tick.
func (w *Wheel) nextCascadeTick() (int64, bool) {
	p := w.lookahead()
	best, ok := int64(0), false
	for l := range levels {
		word := w.occ[l0Len/64+l]
		if word == 0 {
			continue
		}
		shift := blockBits + l*levelBits
		span := shift + levelBits
		s := p>>span<<span | int64(bits.TrailingZeros64(word))<<shift
		if !ok || s < best {
			best, ok = s, true
		}
	}
	if w.heads[overflowSlot] != 0 {
		// The overflow list only holds ticks in a later 2^26 span than p's, and overMin
		// was one of them or earlier, so its span starts after p.
		s := w.overMin >> topBits << topBits
		if !ok || s < best {
			best, ok = s, true
		}
	}
	return best - blockLen, ok
}

// loadDue makes due the sorted view of tick t's level-0 slot.
func (w *Wheel) loadDue(t int64) {
	if w.dueOK && w.dueTick == t {
		return
	}
	w.due, w.duePos = w.due[:0], 0
	for r := w.heads[t&l0Mask]; r != 0; r = w.nodes[r-1].next {
		w.due = append(w.due, entry{w.nodes[r-1].at, r - 1})
	}
	slices.SortFunc(w.due, cmpEntry)
	w.dueTick, w.dueOK = t, true
}

// dueFront returns the first entry of due that is still armed at its time, dropping
// stale ones. An id cancelled and set again to the same time in the same slot is
// valid again, which is right: its entry is in order and it has no other.
func (w *Wheel) dueFront() (entry, bool) {
	for w.duePos < len(w.due) {
		e := w.due[w.duePos]
		if n := &w.nodes[e.id]; n.prev != 0 && n.at == e.at {
			return e, true
		}
		w.duePos++
	}
	w.due, w.duePos = w.due[:0], 0
	return entry{}, false
}

// dueInsert adds e to due in order, once.
func (w *Wheel) dueInsert(e entry) {
	i, found := slices.BinarySearchFunc(w.due[w.duePos:], e, cmpEntry)
	switch {
	case found:
		// A stale entry for the same (at, id): valid again.
	case i == 0 && w.duePos > 0:
		// In front, where fire re-arms usually land: reuse the consumed prefix.
		w.duePos--
		w.due[w.duePos] = e
	default:
		w.due = slices.Insert(w.due, w.duePos+i, e)
	}
}
