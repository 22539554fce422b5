package engine

import (
	"runtime"
	"slices"

	"github.com/hangwatch/hangwatch/detector"
)

// Packing runs beside the shards: a shard hands a copy due to be packed to the packer
// and goes on, and the packed copy comes back through its queue, to be kept if the call
// still keeps the copy it was made from. A shard that packed its copies itself noticed
// no deadline and fired no hang meanwhile: up to 256 KB between two batches, a quarter
// to half a millisecond of s2.

// packJob is a copy to pack for a shard, and the packed copy once made.
type packJob struct {
	s      *shard
	slot   uint32
	seq    uint32           // the slot's kept number when the copy was handed over
	snap   detector.Payload // the copy, a Packer; the packer only reads it
	view   bool             // snap is a received payload (a Lasting message's), not a copy
	packed detector.Payload // the packed copy, nil when packing is not worth it
}

// packQueue is how many copies wait for the packer at most: a shard keeps the rest in
// its list until there is room.
const packQueue = 64

// packer packs the copies handed to it until in is closed. A packed copy goes into its
// shard's queue without waking the shard, which takes it with the next thing it wakes
// for; once nothing waits to be packed, the shards given copies since are woken, so
// that no copy (and no Sync waiting for it) waits for more input.
func packer(in <-chan *packJob) {
	var unwoken []*shard
	for j := range in {
		j.packed = j.snap.(Packer).Pack()
		if j.packed == nil && j.view {
			// Not worth packing, but the received bytes go: a compact copy replaces them.
			j.packed = j.snap.(Retainer).Retain(-1)
		}
		s := j.s
		s.q.add(item{packed: j})
		if !slices.Contains(unwoken, s) {
			unwoken = append(unwoken, s)
		}
		if len(in) == 0 {
			for _, s := range unwoken {
				s.q.signal()
			}
			clear(unwoken)
			unwoken = unwoken[:0]
		}
		// Packing is background work, tens of microseconds a copy: a goroutine it woke
		// (the shard, the publisher) runs first, not after the whole backlog.
		runtime.Gosched()
	}
}

// packed takes back a copy from the packer: the call keeps it instead of the one it was
// made from, unless it has let that one go meanwhile.
func (s *shard) packed(j *packJob) {
	s.packing--
	if sl := s.slots.at(j.slot); j.packed != nil && sl.kept == j.seq {
		c := &sl.call
		if snap, latest := c.Kept(); snap == j.snap {
			if latest == snap {
				latest = j.packed
			}
			st, retained := c.State(), c.Retained()
			c.Keep(j.packed, latest)
			s.account(st, st, retained, c.Retained())
		}
	}
	if s.packing == 0 {
		s.arriveAll()
	}
}

// arriveAll lets the Sync barriers that wait for the packer through.
func (s *shard) arriveAll() {
	for _, b := range s.waiting {
		b.arrive()
	}
	clear(s.waiting)
	s.waiting = s.waiting[:0]
}
