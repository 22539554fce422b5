package engine

import (
	"sync"
	"time"
)

// gaps remembers the input gaps of the last while (disconnections, slow-consumer drops),
// so that a hang can say how much of its wait the input may have missed.
type gaps struct {
	mu    sync.Mutex
	spans []span // in order of their end; at most maxGaps, merged beyond
	count int64
	total int64 // ns
}

type span struct{ from, to int64 }

// maxGaps bounds the gaps remembered: past it, the two oldest merge into one, which can
// only make a later hang report more of a gap, never less.
const maxGaps = 1024

func (g *gaps) add(from, to int64) {
	if to <= from {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count++
	g.total += to - from
	if n := len(g.spans); n > 0 && from <= g.spans[n-1].to {
		g.spans[n-1].to = max(g.spans[n-1].to, to)
		g.spans[n-1].from = min(g.spans[n-1].from, from)
		return
	}
	if len(g.spans) == maxGaps {
		g.spans[1].from = g.spans[0].from
		g.spans = append(g.spans[:0], g.spans[1:]...)
	}
	g.spans = append(g.spans, span{from, to})
}

// within returns the length of the gaps between from and to.
func (g *gaps) within(from, to int64) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	var d int64
	for i := len(g.spans) - 1; i >= 0; i-- {
		s := g.spans[i]
		if s.to <= from {
			break
		}
		if lo, hi := max(s.from, from), min(s.to, to); hi > lo {
			d += hi - lo
		}
	}
	return time.Duration(d)
}

func (g *gaps) stats() (count int64, total time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count, time.Duration(g.total)
}
