package sim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// PublishFunc publishes one event. data is reused once it returns, so it must be copied
// to be kept (nats.Conn.Publish copies it). It is called from every worker at once.
type PublishFunc func(subject string, data []byte) error

// Option configures a Runner.
type Option func(*Runner)

// WithClock sets the clock (default the real clock). Tests pass a clockwork FakeClock:
// each worker waits on one timer of its own, so BlockUntilContext(ctx, workers) returns
// once every worker is idle.
func WithClock(c clockwork.Clock) Option { return func(r *Runner) { r.clock = c } }

// ErrStarted is returned by Run when the Runner runs already, or has run.
var ErrStarted = errors.New("sim: runner already started")

// Runner publishes the events of Config.Calls concurrent calls in real time: the first
// calls start spread over Config.Ramp, and each call that ends is replaced at once by
// the next one of its slot, so that Calls calls are live for the whole run. Slot s runs
// calls s, s+Calls, s+2·Calls, …, each starting when the previous one ends, so the
// whole run is a function of the configuration and its start time; Truth recomputes
// it rather than recording it.
//
// A few workers share the slots; each keeps its slots in a heap by the time of their
// next event and waits on one timer, so a million calls cost a million small slots,
// not a million goroutines or timers.
type Runner struct {
	sim     *Sim
	publish PublishFunc
	clock   clockwork.Clock
	started atomic.Bool
	start   atomic.Pointer[time.Time] // nil until Run starts
	cutoff  atomic.Pointer[time.Time] // nil until Run returns
	stop    atomic.Int64              // Unix ms when Run stopped publishing; 0 until then
	workers atomic.Pointer[[]*worker]
}

// NewRunner returns a runner of the simulation that publishes with publish.
func NewRunner(s *Sim, publish PublishFunc, opts ...Option) *Runner {
	r := &Runner{sim: s, publish: publish, clock: clockwork.NewRealClock()}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// Workers returns the number of goroutines Run starts.
func (r *Runner) Workers() int {
	w := r.sim.cfg.Workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return min(w, r.sim.cfg.Calls)
}

// Run publishes events until ctx is cancelled or a publish fails, and returns once
// every goroutine it started has exited: nil when ctx was cancelled, else the error of
// the failed publish. With Config.HangUpOnStop it then publishes an end-of-call-report
// for every live call, stamped with the time it stopped.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	start := r.clock.Now().Truncate(time.Millisecond)
	r.start.Store(&start)
	workers := r.newWorkers(start.UnixMilli())
	r.workers.Store(&workers)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, w := range workers {
		wg.Go(func() {
			if err := w.run(ctx); err != nil {
				once.Do(func() { first = err })
				cancel()
			}
		})
	}
	wg.Wait()

	stop := r.clock.Now().UnixMilli()
	r.stop.Store(stop)
	cutoff := stop
	for _, w := range workers {
		cutoff = min(cutoff, w.sched.top().due())
	}
	at := time.UnixMilli(cutoff)
	r.cutoff.Store(&at)
	if r.sim.cfg.HangUpOnStop {
		for _, w := range workers {
			if err := w.hangUp(stop); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// newWorkers deals the slots out to the workers: slot s goes to worker s mod n.
func (r *Runner) newWorkers(start int64) []*worker {
	n := r.Workers()
	lim := newLimiter(r.sim.cfg.Rate, r.sim.cfg.Burst)
	workers := make([]*worker, n)
	calls := r.sim.cfg.Calls
	for i := range workers {
		w := &worker{r: r, lim: lim}
		w.sched.slots = make([]slot, (calls-i+n-1)/n)
		for j := range w.sched.slots {
			sc := r.sim.firstScript(int64(j*n+i), start)
			w.sched.slots[j] = slot{sc: sc, c: sc.cursor()}
		}
		w.sched.init()
		workers[i] = w
	}
	return workers
}

// Stats are the counters of a run.
type Stats struct {
	// Start is when Run started (zero before); the first calls start then.
	Start time.Time
	// Cutoff is when the run stopped, as far as the ground truth is concerned: every
	// event due before it was published. It is zero until Run returns; pass it to
	// Truth.Tally.
	Cutoff time.Time
	// Calls is the number of calls started, Events and Bytes what was published.
	Calls, Events, Bytes int64
	// HangUps counts the end-of-call-reports that HangUpOnStop published after the run
	// stopped; Events includes them. A rate over the run is Events-HangUps over its
	// duration: the hang-ups come all at once, after it.
	HangUps int64
	// Late counts the events published more than Margin after they were due (because
	// of Rate, or a machine too slow for the load). Past max-lag, a late event moves
	// the detector's anchors and the ground truth no longer holds for its call.
	Late int64
	// MaxLate is the latest an event was published after it was due.
	MaxLate time.Duration
	// Errors counts the publishes that failed.
	Errors int64
}

// Stats returns the counters so far. It is safe to call while Run runs.
func (r *Runner) Stats() Stats {
	var st Stats
	if t := r.start.Load(); t != nil {
		st.Start = *t
	}
	if t := r.cutoff.Load(); t != nil {
		st.Cutoff = *t
	}
	if ws := r.workers.Load(); ws != nil {
		for _, w := range *ws {
			st.Calls += w.calls.Load()
			st.Events += w.events.Load()
			st.Bytes += w.bytes.Load()
			st.HangUps += w.hangUps.Load()
			st.Late += w.late.Load()
			st.Errors += w.errors.Load()
			st.MaxLate = max(st.MaxLate, time.Duration(w.maxLate.Load()))
		}
	}
	return st
}

// Truth returns the ground truth of the run. Before Run starts it knows no call; once
// Run has stopped it knows when, which the hang-unresolved of the calls that
// HangUpOnStop ends are measured to.
func (r *Runner) Truth() *Truth {
	t := r.start.Load()
	if t == nil {
		return &Truth{sim: r.sim}
	}
	truth := r.sim.Truth(*t)
	truth.stop = r.stop.Load()
	return truth
}

// worker publishes the events of its slots in time order, waiting on one timer.
type worker struct {
	r     *Runner
	lim   *limiter
	sched schedule
	timer clockwork.Timer // created by the first wait
	data  []byte
	subj  []byte

	// Counters, per worker so that workers share no cache line on the hot path.
	calls, events, bytes, late, errors, maxLate, hangUps atomic.Int64
}

// run publishes every event when it is due until ctx is cancelled, or returns the
// error of a failed publish.
func (w *worker) run(ctx context.Context) error {
	defer func() {
		if w.timer != nil {
			w.timer.Stop()
		}
	}()
	clock := w.r.clock
	for {
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		sl := w.sched.top()
		now := clock.Now().UnixNano()
		if due := sl.due() * int64(time.Millisecond); due > now {
			if !w.wait(ctx, due-now) {
				return nil
			}
			continue
		}
		if w.lim != nil {
			if at := w.lim.reserve(now); at > now && !w.wait(ctx, at-now) {
				return nil
			}
		}
		if err := w.publish(sl, clock.Now().UnixNano()); err != nil {
			return err
		}
		w.advance(sl)
		w.sched.fixTop()
	}
}

// wait waits d nanoseconds on the worker's timer, and reports false if ctx was
// cancelled first.
func (w *worker) wait(ctx context.Context, d int64) bool {
	if w.timer == nil {
		w.timer = w.r.clock.NewTimer(time.Duration(d))
	} else {
		// The fake clock's timer keeps a value sent before a Reset: drop it, or the
		// next wait would end at once.
		select {
		case <-w.timer.Chan():
		default:
		}
		w.timer.Reset(time.Duration(d))
	}
	select {
	case <-w.timer.Chan():
		return true
	case <-ctx.Done():
		return false
	}
}

// publish publishes the event that sl stands on; now is the time, in Unix nanoseconds.
func (w *worker) publish(sl *slot, now int64) error {
	typ, _ := sl.c.pending()
	w.data = sl.sc.appendEvent(w.data[:0], &sl.c)
	w.subj = sl.sc.appendSubject(w.subj[:0], typ)
	if err := w.r.publish(string(w.subj), w.data); err != nil {
		w.errors.Add(1)
		return fmt.Errorf("publish %s: %w", w.subj, err)
	}
	if typ == evStatus {
		w.calls.Add(1)
	}
	w.events.Add(1)
	w.bytes.Add(int64(len(w.data)))
	late := now - sl.due()*int64(time.Millisecond)
	if late > w.r.sim.cfg.Margin.Nanoseconds() {
		w.late.Add(1)
	}
	if late > w.maxLate.Load() {
		w.maxLate.Store(late)
	}
	return nil
}

// advance moves sl to its next event, or to the next call of the slot once its call
// has ended.
func (w *worker) advance(sl *slot) {
	if typ, at := sl.c.pending(); typ == evEnd {
		sl.sc = sl.sc.successor(sl.sc.start + at)
		sl.c = sl.sc.cursor()
		return
	}
	sl.c.next(&w.r.sim.p)
}

// hangUp publishes an end-of-call-report at stop (Unix ms) for every call of the worker
// that has started, and returns the first error.
func (w *worker) hangUp(stop int64) error {
	var first error
	for i := range w.sched.slots {
		sl := &w.sched.slots[i]
		typ, _ := sl.c.pending()
		if typ == evStatus {
			continue // not started yet
		}
		c := sl.sc.ended(&sl.c, stop)
		w.data = sl.sc.appendEvent(w.data[:0], &c)
		w.subj = sl.sc.appendSubject(w.subj[:0], evEnd)
		if err := w.r.publish(string(w.subj), w.data); err != nil {
			w.errors.Add(1)
			if first == nil {
				first = fmt.Errorf("publish %s: %w", w.subj, err)
			}
			continue
		}
		w.events.Add(1)
		w.hangUps.Add(1)
		w.bytes.Add(int64(len(w.data)))
	}
	return first
}

// ended returns a cursor that stands on an end-of-call-report at stop (Unix ms) for a
// call whose cursor c stands on its next, unpublished event: it counts the turns of the
// messages that were published.
func (sc *Script) ended(c *cursor, stop int64) cursor {
	published := c.msgs
	if typ, _ := c.pending(); typ == evUpdate {
		published--
	}
	e := sc.cursor()
	for e.msgs < published {
		e.next(&sc.sim.p)
	}
	e.phase, e.at, e.stopped = phDone, max(stop-sc.start, e.at), true
	return e
}
