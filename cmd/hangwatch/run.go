package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

const runSummary = `Run the sidecar: consume the voice pipeline's events from NATS and publish a hang
event when a user turn goes unanswered, and hang-resolved when the reply comes.
With no --nats-url it starts an embedded NATS server on --embedded-listen.`

// sidecarOptions are the flags of `hangwatch run`.
type sidecarOptions struct {
	conn                         *transport.ConnOptions
	embedded                     transport.EmbeddedOptions
	subjects                     *stringList
	det                          detector.Config
	maxCalls                     int64
	shards                       int
	hangSubject, resolvedSubject string
	hangTmpl, resolvedTmpl       wire.SubjectTemplate
	deadLetter                   string
	limits                       wire.Limits
	drainTimeout                 time.Duration
	logLevel, logFormat          string
	metricsListen                string

	// JetStream mode.
	jetstream                   bool
	stream, hangStream, durable string
	streamPerSubject            int64
	hangQueue                   int
}

func sidecarFlags(c *command) *sidecarOptions {
	o := &sidecarOptions{conn: connFlags(c), subjects: newStringList(transport.DefaultSubject)}
	fs := c.fs
	def := detector.DefaultConfig()
	lim := wire.DefaultLimits()
	fs.StringVar(&o.embedded.Listen, "embedded-listen", transport.DefaultEmbeddedListen, "host:port of the embedded NATS server (without --nats-url)")
	fs.StringVar(&o.embedded.User, "embedded-user", "", "user the embedded NATS server requires (with --embedded-password), for when it listens beyond loopback")
	fs.StringVar(&o.embedded.Password, "embedded-password", "", "password the embedded NATS server requires")
	fs.Var(o.subjects, "subject", "subject to consume; repeat the flag for several (environment: comma-separated)")
	fs.DurationVar(&o.det.Timeout, "timeout", def.Timeout, "turn timeout: a user turn unanswered this long hangs")
	fs.DurationVar(&o.det.MaxWait, "max-wait", def.MaxWait, "longest wait from the first user turn of a stretch; 0 disables it")
	fs.DurationVar(&o.det.MaxLag, "max-lag", def.MaxLag, "how far before its arrival a message's own timestamp is trusted")
	fs.DurationVar(&o.det.CallTTL, "call-ttl", def.CallTTL, "forget a call with no event for this long; ended calls are remembered this long")
	fs.Int64Var(&o.maxCalls, "max-calls", engine.DefaultMaxCalls, "most calls held at once; past it new calls are refused")
	fs.IntVar(&o.shards, "shards", 0, "engine shards (worker goroutines); 0: one per CPU")
	fs.StringVar(&o.hangSubject, "hang-subject", wire.DefaultHangSubject, "subject of hang events; placeholders {callId} {teamId} {assistantId}")
	fs.StringVar(&o.resolvedSubject, "resolved-subject", wire.DefaultResolvedSubject, "subject of hang-resolved events")
	fs.StringVar(&o.deadLetter, "dead-letter-subject", "", "republish bad input here, unchanged, with a Hangwatch-Bad-Input header")
	fs.IntVar(&o.limits.MaxBytes, "max-event-bytes", lim.MaxBytes, "larger events are bad input")
	fs.IntVar(&o.limits.MaxDepth, "max-event-depth", lim.MaxDepth, "events nested deeper are bad input")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "on shutdown, the longest wait, from the signal, for the subscription to drain and outputs to flush")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error; only debug logs message text")
	fs.StringVar(&o.logFormat, "log-format", "json", "json or console")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9464", "host:port serving /metrics, /healthz and /readyz; empty disables it")
	fs.BoolVar(&o.jetstream, "jetstream", false, "read events from a JetStream stream and publish hangs into one: nothing is lost across restarts")
	fs.StringVar(&o.stream, "stream", transport.DefaultStream, "with --jetstream: the events stream over --subject, created if missing")
	fs.Int64Var(&o.streamPerSubject, "stream-per-subject", 1, "with --jetstream: messages the events stream keeps per subject when it creates it; 1 fits the layout voice.events.<callId>.<type>")
	fs.StringVar(&o.hangStream, "hang-stream", transport.DefaultHangStream, "with --jetstream: the stream of hangs and resolutions, created if missing")
	fs.StringVar(&o.durable, "durable", transport.DefaultDurable, "with --jetstream: the durable consumer of the events; one per hangwatch")
	fs.IntVar(&o.hangQueue, "hang-queue", transport.DefaultSinkQueue, "with --jetstream: outputs waiting to be stored in the hang stream; past it detection waits")
	fs.StringVar(&o.embedded.StoreDir, "embedded-store-dir", filepath.Join(os.TempDir(), "hangwatch", "jetstream"), "with --jetstream and the embedded server: where it stores its streams")
	return o
}

// validate checks the flags against each other, as far as can be done before starting,
// and keeps the subject templates it parses.
func (o *sidecarOptions) validate() error {
	if err := o.det.Validate(); err != nil {
		return err
	}
	if o.maxCalls < 1 {
		return fmt.Errorf("--max-calls must be at least 1, got %d", o.maxCalls)
	}
	if o.shards < 0 {
		return fmt.Errorf("--shards must not be negative, got %d", o.shards)
	}
	for _, s := range o.subjects.values {
		if err := wire.ValidateSubject(s); err != nil {
			return fmt.Errorf("--subject: %w", err)
		}
	}
	if o.deadLetter != "" {
		if err := wire.ValidateSubject(o.deadLetter); err != nil {
			return fmt.Errorf("--dead-letter-subject: %w", err)
		}
		if strings.ContainsAny(o.deadLetter, "*>") {
			return fmt.Errorf("--dead-letter-subject: %q holds a wildcard; it is where bad input is published", o.deadLetter)
		}
		// A dead letter that comes back in would be rejected and dead-lettered again.
		if wire.Covers(o.subjects.values, o.deadLetter) {
			return fmt.Errorf("--dead-letter-subject %q is one --subject consumes", o.deadLetter)
		}
	}
	var err error
	if o.hangTmpl, err = wire.ParseSubjectTemplate(o.hangSubject); err != nil {
		return fmt.Errorf("--hang-subject: %w", err)
	}
	if o.resolvedTmpl, err = wire.ParseSubjectTemplate(o.resolvedSubject); err != nil {
		return fmt.Errorf("--resolved-subject: %w", err)
	}
	if o.limits.MaxBytes < 1 || o.limits.MaxDepth < 1 {
		return errors.New("--max-event-bytes and --max-event-depth must be at least 1")
	}
	if o.drainTimeout <= 0 {
		return fmt.Errorf("--drain-timeout must be above 0, got %v", o.drainTimeout)
	}
	if o.jetstream && (o.streamPerSubject < 1 || o.hangQueue < 1) {
		return fmt.Errorf("--stream-per-subject and --hang-queue must be at least 1, got %d and %d", o.streamPerSubject, o.hangQueue)
	}
	return nil
}

func runCmd(args []string, _, stderr io.Writer) error {
	c := newCommand("run", runSummary)
	o := sidecarFlags(c)
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	if err := o.validate(); err != nil {
		return usageError{c, err}
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return usageError{c, err}
	}
	defer log.Sync() //nolint:errcheck // nothing is left to report it to
	ctx, stop := signalContext(func(s os.Signal) {
		log.Info("shutting down: draining, a second signal exits at once", zap.Stringer("signal", s))
	})
	defer stop()
	sc, err := startSidecar(o, clock.Real(), log)
	if err != nil {
		return err
	}
	return sc.run(ctx)
}

// outputHeadroom is what a hang or hang-resolved adds to the snapshot it carries, with
// room to spare: the hang object, the placeholders of absent fields and the headers.
const outputHeadroom = 4096

// sidecar is a running hangwatch: NATS (embedded or not), the engine, its source and
// sink.
type sidecar struct {
	o        *sidecarOptions
	log      *zap.Logger
	embedded *transport.Embedded // nil with --nats-url
	conn     *transport.Conn
	engine   *engine.Engine
	metrics  *metricsServer // nil without --metrics-listen
	stats    sources        // what the metrics read
	// closeSink flushes the outputs the sink still holds (JetStream mode).
	closeSink func(context.Context) error
}

// startSidecar starts what `hangwatch run` runs, up to the engine, which run starts. It
// settles what the flags leave open: the number of shards, and an event size that the
// server's max payload can carry.
func startSidecar(o *sidecarOptions, clk clock.Clock, log *zap.Logger) (*sidecar, error) {
	sc := &sidecar{o: o, log: log}
	if o.shards == 0 {
		o.shards = runtime.GOMAXPROCS(0)
	}
	connOpts := *o.conn
	connOpts.Logger = log
	if connOpts.URL == "" {
		eo := o.embedded
		eo.JetStream, eo.Logger = o.jetstream, log
		emb, err := transport.StartEmbedded(eo)
		if err != nil {
			return nil, err
		}
		sc.embedded = emb
		connOpts.URL = emb.ClientURL()
		connOpts.User, connOpts.Password = eo.User, eo.Password
		log.Info("embedded NATS server listening", zap.String("url", emb.ClientURL()))
	}
	conn, err := transport.Connect(connOpts)
	if err != nil {
		sc.shutdownEmbedded()
		return nil, err
	}
	sc.conn = conn
	// A hang carries its snapshot and a few hundred bytes more: an event that fills the
	// server's max payload would make a hang the server refuses.
	if most := int(conn.NATS().MaxPayload()) - outputHeadroom; o.limits.MaxBytes > most && most > 0 {
		log.Info("--max-event-bytes lowered to what the server's max payload leaves room for",
			zap.Int("max_event_bytes", most), zap.Int64("server_max_payload", conn.NATS().MaxPayload()))
		o.limits.MaxBytes = most
	}
	so := transport.SourceOptions{
		Subjects: o.subjects.values, Limits: o.limits, DeadLetter: o.deadLetter,
		DrainTimeout: o.drainTimeout, Now: clk.Now, Logger: log,
	}
	sink := transport.SinkOptions{HangSubject: o.hangTmpl, ResolvedSubject: o.resolvedTmpl}
	var (
		source engine.Source
		output engine.Sink
	)
	if o.jetstream {
		source, output, err = sc.jetStream(so, sink)
	} else {
		src := transport.NewSource(conn, so)
		source, output = src, transport.NewSink(conn, sink)
		sc.stats.input, sc.stats.ready = src.Stats, src.Ready
	}
	reg := newRegistry()
	if err == nil {
		sc.stats.conn = conn
		sc.engine, err = engine.New(source, newObserved(output, clk, reg), engine.WithConfig(o.det), engine.WithClock(clk),
			engine.WithLogger(log), engine.WithShards(o.shards), engine.WithMaxCalls(o.maxCalls))
	}
	if err == nil && o.metricsListen != "" {
		sc.stats.engine = sc.engine
		sc.metrics, err = startMetrics(o.metricsListen, reg, sc.stats, log)
		if err != nil {
			err = fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
		defer cancel()
		sc.close(ctx)
		return nil, err
	}
	return sc, nil
}

// jetStream makes the source and sink of JetStream mode: the events stream and its
// durable consumer, and the hang stream.
func (sc *sidecar) jetStream(so transport.SourceOptions, sink transport.SinkOptions) (engine.Source, engine.Sink, error) {
	o := sc.o
	ctx, cancel := context.WithTimeout(context.Background(), o.conn.ConnectTimeout+10*time.Second)
	defer cancel()
	src, err := transport.NewJetStreamSource(ctx, sc.conn, so,
		transport.StreamOptions{Name: o.stream, PerSubject: o.streamPerSubject, MaxAge: o.det.CallTTL},
		transport.ConsumerOptions{Durable: o.durable})
	if err != nil {
		return nil, nil, err
	}
	out, err := transport.NewJetStreamSink(ctx, sc.conn, sink, transport.JetStreamSinkOptions{Stream: o.hangStream, Queue: o.hangQueue, Logger: sc.log})
	if err != nil {
		return nil, nil, err
	}
	sc.closeSink = out.Close
	sc.stats.input = func() transport.SourceStats { return src.Stats().SourceStats }
	sc.stats.ready, sc.stats.jsInput, sc.stats.jsSink = src.Ready, src.Stats, out.Stats
	return src, out, nil
}

// run runs the engine until ctx is done, then shuts down in order: the subscription
// drains, the engine applies what it received and publishes what is due, the
// connection flushes and closes, the embedded server stops. The shutdown has one
// deadline, the drain timeout after ctx is done (or after the engine stopped on its
// own), which each of these steps shares.
func (sc *sidecar) run(ctx context.Context) error {
	sc.log.Info("hangwatch running", zap.String("version", version),
		zap.Strings("subjects", sc.o.subjects.values), zap.Duration("timeout", sc.o.det.Timeout),
		zap.Duration("max_wait", sc.o.det.MaxWait), zap.Int("shards", sc.o.shards))
	var wg sync.WaitGroup
	if sc.metrics != nil {
		wg.Go(func() {
			if err := sc.metrics.serve(); err != nil {
				sc.log.Error("metrics server", zap.Error(err))
			}
		})
	}
	sd := newShutdown(sc.o.drainTimeout)
	running := make(chan struct{})
	wg.Go(func() { sc.watchShutdown(ctx, running, sd) })
	err := sc.engine.Run(ctx)
	sd.begin() // now, unless ctx began it: the engine may have stopped on its own
	close(running)
	if sc.metrics != nil {
		sc.metrics.shutdown()
	}
	wg.Wait()
	st := sc.engine.Stats()
	sc.log.Info("engine stopped", zap.Int64("events", st.Events), zap.Int64("hangs", st.Hangs()),
		zap.Int64("resolved", st.Resolved), zap.Int64("calls", st.Calls))
	closeCtx, cancel := sd.context()
	defer cancel()
	if cerr := sc.close(closeCtx); err == nil {
		err = cerr
	}
	return err
}

// watchShutdown begins the shutdown once ctx is done, unless running is closed first.
// In JetStream mode a shard may then wait for room in the sink's queue, which only the
// hang stream frees: should it not by the deadline, the sink gives up on those outputs
// (a restart detects the stalls still unanswered again), a Publish waiting for room
// returns, and the engine can stop.
func (sc *sidecar) watchShutdown(ctx context.Context, running <-chan struct{}, sd *shutdown) {
	select {
	case <-running:
		return
	case <-ctx.Done():
	}
	sd.begin()
	if sc.closeSink == nil {
		return
	}
	deadline, cancel := sd.context()
	defer cancel()
	select {
	case <-running:
	case <-deadline.Done():
		sc.log.Warn("shutdown: the hang stream takes no more outputs; giving up on those waiting",
			zap.Duration("drain_timeout", sc.o.drainTimeout))
		_ = sc.closeSink(deadline) // reported again by close
	}
}

// shutdown is the one deadline of a shutdown: the drain timeout after it begins.
type shutdown struct {
	timeout  time.Duration
	once     sync.Once
	begun    chan struct{}
	deadline time.Time // set before begun is closed
}

func newShutdown(timeout time.Duration) *shutdown {
	return &shutdown{timeout: timeout, begun: make(chan struct{})}
}

// begin begins the shutdown, the first time it is called.
func (s *shutdown) begin() {
	s.once.Do(func() {
		s.deadline = time.Now().Add(s.timeout)
		close(s.begun)
	})
}

// context returns a context that is done at the deadline, once the shutdown has begun.
func (s *shutdown) context() (context.Context, context.CancelFunc) {
	<-s.begun
	return context.WithDeadline(context.Background(), s.deadline)
}

// close flushes the outputs the sink still holds, closes the connection, flushing what
// was published, until ctx is done; then it stops the embedded server.
func (sc *sidecar) close(ctx context.Context) error {
	var err error
	if sc.closeSink != nil {
		if err = sc.closeSink(ctx); err != nil {
			sc.log.Error("outputs left unpublished: a restart detects the stalls still unanswered again", zap.Error(err))
		}
	}
	if cerr := sc.conn.Close(ctx); err == nil {
		err = cerr
	}
	sc.shutdownEmbedded()
	return err
}

func (sc *sidecar) shutdownEmbedded() {
	if sc.embedded != nil {
		sc.embedded.Shutdown()
	}
}
