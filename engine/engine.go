// Package engine owns the live calls. It shards them by call id over worker goroutines;
// each worker owns its calls and one deadline scheduler, so the hot path takes no lock.
// It feeds events from a Source to each call's detector, fires deadlines on an injectable
// clock, and hands every hang and hang-resolved to a Sink.
package engine

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/logs"
)

// Source delivers decoded events to the engine.
type Source interface {
	// Run calls deliver for every event until ctx is cancelled, then stops delivering,
	// hands over what it has in flight, and returns. deliver blocks while the engine is
	// behind; it must not be called after Run returns.
	Run(ctx context.Context, deliver func(*detector.Event)) error
}

// Replayer is a Source that starts by replaying the stored state of the calls (the last
// event of each kind of each call, received at the time it was stored) before Run goes
// live. The engine applies the whole replay before it fires any deadline: a call that
// was answered or ended while hangwatch was down must not hang from an old snapshot that
// the replay hands over before the answer or the end. Then every stall whose deadline
// passed meanwhile is reported at once.
type Replayer interface {
	Source
	// Replay delivers the stored events and returns once all are delivered.
	Replay(ctx context.Context, deliver func(*detector.Event)) error
}

// Sink publishes the outputs of detection.
type Sink interface {
	// Publish publishes a hang or hang-resolved of the call. It is called from every
	// shard, concurrently, and should not block for long: the shard waits for it.
	Publish(callID string, out *detector.Output) error
}

// ErrStarted is returned by Run when the engine runs already, or has run.
var ErrStarted = errors.New("engine: already started")

// Engine is the hang detection engine. Create it with New and start it with Run.
type Engine struct {
	cfg      detector.Config
	clock    clock.Clock
	log      *zap.Logger
	limited  *zap.Logger // at most one line per message and second: for what a publisher can flood
	src      Source
	sink     Sink
	shards   []*shard
	seed     maphash.Seed
	maxCalls int64
	queue    int
	calls    atomic.Int64 // calls held by all shards, ended ones included
	started  atomic.Bool
}

// New returns an engine that reads src and publishes to sink. The configuration is
// validated here.
func New(src Source, sink Sink, opts ...Option) (*Engine, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      o.cfg,
		clock:    o.clock,
		log:      o.log,
		limited:  logs.RateLimited(o.log),
		src:      src,
		sink:     sink,
		seed:     maphash.MakeSeed(),
		maxCalls: o.maxCalls,
		queue:    o.queue,
	}
	e.shards = make([]*shard, o.shards)
	for i := range e.shards {
		e.shards[i] = newShard(e)
	}
	return e, nil
}

// Run runs the engine until ctx is cancelled and the source has returned: it then
// applies every event the source handed over, publishes every hang that is due, and
// returns once every goroutine it started has exited. It returns the source's error.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	replayer, replays := e.src.(Replayer)
	var wg sync.WaitGroup
	for _, s := range e.shards {
		s.held = replays
		wg.Go(s.run)
	}
	var err error
	if replays {
		err = replayer.Replay(ctx, e.deliver)
		if err == nil && ctx.Err() == nil {
			e.log.Info("replay done: going live", zap.Int64("calls", e.Stats().Calls))
			// The barrier fails only once ctx is done: a stop during the release, as
			// clean as one at any other time.
			_ = e.barrier(ctx, item{release: true})
		}
	}
	if err == nil && ctx.Err() == nil {
		err = e.src.Run(ctx, e.deliver)
	}
	for _, s := range e.shards {
		close(s.stop)
	}
	wg.Wait()
	return err
}

// deliver hands an event to the shard that owns its call. It blocks while the shard is
// behind. An event that comes after the shard has stopped (a source that gave up
// draining) is dropped without Done: not applied, so not acknowledged.
func (e *Engine) deliver(ev *detector.Event) {
	s := e.shardOf(ev.CallID)
	select {
	case s.in <- item{ev: ev}:
	case <-s.exited:
	}
}

func (e *Engine) shardOf(callID string) *shard {
	if len(e.shards) == 1 {
		return e.shards[0]
	}
	return e.shards[maphash.String(e.seed, callID)%uint64(len(e.shards))]
}

// Sync returns once every shard has applied the events delivered before the call and
// fired every deadline that is due by the clock's current time. Tests use it to step
// the engine deterministically. Once Run has returned it returns at once: the shards
// applied everything delivered before they stopped.
func (e *Engine) Sync(ctx context.Context) error {
	return e.barrier(ctx, item{})
}

// barrier sends it through every shard, after the events delivered before, and waits
// until each has handled it. It sends to all before it waits for any, so that the
// shards handle it side by side: a release takes as long as the slowest shard, not as
// long as all of them one after the other.
func (e *Engine) barrier(ctx context.Context, it item) error {
	dones := make([]chan struct{}, len(e.shards))
	for i, s := range e.shards {
		dones[i] = make(chan struct{})
		it.synced = dones[i]
		select {
		case s.in <- it:
		case <-s.exited: // waiting below ends at once
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i, s := range e.shards {
		select {
		case <-dones[i]:
		case <-s.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// admit counts a new call in, unless max-calls is reached.
func (e *Engine) admit() bool {
	if e.calls.Add(1) > e.maxCalls {
		e.calls.Add(-1)
		return false
	}
	return true
}
