package sim

// The schedule of a run: slot s runs calls s, s+Calls, s+2·Calls, …; its first call
// starts at s/Calls of the way through the ramp, and each next one when the previous
// one ends. The Runner follows it and Truth recomputes it.

// firstScript returns the first call of slot n of a run started at start (Unix ms):
// the slots start evenly spread over the ramp.
func (s *Sim) firstScript(n, start int64) Script {
	return s.scriptAt(uint64(n), start+n*s.p.ramp/s.p.calls)
}

// successor returns the call that takes the slot of sc when sc ends at end (Unix ms).
func (sc *Script) successor(end int64) Script {
	return sc.sim.scriptAt(sc.index+uint64(sc.sim.p.calls), end)
}

// slot is a place for one live call in a Runner: the call, and its cursor standing on
// the call's next event. When the call ends, the slot takes the next call at once.
type slot struct {
	sc Script
	c  cursor
}

// due returns when the slot's next event is due, in Unix milliseconds.
func (s *slot) due() int64 { return s.sc.start + s.c.at }

// schedule is a binary min-heap of the slots of a worker by due time, ties broken by
// slot, so that a worker's order is deterministic. It holds indexes rather than slots
// so that sifting moves 4 bytes, not a whole cursor.
type schedule struct {
	slots []slot
	heap  []int32
}

func (s *schedule) less(i, j int) bool {
	a, b := s.heap[i], s.heap[j]
	da, db := s.slots[a].due(), s.slots[b].due()
	return da < db || (da == db && a < b)
}

// init orders every slot.
func (s *schedule) init() {
	s.heap = make([]int32, len(s.slots))
	for i := range s.heap {
		s.heap[i] = int32(i)
	}
	for i := len(s.heap)/2 - 1; i >= 0; i-- {
		s.down(i)
	}
}

// top returns the slot due first.
func (s *schedule) top() *slot { return &s.slots[s.heap[0]] }

// fixTop restores the order after the top slot's due time has grown.
func (s *schedule) fixTop() { s.down(0) }

func (s *schedule) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			return
		}
		s.heap[i], s.heap[m] = s.heap[m], s.heap[i]
		i = m
	}
}
