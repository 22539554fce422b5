package engine

import (
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// Defaults of the engine's bounds (SPEC §2, Bounds).
const (
	// DefaultMaxCalls is the default of --max-calls: live calls held at once.
	DefaultMaxCalls = 1_000_000
	// DefaultMaxEnded is the default of --max-ended: ended calls remembered.
	DefaultMaxEnded = 1_000_000
	// DefaultMaxRetainedBytes is the default of --max-retained-bytes: 1 GiB.
	DefaultMaxRetainedBytes = 1 << 30
	// DefaultPackAfter is how long a call keeps a copy for its outputs before it is
	// packed (WithPackAfter): longer than a stream of events that replaces its copies
	// at once takes between two (nothing to pack), shorter than a reply takes (an LLM
	// answers in 0.5-2.5 s, so the copy of a turn waiting for one is packed whichever
	// the delay: a shorter one only holds the received bytes for less time).
	DefaultPackAfter = 50 * time.Millisecond
	// DefaultGCPercent is the collector's GOGC that hangwatch run sets unless GOGC is in
	// the environment. The engine's live heap is small beside what passes through it: each
	// event's bytes are garbage once applied, so at Go's default of 100 the collector runs
	// two to three times a second under load (the stress load: 66 MB/s of events over a
	// 31-51 MB live heap), and each collection's pauses and assists hold up the proofs
	// and hangs on their way. 200 collects half as often, for up to a third more heap;
	// a memory limit (hangwatch run sets one from the budgets) still caps it.
	DefaultGCPercent = 200
	// DefaultInflightBytes bounds the bytes of the messages in the engine's pipeline:
	// past it, the source waits and the input backs up in NATS.
	DefaultInflightBytes = 64 << 20
	// DefaultDepth bounds the number of messages in the pipeline.
	DefaultDepth = 8192
)

type options struct {
	cfg             detector.Config
	thresholds      Thresholds
	clock           clock.Clock
	wall            func() time.Time
	log, limited    *zap.Logger
	shards, workers int
	maxCalls        int64
	maxCallsPerTeam int64
	maxEnded        int
	maxRetained     int64
	packAfter       time.Duration
	inflight        int64
	depth           int
}

func defaultOptions() options {
	return options{
		cfg:         detector.DefaultConfig(),
		clock:       clock.Real(),
		log:         zap.NewNop(),
		shards:      defaultShards(),
		workers:     defaultShards(),
		maxCalls:    DefaultMaxCalls,
		maxEnded:    DefaultMaxEnded,
		maxRetained: DefaultMaxRetainedBytes,
		packAfter:   DefaultPackAfter,
		inflight:    DefaultInflightBytes,
		depth:       DefaultDepth,
	}
}

// Option configures an Engine.
type Option func(*options)

// WithConfig sets the detection thresholds and bounds (default detector.DefaultConfig).
// They apply to every call unless WithThresholds says otherwise for its team or
// assistant.
func WithConfig(cfg detector.Config) Option { return func(o *options) { o.cfg = cfg } }

// WithThresholds sets per team and assistant thresholds (default: the configuration's,
// for every call).
func WithThresholds(t Thresholds) Option { return func(o *options) { o.thresholds = t } }

// WithClock sets the clock (default the real clock). Tests pass a clockwork FakeClock.
// Deadlines run on its monotonic reading.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithWall sets how the wall clock is read, to interpret message timestamps and stamp
// outputs (default the clock's Now). Tests step it to show that deadlines do not follow.
func WithWall(wall func() time.Time) Option { return func(o *options) { o.wall = wall } }

// WithLogger sets the logger (default a no-op logger).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithLimitedLogger sets the logger of what a publisher can flood: bad input, refused
// calls, publish errors (default the logger). The caller makes it rate-limited.
func WithLimitedLogger(l *zap.Logger) Option { return func(o *options) { o.limited = l } }

// WithShards sets the number of shards (default GOMAXPROCS; values below 1 mean 1).
func WithShards(n int) Option { return func(o *options) { o.shards = max(n, 1) } }

// WithDecoders sets the number of decode workers (default GOMAXPROCS; at least 1).
func WithDecoders(n int) Option { return func(o *options) { o.workers = max(n, 1) } }

// WithMaxCalls sets how many live calls the engine holds at most (default
// DefaultMaxCalls): past it, events of new calls are refused while known calls keep
// working. Ended calls do not count.
func WithMaxCalls(n int64) Option { return func(o *options) { o.maxCalls = n } }

// WithMaxCallsPerTeam sets how many live calls one team may hold (default 0: no limit).
func WithMaxCallsPerTeam(n int64) Option { return func(o *options) { o.maxCallsPerTeam = n } }

// WithMaxEnded sets how many ended calls are remembered (default DefaultMaxEnded).
func WithMaxEnded(n int) Option { return func(o *options) { o.maxEnded = max(n, 1) } }

// WithMaxRetainedBytes sets the budget of the bytes calls keep for their outputs
// (default DefaultMaxRetainedBytes): past it, a newly armed call keeps only the tail of
// its history.
func WithMaxRetainedBytes(n int64) Option { return func(o *options) { o.maxRetained = n } }

// WithPackAfter packs (compresses with s2) the copy of what its outputs carry that an
// armed or hung call keeps, once it has kept it for d (default DefaultPackAfter): a copy
// replaced or let go sooner (a burst of updates, a quick answer) is not worth the CPU.
// An output unpacks the copy it carries. 0 packs every copy as it is made; a negative d
// never packs.
func WithPackAfter(d time.Duration) Option { return func(o *options) { o.packAfter = d } }

// WithInflight bounds the messages in the pipeline, in bytes and in number (defaults
// DefaultInflightBytes and DefaultDepth).
func WithInflight(bytes int64, depth int) Option {
	return func(o *options) { o.inflight, o.depth = max(bytes, 1), max(depth, 1) }
}
