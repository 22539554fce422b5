package engine

import (
	"hash/maphash"
	"sync/atomic"
)

// tombs are a shard's ended calls: a FIFO of their call ids' hashes, so that events
// that come after the end are ignored (a late duplicate must not resurrect a call) for
// at least the call TTL, unless more calls end meanwhile than --max-ended: then the
// oldest are forgotten first. The limit is the engine's, counted across its shards in
// total; a shard that adds past it forgets its own oldest (so a shard may hold more than
// its share while the others hold less, up to twice it). An end for a call never seen
// costs one entry and nothing else. 64-bit hashes keep an entry at a few dozen bytes;
// two calls whose ids collide are a chance of 2^-64.
type tombs struct {
	at    map[uint64]int64 // hash → when it ended (engine ns)
	fifo  []tomb           // ring, grown up to max
	head  int
	n     int
	max   int
	total *atomic.Int64 // entries of every shard's tombs
	limit int64         // of total: --max-ended
}

type tomb struct {
	hash uint64
	at   int64
}

// newTombs returns the tombs of one of shards shards, whose tombs count in total
// against limit.
func newTombs(limit int64, shards int, total *atomic.Int64) *tombs {
	limit = max(limit, 1)
	ring := min(limit, 2*limit/int64(shards)+64)
	return &tombs{at: make(map[uint64]int64), fifo: make([]tomb, 1), max: int(ring), total: total, limit: limit}
}

func hashID(seed maphash.Seed, id string) uint64 { return maphash.String(seed, id) }

// has reports whether the call ended less than ttl before now.
func (t *tombs) has(h uint64, now, ttl int64) bool {
	at, ok := t.at[h]
	return ok && now-at < ttl
}

// add remembers an ended call; it forgets the oldest when full, and those older than
// ttl. It returns how many were forgotten.
func (t *tombs) add(h uint64, now, ttl int64) (forgot int) {
	if t.n == len(t.fifo) && len(t.fifo) < t.max {
		grown := make([]tomb, min(2*len(t.fifo), t.max))
		for i := range t.n {
			grown[i] = t.fifo[(t.head+i)%len(t.fifo)]
		}
		t.fifo, t.head = grown, 0
	}
	for t.n > 0 && (t.n == len(t.fifo) || now-t.fifo[t.head].at >= ttl || t.total.Load() >= t.limit) {
		old := t.fifo[t.head]
		if t.at[old.hash] == old.at {
			delete(t.at, old.hash)
		}
		t.head = (t.head + 1) % len(t.fifo)
		t.n--
		t.total.Add(-1)
		forgot++
	}
	t.fifo[(t.head+t.n)%len(t.fifo)] = tomb{h, now}
	t.n++
	t.total.Add(1)
	t.at[h] = now
	return forgot
}

func (t *tombs) len() int { return len(t.at) }
