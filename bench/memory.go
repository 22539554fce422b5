package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// memory measures the heap per call of subject name at rest: Calls calls are brought
// to idle (a status-update, then the greeting), then each is armed (its first user
// turn), and after each step the subject reports its heap after two GCs. Its
// thresholds are an hour, so that nothing fires while the calls are delivered.
func (s *session) memory(name string) (r MemoryResult, err error) {
	r.Subject, r.Calls, r.HeapKnown = name, s.cfg.Calls, name != SubjectBinary
	det := detFlags{timeout: time.Hour, callTTL: 2 * time.Hour, maxCalls: s.cfg.maxCalls()}
	c, echo, dl, seq, err := s.start(PhaseMemory, name, det)
	if err != nil {
		return r, err
	}
	defer func() {
		_ = dl.Unsubscribe()
		err = errors.Join(err, c.stop())
	}()
	var base ChildStats
	if r.HeapKnown {
		if base, err = c.stats(s.obs, true); err != nil {
			return r, err
		}
	}
	rss0 := c.proc().rss
	calls := uint64(s.cfg.Calls)
	start := time.Now()
	var done atomic.Int64
	p := newPump(s.pub, echo, s.cfg, seq)
	// step publishes events [from, to) of every call.
	step := func(label string, from, to int) (ChildStats, int64, error) {
		done.Store(0)
		s.prog.begin(label, func() (float64, string) {
			n := done.Load()
			return float64(n) / float64(calls), fmt.Sprintf("%d calls", n)
		})
		defer s.prog.end()
		for i := range calls {
			k := 0
			for ev := range s.sim.Script(i, start).Events() {
				if k >= to {
					break
				}
				if k >= from {
					if err := p.publish(ev.Subject, ev.Data); err != nil {
						return ChildStats{}, 0, err
					}
				}
				k++
			}
			done.Store(int64(i + 1))
		}
		if _, err := p.finish(); err != nil {
			return ChildStats{}, 0, err
		}
		var st ChildStats
		if r.HeapKnown {
			var err error
			if st, err = c.stats(s.obs, true); err != nil {
				return st, 0, err
			}
		}
		return st, c.proc().rss, nil
	}
	idle, rssIdle, err := step(PhaseMemory+" "+name+" idle", 0, 2)
	if err != nil {
		return r, err
	}
	armed, rssArmed, err := step(PhaseMemory+" "+name+" armed", 2, 3)
	if err != nil {
		return r, err
	}
	s.res.Published[name] += p.events
	n := float64(calls)
	r.RSSIdle, r.RSSArmed = float64(rssIdle-rss0)/n, float64(rssArmed-rss0)/n
	r.PeakRSS = c.proc().peak
	if !r.HeapKnown {
		return r, nil
	}
	heap := func(st ChildStats) float64 { return float64(int64(st.HeapAlloc) - int64(base.HeapAlloc)) }
	r.Idle = heap(idle) / n
	r.IdleExcl = (heap(idle) - float64(idle.Retained)) / n
	r.ArmedExcl = (heap(armed) - float64(armed.Retained)) / n
	r.Overhead = r.ArmedExcl - r.IdleExcl
	r.IdleRetained, r.ArmedRetained, r.Armed = idle.Retained, armed.Retained, armed.Armed
	if idle.Calls < int64(calls) || armed.Armed < int64(calls) {
		return r, fmt.Errorf("%s holds %d calls, %d armed; want %d of each", name, idle.Calls, armed.Armed, calls)
	}
	return r, nil
}
