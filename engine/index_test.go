package engine

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

// TestIndexFollowsAMap: random puts, gets and deletes give what a map by id gives,
// with real hashes and with a hash that clashes for every id of the same length.
func TestIndexFollowsAMap(t *testing.T) {
	for _, clashing := range []bool{false, true} {
		t.Run(fmt.Sprint("clashing=", clashing), func(t *testing.T) {
			x := newIndex()
			seed := maphash.MakeSeed()
			hash := func(id string) uint64 { return hashID(seed, id) }
			if clashing {
				hash = func(id string) uint64 { return uint64(len(id)) << 32 }
			}
			r := rand.New(rand.NewPCG(1, 2))
			var slots slots
			var free []uint32
			want := map[string]uint32{}
			for step := range 20_000 {
				id := fmt.Sprint("call-", r.IntN(300))
				got, ok := x.get(hash(id), id, &slots)
				w, wok := want[id]
				if ok != wok || got != w {
					t.Fatalf("step %d: get(%q) = %d, %v; want %d, %v", step, id, got, ok, w, wok)
				}
				switch {
				case !ok:
					var s uint32
					if n := len(free); n > 0 {
						s, free = free[n-1], free[:n-1]
					} else {
						s = slots.add()
					}
					slots.at(s).id = id
					x.put(hash(id), id, s)
					want[id] = s
				case r.IntN(2) == 0:
					x.del(hash(id), id, got)
					*slots.at(got) = slot{}
					free = append(free, got)
					delete(want, id)
				}
				if x.len() != len(want) {
					t.Fatalf("step %d: len = %d, want %d", step, x.len(), len(want))
				}
			}
			if clashing && x.clash != nil && len(want) == 0 {
				t.Error("clash kept after the last id went")
			}
		})
	}
}
