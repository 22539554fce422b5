// Package engine owns the live calls. It takes the raw input of a Source through a
// pipeline that decodes messages side by side and keeps each call's order, shards the
// calls by id over worker goroutines (each owns its calls and one deadline scheduler, so
// the hot path takes no lock), and fires a deadline only once the Source's marks show
// that the input has caught up with it (SPEC §2, "Evidence before verdict"). Every hang,
// hang-resolved and hang-unresolved goes to a Sink.
package engine

import (
	"context"
	"errors"
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// ErrStarted is returned by Run when the engine runs already, or has run.
var ErrStarted = errors.New("engine: already started")

// Engine is the hang detection engine. Create it with New and start it with Run.
type Engine struct {
	cfg        detector.Config
	thresholds Thresholds
	clock      clock.Clock
	mono       clock.Mono
	wall       func() time.Time
	log        *zap.Logger
	limited    *zap.Logger // at most one line per message and second: for what a publisher can flood
	src        Source
	sink       Sink
	decoder    Decoder
	pipe       *pipeline
	shards     []*shard
	seed       maphash.Seed
	workers    int

	limits      *limits
	maxEnded    int
	tombs       atomic.Int64 // ended calls remembered, all shards (tombs.total)
	maxRetained int64
	packAfter   int64         // ns; < 0: never
	packs       chan *packJob // to the packer (packer.go)
	retained    atomic.Int64  // payload bytes kept by all calls
	gaps        gaps
	teams       labels // hangs by team
	models      labels // hangs by provider/model
	stats       engineCounters

	started         atomic.Bool
	shapelessLogged atomic.Bool // the first call whose events drive nothing is logged
	// born is the engine time of New: before the first mark, the input's watermark lag
	// runs from there.
	born int64
}

type engineCounters struct {
	typ    [detector.TypeOutput + 1]atomic.Int64 // events decoded, by type
	bad    atomic.Int64                          // messages that were bad input
	probes atomic.Int64                          // marks asked of the source
}

// New returns an engine that reads src, decodes with d and publishes to sink. The
// configuration is validated here.
func New(src Source, d Decoder, sink Sink, opts ...Option) (*Engine, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.cfg.Validate(); err != nil {
		return nil, err
	}
	if o.thresholds == nil {
		o.thresholds = &fixed{cfg: o.cfg}
	}
	if o.limited == nil {
		o.limited = o.log
	}
	if o.wall == nil {
		o.wall = o.clock.Now
	}
	e := &Engine{
		cfg:         o.cfg,
		thresholds:  o.thresholds,
		clock:       o.clock,
		mono:        clock.NewMono(o.clock),
		wall:        o.wall,
		log:         o.log,
		limited:     o.limited,
		src:         src,
		sink:        sink,
		decoder:     d,
		seed:        maphash.MakeSeed(),
		workers:     o.workers,
		limits:      newLimits(o.maxCalls, o.maxCallsPerTeam),
		maxEnded:    o.maxEnded,
		maxRetained: o.maxRetained,
		packAfter:   int64(o.packAfter),
		packs:       make(chan *packJob, packQueue),
	}
	e.born = e.mono.Now()
	e.shards = make([]*shard, o.shards)
	for i := range e.shards {
		e.shards[i] = newShard(e)
	}
	e.pipe = newPipeline(e, o.inflight, o.depth)
	return e, nil
}

// Run runs the engine until ctx is done and the source has returned: it then applies
// every message the source delivered, publishes every hang that is due and evidenced,
// and returns once every goroutine it started has exited. It returns the source's error.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	var shards, pipe sync.WaitGroup
	for _, s := range e.shards {
		shards.Go(s.run)
	}
	srcDone := make(chan struct{})
	pipe.Go(func() { e.pipe.run(e.workers, srcDone) })
	var packing sync.WaitGroup
	packing.Go(func() { packer(e.packs) })
	err := e.src.Run(ctx, e.pipe)
	close(srcDone)
	pipe.Wait() // every message delivered is handed to its shard
	e.pipe.budget.close()
	for _, s := range e.shards {
		s.q.close()
	}
	shards.Wait()
	close(e.packs) // the shards, which hand it copies, have returned
	packing.Wait()
	return err
}

// probe asks the source for a mark, when it can give one.
func (e *Engine) probe() {
	if p, ok := e.src.(Prober); ok {
		e.stats.probes.Add(1)
		p.Probe()
	}
}

func (e *Engine) shardOf(callID string) *shard { return e.shardAt(hashID(e.seed, callID)) }

// shardAt returns the shard of the call whose id hashes to h (hashID).
func (e *Engine) shardAt(h uint64) *shard { return e.shards[h%uint64(len(e.shards))] }

// Sync returns once every shard has applied the messages delivered before the call and
// fired every deadline that is due by the clock's current time and covered by a mark.
// Tests use it to step the engine deterministically. Once Run has returned it returns
// at once.
func (e *Engine) Sync(ctx context.Context) error {
	// A barrier travels the pipeline like a mark, after every message delivered before.
	b := &barrier{done: make(chan struct{})}
	b.left.Store(int32(len(e.shards)))
	e.pipe.mu.Lock()
	if e.pipe.closed {
		e.pipe.mu.Unlock()
		return nil
	}
	j := e.pipe.pool.Get().(*job)
	j.barrier, j.mark = b, e.pipe.mark
	j.ready <- struct{}{}
	e.pipe.enqueue(j)
	e.pipe.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clone copies a string that may alias a message's bytes.
func clone(s string) string { return strings.Clone(s) }

// defaultShards is one shard per CPU.
func defaultShards() int { return runtime.GOMAXPROCS(0) }
