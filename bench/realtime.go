package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/internal/sim"
)

// observer keeps the outputs that come back, stamped with the time they
// were received (in ns, unlike the millisecond message.timestamp, so that detection
// lags below a millisecond show).
type observer struct {
	mu   sync.Mutex
	seen []sim.Observation
	bad  int
}

func (o *observer) handle(m *nats.Msg) {
	ob, err := sim.ParseObservation(m.Data, time.Now())
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.bad++
		return
	}
	o.seen = append(o.seen, ob)
}

func (o *observer) observations() []sim.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]sim.Observation(nil), o.seen...)
}

func (o *observer) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

// realtime runs the simulation on the real clock against subject name for
// Config.Duration, then compares the hangs that came back with the ground truth.
func (s *session) realtime(ctx context.Context, name string) (r RealtimeResult, err error) {
	r.Subject, r.Calls, r.Duration = name, s.cfg.Calls, s.cfg.Duration
	c, echo, dl, seq, err := s.start(PhaseRealtime, name, s.defaultDet())
	if err != nil {
		return r, err
	}
	var obs observer
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range append(subs, dl) {
			_ = sub.Unsubscribe()
		}
		err = errors.Join(err, c.stop())
		if err == nil && name == SubjectBinary {
			if applied, ok := c.binaryEvents(); ok {
				r.Lost = r.Events - applied
			}
		}
	}()
	for _, subject := range []string{"voice.hang.>", "voice.hang-resolved.>", "voice.hang-unresolved.>"} {
		sub, err := s.watch(subject, obs.handle)
		if err != nil {
			return r, err
		}
		subs = append(subs, sub)
	}
	var before ChildStats
	if c.ctl != "" {
		if before, err = c.stats(s.obs, false); err != nil {
			return r, err
		}
	}

	runner := sim.NewRunner(s.sim, s.pub.Publish)
	s.prog.begin(PhaseRealtime+" "+name, func() (float64, string) {
		st := runner.Stats()
		if st.Start.IsZero() {
			return 0, ""
		}
		el := time.Since(st.Start)
		return el.Seconds() / s.cfg.Duration.Seconds(), fmt.Sprintf("%d events (%.0f/s) %d outputs, %d late",
			st.Events, float64(st.Events)/el.Seconds(), obs.count(), st.Late)
	})
	cpu := c.proc().cpu
	runCtx, cancel := context.WithTimeout(ctx, s.cfg.Duration)
	defer cancel()
	// The heap per call is sampled near the end, from the heap the latest GC found live:
	// forcing a GC would stall the subject in the middle of the measurement.
	var (
		wg        sync.WaitGroup
		sample    ChildStats
		sampleErr error
	)
	if c.ctl != "" {
		wg.Go(func() {
			t := time.NewTimer(s.cfg.Duration - min(2*time.Second, s.cfg.Duration/10))
			defer t.Stop()
			select {
			case <-t.C:
				sample, sampleErr = c.stats(s.obs, false)
			case <-runCtx.Done():
			}
		})
	}
	runErr := runner.Run(runCtx) // hangs up every live call at the end
	cancel()
	wg.Wait()
	// One last marker after the hang-ups: once it is back, the subject has read all.
	p := newPump(s.pub, echo, s.cfg, seq)
	_, err = p.finish()
	s.prog.end()
	if err = errors.Join(runErr, err, sampleErr); err != nil {
		return r, err
	}
	// Outputs published before the subject read the marker are on their way: wait until
	// the observer has handled them.
	if err := s.obs.Flush(); err != nil {
		return r, fmt.Errorf("flush: %w", err)
	}
	// The marker is back once the subject has read everything; it may still be applying
	// the last events (the hang-ups) and publishing their outputs: wait until no output
	// has come for a while.
	for deadline, last, quiet := time.Now().Add(30*time.Second), -1, 0; quiet < 10 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := obs.count(); n != last || pending(subs) > 0 {
			last, quiet = n, 0
			continue
		}
		quiet++
	}

	pr := c.proc()
	st := runner.Stats()
	r.Events, r.Bytes, r.Late, r.MaxLate, r.HangUps = st.Events, st.Bytes, st.Late, st.MaxLate, st.HangUps
	r.CPU, r.PeakRSS = pr.cpu-cpu, pr.peak
	s.res.Published[name] += st.Events
	if c.ctl != "" {
		after, err := c.lagStats(s.obs, st.Cutoff)
		if err != nil {
			return r, err
		}
		r.Lost = r.Events + p.markers(seq) - (after.Received - before.Received)
		r.OwnLag = after.InternalLag
		r.LiveCalls = sample.Calls - sample.Ended
		if r.LiveCalls > 0 {
			r.HeapPerCall = float64(sample.HeapLive) / float64(r.LiveCalls)
		}
	}
	r.Tally = runner.Truth().Tally(obs.observations(), st.Cutoff)
	r.LagP50, r.LagP99, r.LagMax = r.Lag(0.5), r.Lag(0.99), r.Lag(1)
	return r, nil
}

func pending(subs []*nats.Subscription) int {
	n := 0
	for _, sub := range subs {
		if m, _, err := sub.Pending(); err == nil {
			n += m
		}
	}
	return n
}
