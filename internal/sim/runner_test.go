package sim

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
)

// recorder is a PublishFunc that records what it is given, with the clock's time.
type recorder struct {
	clock  clockwork.Clock
	mu     sync.Mutex
	events []recorded
	live   int // calls that have started and not ended
	failAt int // fail the publish of this event number (1-based); 0 never
}

var errBroken = errors.New("broken connection")

func (r *recorder) publish(subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAt > 0 && len(r.events)+1 >= r.failAt {
		return errBroken
	}
	r.events = append(r.events, recorded{subject: subject, data: slices.Clone(data), at: r.clock.Now()})
	switch {
	case strings.HasSuffix(subject, "."+TypeStatusUpdate):
		r.live++
	case strings.HasSuffix(subject, "."+TypeEndOfCallReport):
		r.live--
	}
	return nil
}

func (r *recorder) liveCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

func (r *recorder) snapshot() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// fakeRun runs a Runner of s on a fake clock for steps steps of step, calling each
// (when given) at every step while all workers wait. It returns the runner, what was
// published, and the error of Run.
func fakeRun(t *testing.T, s *Sim, steps int, step time.Duration, each func(i int, rec *recorder)) (*Runner, *recorder, error) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(t0.Add(123 * time.Microsecond))
	rec := &recorder{clock: clock}
	r := NewRunner(s, rec.publish, WithClock(clock))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var (
		runErr  error
		stopped bool
	)
	stop := func() error {
		if !stopped {
			cancel()
			runErr, stopped = <-done, true
		}
		return runErr
	}
	defer stop()
	for i := range steps {
		wait, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
		err := clock.BlockUntilContext(wait, r.Workers())
		cancelWait()
		if err != nil {
			t.Fatalf("step %d: the workers do not come to rest: %v", i, err)
		}
		if each != nil {
			each(i, rec)
		}
		clock.Advance(step)
	}
	return r, rec, stop()
}

// byCall groups recorded events by call id, in the order they were published.
func byCall(t *testing.T, events []recorded) map[string][]recorded {
	calls := map[string][]recorded{}
	for _, e := range events {
		w, _ := decode(t, e.data)
		calls[w.Message.Call.ID] = append(calls[w.Message.Call.ID], e)
	}
	return calls
}

func TestRunnerPublishesScriptsOnTime(t *testing.T) {
	const step = 100 * time.Millisecond
	s := newSim(t, func(c *Config) {
		stormy(c)
		c.Calls, c.Workers, c.Ramp = 30, 3, 2*time.Second
		c.TurnsMin, c.TurnsMax = 2, 5
	})
	r, rec, err := fakeRun(t, s, 1500, step, func(i int, rec *recorder) {
		if at := time.Duration(i) * step; at >= s.cfg.Ramp {
			if live := rec.liveCalls(); live != s.cfg.Calls {
				t.Fatalf("at %v: %d calls live, want %d", at, live, s.cfg.Calls)
			}
		}
	})
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	st := r.Stats()
	events := rec.snapshot()
	if st.Events != int64(len(events)) || st.Errors != 0 || st.Late != 0 || st.MaxLate >= step {
		t.Errorf("stats %+v, want %d events, none late", st, len(events))
	}
	if wantStart := t0.Truncate(time.Millisecond); !st.Start.Equal(wantStart) || st.Cutoff.Before(st.Start.Add(149*time.Second)) {
		t.Errorf("start %v cutoff %v", st.Start, st.Cutoff)
	}

	// Every call started by the cutoff, slot by slot, each when the previous one ended,
	// published every event due before the cutoff, as its script has it, on time. A
	// worker ahead of the others may have published events due after the cutoff (the
	// earliest next event of all workers): a prefix of the script, then.
	calls := byCall(t, events)
	want := 0
	for slot := range int64(s.cfg.Calls) {
		for sc := s.firstScript(slot, st.Start.UnixMilli()); sc.Start().Before(st.Cutoff); {
			want++
			got := calls[sc.CallID()]
			script := scriptEvents(sc)
			due := 0
			for _, e := range script {
				if e.at.Before(st.Cutoff) {
					due++
				}
			}
			if len(got) < due || len(got) > len(script) {
				t.Fatalf("call %d: %d events published, %d due before the cutoff, %d in its script", sc.Index(), len(got), due, len(script))
			}
			for i := range got {
				if got[i].subject != script[i].subject || string(got[i].data) != string(script[i].data) {
					t.Fatalf("call %d event %d differs from its script", sc.Index(), i)
				}
				if late := got[i].at.Sub(script[i].at); late < 0 || late >= step {
					t.Errorf("call %d event %d published %v after its time", sc.Index(), i, late)
				}
			}
			sc = sc.successor(sc.start + sc.scan(nil, nil))
		}
	}
	if len(calls) < want || st.Calls != int64(len(calls)) {
		t.Errorf("%d calls published (stats: %d), want %d started by the cutoff", len(calls), st.Calls, want)
	}
	rate := float64(len(events)) / st.Cutoff.Sub(st.Start).Seconds() / float64(s.cfg.Calls)
	if want := s.EventRate(); rate < want*0.8 || rate > want*1.2 {
		t.Errorf("%.3f events/s per call, EventRate() = %.3f", rate, want)
	}
	if err := r.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Run() = %v, want ErrStarted", err)
	}
}

func TestRunnerRateLimit(t *testing.T) {
	const (
		rate  = 100
		burst = 10
	)
	s := newSim(t, func(c *Config) {
		c.Calls, c.Workers, c.Ramp = 500, 2, time.Second
		c.Rate, c.Burst = rate, burst
	})
	r, rec, err := fakeRun(t, s, 500, 10*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	events := rec.snapshot()
	// In any second, at most a second's worth of tokens and a full bucket.
	for i, e := range events {
		n := 0
		for _, f := range events[i:] {
			if f.at.Sub(e.at) >= time.Second {
				break
			}
			n++
		}
		if n > rate+burst {
			t.Fatalf("%d events in the second from %v, want at most %d", n, e.at, rate+burst)
		}
	}
	// The calls want far more than the rate, so the rate is used in full.
	if n := len(events); n < 5*rate-burst {
		t.Errorf("%d events in 5s, want about %d", n, 5*rate+burst)
	}
	if st := r.Stats(); st.Late == 0 || st.MaxLate < time.Second {
		t.Errorf("stats %+v: the capped calls should run late", st)
	}
}

func TestRunnerHangUpOnStop(t *testing.T) {
	s := newSim(t, func(c *Config) {
		c.Calls, c.Workers, c.Ramp = 20, 2, 4*time.Second
		c.HangUpOnStop = true
	})
	// Stop in the middle of the ramp: calls not yet started get no end-of-call-report.
	r, rec, err := fakeRun(t, s, 20, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	events := rec.snapshot()
	if live := rec.liveCalls(); live != 0 {
		t.Errorf("%d calls live after the stop, want 0", live)
	}
	started := 0
	for id, evs := range byCall(t, events) {
		started++
		last := evs[len(evs)-1]
		w, _ := decode(t, last.data)
		if w.Message.Type != TypeEndOfCallReport || w.Message.Call.Status != "finished" || time.UnixMilli(w.Message.Timestamp).Before(r.Stats().Cutoff) {
			t.Errorf("call %s ends with %s at %d", id, w.Message.Type, w.Message.Timestamp)
		}
	}
	if started == 0 || started == s.cfg.Calls {
		t.Errorf("%d calls started, want some of %d", started, s.cfg.Calls)
	}
	if st := r.Stats(); st.HangUps != int64(started) || st.Events != int64(len(events)) {
		t.Errorf("stats %+v: want %d hang-ups among %d events", st, started, len(events))
	}
}

func TestRunnerStopsOnPublishError(t *testing.T) {
	s := newSim(t, func(c *Config) { c.Calls, c.Workers = 50, 4 })
	clock := clockwork.NewFakeClockAt(t0)
	rec := &recorder{clock: clock, failAt: 30}
	r := NewRunner(s, rec.publish, WithClock(clock))
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	var err error
	for err == nil {
		select {
		case err = <-done:
		default:
			clock.Advance(50 * time.Millisecond)
		}
	}
	if !errors.Is(err, errBroken) {
		t.Errorf("Run() = %v, want the publish error", err)
	}
	if st := r.Stats(); st.Errors == 0 {
		t.Errorf("stats %+v count no error", st)
	}
}

// TestRunnerAgainstDetector runs calls through the runner and every call's events
// through the real detector, then tallies the detector's outputs against the truth:
// nothing missed, nothing false. The calls that the stop cuts off hang later; those
// hangs come after the cutoff and count as beyond, not false.
func TestRunnerAgainstDetector(t *testing.T) {
	tests := []struct {
		name       string
		hangUp     bool
		wantBeyond bool
	}{
		{"cut off", false, true},
		{"hung up on stop", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, func(c *Config) {
				stormy(c)
				c.Calls, c.Workers, c.Ramp = 60, 3, 3*time.Second
				c.HangUpOnStop = tt.hangUp
			})
			r, rec, err := fakeRun(t, s, 900, 100*time.Millisecond, nil)
			if err != nil {
				t.Fatalf("Run() = %v", err)
			}
			st := r.Stats()
			cfg := detector.DefaultConfig()
			var obs []Observation
			for id, events := range byCall(t, rec.snapshot()) {
				for _, o := range detect(t, cfg, events, 0, st.Cutoff.Add(time.Minute), 0) {
					obs = append(obs, Observation{Kind: o.kind, CallID: id, FirstUserMessageID: o.first,
						Reason: o.reason, Stage: o.stage, Wait: o.wait, EndedReason: o.ended, At: o.at})
				}
			}
			got := r.Truth().Tally(obs, st.Cutoff)
			t.Log(got.Summary())
			if got.Stalls == 0 || got.Resolved == 0 || got.Calls <= s.cfg.Calls || got.Turns == 0 {
				t.Errorf("too little happened: %v", got)
			}
			if got.Errors() != 0 || got.Unresolved == 0 {
				t.Errorf("the detector disagrees with the truth: %v", got)
			}
			if got.Hangs != got.Stalls || got.Lag(1) >= 100*time.Millisecond || got.Lag(0) < 0 {
				t.Errorf("hangs %d of %d stalls, lags %v..%v", got.Hangs, got.Stalls, got.Lag(0), got.Lag(1))
			}
			if (got.Beyond > 0) != tt.wantBeyond {
				t.Errorf("beyond = %d, want some: %v", got.Beyond, tt.wantBeyond)
			}
		})
	}
}
