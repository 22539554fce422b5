package engine

import "unsafe"

// index finds a shard's calls by id. It is keyed by 32 bits of the id's hash (hashID,
// which the sequencer takes once for the event) rather than by the id: a map entry of 8
// bytes rather than the 24 of a string key (whose bytes the slot holds anyway), 12
// bytes less a call with the map's slack. A lookup checks the id the slot holds; an id
// whose key a live call's id has already (a few in a million calls) is kept aside in
// clash, by id.
type index struct {
	byKey map[uint32]uint32 // key of the id → slot
	clash map[string]uint32 // id → slot, for an id whose key byKey holds for another
}

func newIndex() index { return index{byKey: make(map[uint32]uint32)} }

// keyOf is the key of an id whose hash is h: its high bits, as the low ones chose the
// shard.
func keyOf(h uint64) uint32 { return uint32(h >> 32) }

// get returns the slot of id, whose hash is h, if it holds a call.
func (x *index) get(h uint64, id string, slots *slots) (uint32, bool) {
	if s, ok := x.byKey[keyOf(h)]; ok && slots.at(s).id == id {
		return s, true
	}
	if len(x.clash) > 0 {
		s, ok := x.clash[id]
		return s, ok
	}
	return 0, false
}

// put adds id, whose hash is h and which get does not find, at slot s.
func (x *index) put(h uint64, id string, s uint32) {
	if _, taken := x.byKey[keyOf(h)]; !taken {
		x.byKey[keyOf(h)] = s
		return
	}
	if x.clash == nil {
		x.clash = make(map[string]uint32)
	}
	x.clash[id] = s
}

// del removes id, whose hash is h, held at slot s.
func (x *index) del(h uint64, id string, s uint32) {
	if at, ok := x.byKey[keyOf(h)]; ok && at == s {
		delete(x.byKey, keyOf(h))
		return
	}
	delete(x.clash, id)
	if len(x.clash) == 0 {
		x.clash = nil
	}
}

// len returns the number of ids held.
func (x *index) len() int { return len(x.byKey) + len(x.clash) }

// slots holds a shard's calls, indexed by slot, in pages of slotPage: a slice grown by
// append would leave up to a quarter of its slots unused, a page at most one page.
type slots struct {
	pages [][]slot
	n     uint32
}

// slotPage is the number of slots of a page: as many as fit in 32 KiB, the largest
// size class of small objects, beside the 8-byte header the runtime puts before an
// object with pointers over 512 bytes. (256 slots of 96 bytes would take the next class
// up, 27,264 bytes for 24,584.)
const slotPage = (32<<10 - 8) / uint32(unsafe.Sizeof(slot{}))

// at returns slot id, which add has returned.
func (t *slots) at(id uint32) *slot { return &t.pages[id/slotPage][id%slotPage] }

// add returns a new slot, zero.
func (t *slots) add() uint32 {
	id := t.n
	if id%slotPage == 0 {
		t.pages = append(t.pages, make([]slot, slotPage))
	}
	t.n++
	return id
}

// len returns the number of slots added.
func (t *slots) len() int { return int(t.n) }
