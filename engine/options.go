package engine

import (
	"runtime"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// DefaultMaxCalls is the default of --max-calls.
const DefaultMaxCalls = 1_000_000

// DefaultQueue is the default number of events a shard holds before delivery blocks.
const DefaultQueue = 4096

type options struct {
	cfg      detector.Config
	clock    clock.Clock
	log      *zap.Logger
	shards   int
	maxCalls int64
	queue    int
}

func defaultOptions() options {
	return options{
		cfg:      detector.DefaultConfig(),
		clock:    clock.Real(),
		log:      zap.NewNop(),
		shards:   runtime.GOMAXPROCS(0),
		maxCalls: DefaultMaxCalls,
		queue:    DefaultQueue,
	}
}

// Option configures an Engine.
type Option func(*options)

// WithConfig sets the detection thresholds (default detector.DefaultConfig).
func WithConfig(cfg detector.Config) Option { return func(o *options) { o.cfg = cfg } }

// WithClock sets the clock (default the real clock). Tests pass a clockwork FakeClock.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (default a no-op logger).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithShards sets the number of shards (default GOMAXPROCS; values below 1 mean 1).
func WithShards(n int) Option { return func(o *options) { o.shards = max(n, 1) } }

// WithMaxCalls sets how many calls the engine holds at most (default DefaultMaxCalls):
// past it, events of new calls are refused while known calls keep working.
func WithMaxCalls(n int64) Option { return func(o *options) { o.maxCalls = n } }

// WithQueue sets how many events each shard holds before delivery blocks (default
// DefaultQueue).
func WithQueue(n int) Option { return func(o *options) { o.queue = max(n, 0) } }
