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
			x := newIndex(maphash.MakeSeed())
			if clashing {
				x.hash = func(id string) uint32 { return uint32(len(id)) }
			}
			r := rand.New(rand.NewPCG(1, 2))
			var slots slots
			var free []uint32
			want := map[string]uint32{}
			for step := range 20_000 {
				id := fmt.Sprint("call-", r.IntN(300))
				got, ok := x.get(id, &slots)
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
					x.put(id, s)
					want[id] = s
				case r.IntN(2) == 0:
					x.del(id, got)
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
