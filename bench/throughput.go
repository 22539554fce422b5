package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// throughput publishes the stream to subject name as fast as it keeps up, in a closed
// loop, and measures the sustained rate: every event published was decoded by the end.
func (s *session) throughput(st *stream, name string) (r ThroughputResult, err error) {
	r.Subject = name
	c, echo, dl, seq, err := s.start(PhaseThroughput, name, s.defaultDet())
	if err != nil {
		return r, err
	}
	defer func() {
		_ = dl.Unsubscribe()
		err = errors.Join(err, c.stop())
		if err == nil && name == SubjectBinary {
			// The binary has no control subject: what it applied is in its last log line.
			if applied, ok := c.binaryEvents(); ok {
				r.Lost = r.Events - applied
			}
		}
	}()
	var before ChildStats
	if c.ctl != "" {
		if before, err = c.stats(s.obs, false); err != nil {
			return r, err
		}
	}
	slow := s.slowConsumers()
	p := newPump(s.pub, echo, s.cfg, seq)
	var published atomic.Int64
	s.prog.begin(PhaseThroughput+" "+name, func() (float64, string) {
		n := published.Load()
		return float64(n) / float64(s.cfg.TPEvents), fmt.Sprintf("%d events", n)
	})
	cpu, self, start := c.proc().cpu, selfCPU(), time.Now()
	deadline := start.Add(s.cfg.TPMaxTime)
publish:
	for round := 0; ; round++ {
		for i := range st.events {
			subject, data := st.next(round, i)
			if err := p.publish(subject, data); err != nil {
				s.prog.end()
				return r, err
			}
			published.Store(p.events)
			if p.events >= int64(s.cfg.TPEvents) || (p.sinceMark == 0 && time.Now().After(deadline)) {
				break publish
			}
		}
	}
	end, err := p.finish()
	s.prog.end()
	if err != nil {
		return r, err
	}
	pr := c.proc()
	r.Events, r.Bytes, r.Elapsed = p.events, p.bytes, end.Sub(start)
	r.EventsPerSec = float64(r.Events) / r.Elapsed.Seconds()
	r.MBPerSec = float64(r.Bytes) / r.Elapsed.Seconds() / 1e6
	r.CPU, r.LoadGenCPU, r.PeakRSS = pr.cpu-cpu, selfCPU()-self, pr.peak
	r.SlowConsumers = s.slowConsumers() - slow
	s.res.Published[name] += r.Events
	if c.ctl != "" {
		after, err := c.stats(s.obs, false)
		if err != nil {
			return r, err
		}
		// Every event and every marker published since the probe must have arrived.
		r.Lost = r.Events + p.markers(seq) - (after.Received - before.Received)
		r.Dropped = after.Dropped
	}
	return r, nil
}
