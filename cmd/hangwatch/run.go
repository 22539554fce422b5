package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/logs"
	"github.com/hangwatch/hangwatch/internal/metrics"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/transport/webhook"
	"github.com/hangwatch/hangwatch/wire"
)

const runSummary = `Run the sidecar: consume the voice pipeline's events from NATS and publish a hang
event when a user turn goes unanswered, hang-resolved when the reply comes, and
hang-unresolved when the caller gives up in silence.
With no --nats-url it starts an embedded NATS server on --embedded-listen.`

// sidecarOptions are the flags of `hangwatch run`.
type sidecarOptions struct {
	conn                                            *transport.ConnOptions
	embedded                                        transport.EmbeddedOptions
	subjects                                        *stringList
	det                                             detector.Config
	maxCalls, maxCallsPerTeam                       int64
	maxEnded                                        int
	maxRetained, maxInflight, maxPending            *byteSize
	packAfter                                       time.Duration
	shards                                          int
	hangSubject, resolvedSubject, unresolvedSubject string
	hangTmpl, resolvedTmpl, unresolvedTmpl          wire.SubjectTemplate
	deadLetter                                      string
	maxEventBytes                                   *byteSize
	maxEventDepth                                   int
	drainTimeout                                    time.Duration
	logLevel, logFormat                             string
	metricsListen                                   string
	configBucket                                    string

	// JetStream mode.
	jetstream                   bool
	stream, hangStream, durable string
	streamPerSubject            int64
	hangQueue, hangWindow       int
	replicas                    int

	// A group (SPEC §6).
	group                      string
	partitions, partitionToken int
	partitioning               transport.Partitioning

	ingest  *ingestOptions
	deliver *deliverOptions
}

func sidecarFlags(c *command) *sidecarOptions {
	o := &sidecarOptions{conn: connFlags(c), subjects: newStringList(transport.DefaultSubject),
		maxRetained: newByteSize(engine.DefaultMaxRetainedBytes), maxInflight: newByteSize(engine.DefaultInflightBytes),
		maxPending: newByteSize(transport.DefaultPendingBytes), maxEventBytes: newByteSize(0)}
	fs := c.fs
	def := detector.DefaultConfig()
	fs.StringVar(&o.embedded.Listen, "embedded-listen", transport.DefaultEmbeddedListen, "host:port of the embedded NATS server (without --nats-url)")
	fs.StringVar(&o.embedded.User, "embedded-user", "", "user the embedded NATS server requires (with --embedded-password), for when it listens beyond loopback")
	fs.StringVar(&o.embedded.Password, "embedded-password", "", "password the embedded NATS server requires")
	fs.Var(o.subjects, "subject", "subject to consume; repeat the flag for several (environment: comma-separated)")
	fs.DurationVar(&o.det.Timeout, "timeout", def.Timeout, "turn timeout: a user turn unanswered this long hangs")
	fs.DurationVar(&o.det.MaxWait, "max-wait", def.MaxWait, "longest wait from the first user turn of a stretch; 0 disables it")
	fs.DurationVar(&o.det.ToolTimeout, "tool-timeout", 0, "the turn timeout while the stretch awaits a tool's result; 0: --timeout")
	fs.DurationVar(&o.det.MaxLag, "max-lag", def.MaxLag, "how far before its arrival a message's own timestamp is trusted; below --timeout")
	fs.DurationVar(&o.det.CallTTL, "call-ttl", def.CallTTL, "forget a call with no event for this long; ended calls are remembered at least this long")
	fs.StringVar(&o.configBucket, "config-bucket", "", "NATS key-value bucket of thresholds per team and assistant (keys team.<id>, assistant.<id>), watched live; created if missing")
	fs.Int64Var(&o.maxCalls, "max-calls", engine.DefaultMaxCalls, "most live calls held at once; past it new calls are refused (ended calls do not count)")
	fs.Int64Var(&o.maxCallsPerTeam, "max-calls-per-team", 0, "most live calls of one team; 0: no limit")
	fs.IntVar(&o.maxEnded, "max-ended", engine.DefaultMaxEnded, "ended calls remembered, so that late events are ignored; the oldest are forgotten first")
	fs.Var(o.maxRetained, "max-retained-bytes", "bytes calls keep for their outputs (67108864, 64MiB, 1GiB, 500MB); past it a newly armed call keeps only the tail of its history")
	fs.DurationVar(&o.packAfter, "pack-after", engine.DefaultPackAfter, "compress (s2) the history an armed or hung call keeps once it has kept it this long: about half the memory, for some CPU; 0: at once; -1s: never")
	fs.Var(o.maxInflight, "max-inflight-bytes", "bytes of events in the engine's pipeline; past it the input waits in NATS")
	fs.Var(o.maxPending, "max-pending-bytes", "core NATS: bytes a subscription buffers while the engine is behind; past it NATS drops events (an input gap)")
	fs.IntVar(&o.shards, "shards", 0, "engine shards (worker goroutines); 0: one per CPU")
	fs.StringVar(&o.hangSubject, "hang-subject", wire.DefaultHangSubject, "subject of hang events; placeholders {callId} {teamId} {assistantId}")
	fs.StringVar(&o.resolvedSubject, "resolved-subject", wire.DefaultResolvedSubject, "subject of hang-resolved events")
	fs.StringVar(&o.unresolvedSubject, "unresolved-subject", wire.DefaultUnresolvedSubject, "subject of hang-unresolved events")
	fs.StringVar(&o.deadLetter, "dead-letter-subject", "", "republish bad input here, with a Hangwatch-Bad-Input header")
	fs.Var(o.maxEventBytes, "max-event-bytes", "larger events are bad input; 0: the server's max payload")
	fs.IntVar(&o.maxEventDepth, "max-event-depth", wire.DefaultLimits().MaxDepth, "events nested deeper are bad input")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "on shutdown, the longest wait, from the signal, for the subscription to drain and outputs to flush")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error; only debug logs message text")
	fs.StringVar(&o.logFormat, "log-format", "json", "json or console")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9464", "host:port serving /metrics, /healthz and /readyz; empty disables it")
	fs.BoolVar(&o.jetstream, "jetstream", false, "read events from a JetStream stream and publish outputs into one: nothing is lost or repeated across restarts")
	fs.StringVar(&o.stream, "stream", transport.DefaultStream, "with --jetstream: the events stream over --subject, created if missing")
	fs.Int64Var(&o.streamPerSubject, "stream-per-subject", 2, "with --jetstream: messages the events stream keeps per subject when it creates it, all read by a rebuild when more than one; 2 fits the layout voice.events.<callId>.<type> and a producer that repeats an older snapshot late")
	fs.StringVar(&o.hangStream, "hang-stream", transport.DefaultHangStream, "with --jetstream: the stream of the outputs, created if missing; it republishes each output once on its subject")
	fs.StringVar(&o.durable, "durable", transport.DefaultDurable, "with --jetstream: the durable consumer of the events; one per hangwatch (with --group: the start of the partitions' consumer names, <durable>-<group>-<n>)")
	fs.IntVar(&o.hangQueue, "hang-queue", transport.DefaultSinkQueue, "with --jetstream: outputs waiting to be stored in the hang stream; past it detection waits")
	fs.IntVar(&o.hangWindow, "hang-window", transport.DefaultPublishWindow, "with --jetstream: outputs awaiting the hang stream's ack at once")
	fs.IntVar(&o.replicas, "replicas", 1, "replication of the streams and bucket hangwatch creates; 3 in a 3-node cluster")
	fs.StringVar(&o.group, "group", "", "with --jetstream: the group of instances that share the calls, by partitions of the events stream; letters, digits, - and _")
	fs.IntVar(&o.partitions, "partitions", transport.DefaultPartitions, "with --group: partitions of the calls, fixed for the life of the events stream; a member consumes whole partitions")
	fs.IntVar(&o.partitionToken, "partition-token", transport.DefaultPartitionToken, "with --group: the token of --subject (from 1) that holds the call id; 3 for voice.events.<callId>.<type>")
	fs.StringVar(&o.embedded.StoreDir, "embedded-store-dir", transport.DefaultStoreDir(), "with --jetstream and the embedded server: where it keeps its streams (in a folder jetstream inside it)")
	o.ingest = ingestFlags(fs)
	o.deliver = deliverFlags(fs)
	return o
}

// validate checks the flags against each other, as far as can be done before starting,
// and keeps the subject templates it parses.
func (o *sidecarOptions) validate() error {
	if err := o.det.Validate(); err != nil {
		return err
	}
	switch {
	case o.maxCalls < 1:
		return fmt.Errorf("--max-calls must be at least 1, got %d", o.maxCalls)
	case o.maxCallsPerTeam < 0:
		return fmt.Errorf("--max-calls-per-team must not be negative, got %d", o.maxCallsPerTeam)
	case o.maxEnded < 1:
		return fmt.Errorf("--max-ended must be at least 1, got %d", o.maxEnded)
	case *o.maxRetained < 1 || *o.maxInflight < 1 || *o.maxPending < 1:
		return errors.New("--max-retained-bytes, --max-inflight-bytes and --max-pending-bytes must be at least 1 byte")
	case o.shards < 0:
		return fmt.Errorf("--shards must not be negative, got %d", o.shards)
	case *o.maxEventBytes < 0 || o.maxEventDepth < 1:
		return errors.New("--max-event-bytes must not be negative, and --max-event-depth must be at least 1")
	case o.drainTimeout <= 0:
		return fmt.Errorf("--drain-timeout must be above 0, got %v", o.drainTimeout)
	case o.replicas < 1 || o.replicas > 5:
		return fmt.Errorf("--replicas must be between 1 and 5, got %d", o.replicas)
	case o.jetstream && (o.streamPerSubject < 1 || o.hangQueue < 1 || o.hangWindow < 1):
		return fmt.Errorf("--stream-per-subject, --hang-queue and --hang-window must be at least 1, got %d, %d and %d", o.streamPerSubject, o.hangQueue, o.hangWindow)
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
	for _, t := range []struct {
		flag string
		raw  string
		tmpl *wire.SubjectTemplate
	}{{"--hang-subject", o.hangSubject, &o.hangTmpl}, {"--resolved-subject", o.resolvedSubject, &o.resolvedTmpl},
		{"--unresolved-subject", o.unresolvedSubject, &o.unresolvedTmpl}} {
		var err error
		if *t.tmpl, err = wire.ParseSubjectTemplate(t.raw); err != nil {
			return fmt.Errorf("%s: %w", t.flag, err)
		}
	}
	if err := o.validateGroup(); err != nil {
		return err
	}
	if err := o.ingest.validate(o.subjects.values); err != nil {
		return err
	}
	return o.deliver.validate()
}

// validateGroup checks the flags of a group, and keeps the partitioning they describe.
func (o *sidecarOptions) validateGroup() error {
	if o.group == "" {
		return nil
	}
	switch {
	case !o.jetstream:
		return errors.New("--group needs --jetstream: the members share the calls through the events stream")
	case len(o.subjects.values) != 1:
		return fmt.Errorf("--group reads one --subject, whose call id token partitions the calls; got %d", len(o.subjects.values))
	}
	if err := transport.ValidateGroupName(o.group); err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	var err error
	o.partitioning, err = transport.NewPartitioning(o.subjects.values[0], o.partitions, o.partitionToken)
	if err != nil {
		return fmt.Errorf("--subject, --partitions and --partition-token: %w", err)
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
	for _, w := range c.envWarnings(os.Environ()) {
		log.Warn(w)
	}
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

// wire's payloads are what the engine keeps and reads the model of.
var (
	_ engine.Retainer = (*wire.Payload)(nil)
	_ engine.Modeled  = (*wire.Payload)(nil)
)

// sidecar is a running hangwatch: NATS (embedded or not), the engine, its source and
// sink, and what runs beside them.
type sidecar struct {
	o        *sidecarOptions
	log      *zap.Logger
	embedded *transport.Embedded // nil with --nats-url
	conn     *transport.Conn
	engine   *engine.Engine
	ready    func() (bool, string)
	stats    metrics.Sources // what the metrics read
	probe    func()          // asks the source for a mark (engine.Prober)
	metrics  *metrics.Server // nil without --metrics-listen
	ingestLn net.Listener    // the HTTP ingest's, nil without --http-listen
	// Run beside the engine until it stops, each by Run(ctx); front (the HTTP ingest)
	// stops as soon as the shutdown begins, so that no event is taken in meanwhile.
	// beside stops before the NATS connection closes; outlast, which needs no NATS (the
	// metrics, core mode's webhook deliverer), after it, once the deliveries are done.
	beside, front, outlast []runner
	// jsSink is the JetStream sink, which outlives the engine to publish what it made.
	jsSink  *transport.JetStreamSink
	abandon func(context.Context) // undoes the setup of a start that failed
	// leave tells a group that this member leaves, once its outputs are stored.
	leave func(context.Context)
	// delivering is core mode's webhook deliverer: a shutdown waits for what it holds,
	// up to its deadline, before stopping it (nil without --deliver-url, or in
	// JetStream mode, where what is left is delivered after a restart).
	delivering *webhook.Deliverer
	// failed says which part running beside the engine stopped with an error (the
	// webhook delivery's consumer deleted, say): the sidecar is not ready any more.
	failed atomic.Pointer[string]
}

// runner is something that runs until its context is done.
type runner struct {
	name string
	run  func(context.Context) error
}

// startSidecar starts what `hangwatch run` runs, up to the engine, which run starts. It
// settles what the flags leave open: the number of shards, and an event size that the
// server's max payload can carry.
func startSidecar(o *sidecarOptions, clk clock.Clock, log *zap.Logger) (sc *sidecar, err error) {
	sc = &sidecar{o: o, log: log}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
			defer cancel()
			if sc.abandon != nil {
				sc.abandon(ctx)
			}
			if sc.ingestLn != nil {
				sc.ingestLn.Close()
			}
			sc.close(ctx)
		}
	}()
	if o.shards == 0 {
		o.shards = runtime.GOMAXPROCS(0)
	}
	connOpts := *o.conn
	limited := logs.RateLimited(log) // for what a publisher can flood
	connOpts.Logger, connOpts.Limited = log, limited
	if connOpts.URL == "" {
		eo := o.embedded
		eo.JetStream, eo.Logger = o.jetstream || o.configBucket != "", log
		emb, err := transport.StartEmbedded(eo)
		if err != nil {
			return sc, err
		}
		sc.embedded = emb
		connOpts.URL = emb.ClientURL()
		connOpts.User, connOpts.Password = eo.User, eo.Password
		log.Info("embedded NATS server listening", zap.String("url", emb.ClientURL()))
		if eo.Unprotected() {
			log.Warn("the embedded NATS server listens beyond loopback and requires no user: anyone who reaches it can read and publish events; set --embedded-user and --embedded-password", zap.String("listen", eo.Listen))
		}
	}
	conn, err := transport.Connect(connOpts)
	if err != nil {
		return sc, err
	}
	sc.conn = conn
	limits := wire.Limits{MaxBytes: int(*o.maxEventBytes), MaxDepth: o.maxEventDepth}
	if payload := int(conn.NATS().MaxPayload()); limits.MaxBytes == 0 || limits.MaxBytes > payload {
		if limits.MaxBytes > payload {
			log.Warn("--max-event-bytes is above the server's max payload, which no event can exceed",
				zap.Int("max_event_bytes", limits.MaxBytes), zap.Int("server_max_payload", payload))
		}
		limits.MaxBytes = payload
	}
	setMemoryLimit(o, log)
	setGCPercent(log)

	ctx, cancel := context.WithTimeout(context.Background(), o.conn.ConnectTimeout+30*time.Second)
	defer cancel()
	opts := []engine.Option{engine.WithConfig(o.det), engine.WithClock(clk), engine.WithLogger(log), engine.WithLimitedLogger(limited),
		engine.WithShards(o.shards), engine.WithDecoders(o.shards), engine.WithMaxCalls(o.maxCalls),
		engine.WithMaxCallsPerTeam(o.maxCallsPerTeam), engine.WithMaxEnded(o.maxEnded),
		engine.WithMaxRetainedBytes(int64(*o.maxRetained)), engine.WithPackAfter(o.packAfter), engine.WithInflight(int64(*o.maxInflight), engine.DefaultDepth)}
	sources := metrics.Sources{Conn: conn}
	if o.configBucket != "" {
		th, err := transport.NewThresholds(ctx, conn, o.configBucket, o.replicas, o.det, log, limited)
		if err != nil {
			return sc, fmt.Errorf("--config-bucket: %w", err)
		}
		opts = append(opts, engine.WithThresholds(th))
		sources.Thresholds = th.Stats
		sc.beside = append(sc.beside, runner{"thresholds", th.Run})
	}

	so := transport.SourceOptions{Subjects: o.subjects.values, DeadLetter: o.deadLetter, DrainTimeout: o.drainTimeout,
		PendingBytes: int(*o.maxPending), Now: clk.Now, Logger: log, Limited: limited}
	sinkOpts := transport.SinkOptions{HangSubject: o.hangTmpl, ResolvedSubject: o.resolvedTmpl, UnresolvedSubject: o.unresolvedTmpl}
	var (
		source engine.Source
		output engine.Sink
	)
	delivered := newDeliverMetrics()
	if o.deliver.enabled() {
		sources.Extra = append(sources.Extra, delivered)
	}
	if o.jetstream {
		streamOpts := transport.StreamOptions{Name: o.stream, PerSubject: o.streamPerSubject, MaxAge: o.det.CallTTL, Replicas: o.replicas}
		var ready func() (bool, string)
		if o.group != "" {
			src, err := transport.NewGroupSource(ctx, conn, so, streamOpts, transport.GroupOptions{
				Name: o.group, Partitioning: o.partitioning, Durable: o.durable,
				// A partition is handed over once what the engine made of its calls is
				// stored: the shards have dropped them, and the sink has published the rest.
				Settle: func(ctx context.Context) error {
					if err := sc.engine.Sync(ctx); err != nil {
						return err
					}
					return sc.jsSink.Flush(ctx)
				},
			})
			if err != nil {
				return sc, err
			}
			source, sc.leave = src, src.Leave
			sources.JetStream, sources.Partitions = src.JetStreamStats, src.Owned
			ready = src.Ready
		} else {
			src, err := transport.NewJetStreamSource(ctx, conn, so, streamOpts, transport.ConsumerOptions{Durable: o.durable})
			if err != nil {
				return sc, err
			}
			sc.abandon = src.Abandon
			source, sources.JetStream = src, src.Stats
			ready = func() (bool, string) {
				if !src.Ready() {
					return false, "not consuming live yet (replaying the stored calls, or the stream has no leader), or draining"
				}
				return true, ""
			}
		}
		sink, err := transport.NewJetStreamSink(ctx, conn, sinkOpts, transport.JetStreamSinkOptions{
			Stream: o.hangStream, Queue: o.hangQueue, Window: o.hangWindow, Replicas: o.replicas, Logger: log, Limited: limited})
		if err != nil {
			return sc, err
		}
		output, sc.jsSink = sink, sink
		sources.Sink, sources.Fitted = sink.Stats, sink.Fitted
		if p, ok := source.(engine.Prober); ok {
			sc.probe = p.Probe
		}
		if o.deliver.enabled() {
			// Built before the engine publishes anything: its consumer delivers what is
			// stored from now on, and resumes where it stood after a restart.
			d, err := o.deliver.jetStream(ctx, conn.NATS(), o.hangStream, transport.StoreSubjects(sinkOpts.Wildcards()), log, delivered.observe)
			if err != nil {
				return sc, fmt.Errorf("--deliver-url: %w", err)
			}
			delivered.stats = d.Stats
			sc.beside = append(sc.beside, runner{"webhook delivery", d.Run})
		}
		// A stream without a leader stores and delivers nothing: not ready meanwhile.
		health, err := transport.NewStreamHealth(conn, o.stream, o.hangStream)
		if err != nil {
			return sc, err
		}
		sc.beside = append(sc.beside, runner{"stream health", health.Run})
		sc.ready = func() (bool, string) {
			if ok, why := health.Healthy(); !ok {
				return false, why
			}
			return ready()
		}
	} else {
		if o.deliver.enabled() {
			d, err := o.deliver.core(log, delivered.observe)
			if err != nil {
				return sc, fmt.Errorf("--deliver-url: %w", err)
			}
			delivered.stats = d.Stats
			sinkOpts.Tap = d.Deliver
			sc.delivering = d
			sc.outlast = append(sc.outlast, runner{"webhook delivery", d.Run})
		}
		src, sink := transport.NewSource(conn, so), transport.NewSink(conn, sinkOpts)
		source, output, sc.probe = src, sink, src.Probe
		sources.Core, sources.Fitted = src.Stats, sink.Fitted
		sc.ready = func() (bool, string) {
			if !src.Ready() {
				return false, "not connected to NATS, not subscribed yet, or draining"
			}
			return true, ""
		}
	}
	decode := engine.DecoderFunc(func(ev *detector.Event, data []byte) error { return wire.Decode(ev, data, limits) })
	reg := metrics.NewRegistry(buildInfo().Labels())
	eng, err := engine.New(source, decode, metrics.Observe(output, reg), opts...)
	if err != nil {
		return sc, err
	}
	sc.engine = eng
	sources.Engine = eng
	// Ready also needs the input caught up: the watermark within a turn timeout of now.
	inputReady := sc.ready
	sc.ready = func() (bool, string) {
		if failed := sc.failed.Load(); failed != nil {
			return false, *failed
		}
		if ok, why := inputReady(); !ok {
			return false, why
		}
		if lag := eng.Stats().WatermarkLag; lag > o.det.Timeout {
			return false, fmt.Sprintf("input not caught up: its evidence lags %v behind", lag.Round(time.Millisecond))
		}
		return true, ""
	}
	sources.Ready = func() bool { ok, _ := sc.ready(); return ok }
	if o.ingest.enabled() {
		var js jetstream.JetStream
		if o.jetstream {
			if js, err = jetstream.New(conn.NATS()); err != nil {
				return sc, fmt.Errorf("--http-listen: %w", err)
			}
		}
		srv, err := o.ingest.server(conn.NATS(), js, limits, o.deadLetter, sources.Ready, log)
		if err != nil {
			return sc, fmt.Errorf("--http-listen: %w", err)
		}
		sources.Extra = append(sources.Extra, ingestCollector{srv})
		// Listened on now, so that a port in use fails the start rather than leave the
		// sidecar running without its ingest.
		ln, err := net.Listen("tcp", o.ingest.listen)
		if err != nil {
			return sc, fmt.Errorf("--http-listen: %w", err)
		}
		sc.ingestLn = ln
		sc.front = append(sc.front, runner{"HTTP ingest", func(ctx context.Context) error { return srv.Serve(ctx, ln) }})
	}
	if o.metricsListen != "" {
		metrics.Register(reg, sources)
		srv, err := metrics.Listen(o.metricsListen, reg, sc.ready, log)
		if err != nil {
			return sc, fmt.Errorf("--metrics-listen: %w", err)
		}
		sc.metrics = srv
		sc.outlast = append(sc.outlast, runner{"metrics", srv.Run})
	}
	sc.outlast = append(sc.outlast, runner{"memory", memoryReturner(eng, log)})
	sc.stats = sources
	return sc, nil
}

// run runs the engine until ctx is done, then shuts down in order: the subscription
// drains, the engine applies what it received and publishes what is due, the sink
// stores what it holds, the connection flushes and closes, the embedded server stops,
// and core mode's webhook deliveries are waited for. The shutdown has one deadline, the
// drain timeout after ctx is done (or after the engine stopped on its own), which each
// of these steps shares.
func (sc *sidecar) run(ctx context.Context) error {
	sc.log.Info("hangwatch running", zap.String("version", buildInfo().Version),
		zap.Strings("subjects", sc.o.subjects.values), zap.Duration("timeout", sc.o.det.Timeout),
		zap.Duration("max_wait", sc.o.det.MaxWait), zap.Int("shards", sc.o.shards), zap.Bool("jetstream", sc.o.jetstream))
	sd := newShutdown(sc.o.drainTimeout)
	besideCtx, stopBeside := context.WithCancel(context.Background())
	outlastCtx, stopOutlast := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(ctx context.Context, rs []runner) {
		for _, r := range rs {
			wg.Go(func() {
				if err := r.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					sc.log.Error(r.name+" stopped: not ready any more", zap.Error(err))
					why := r.name + " stopped: " + err.Error()
					sc.failed.CompareAndSwap(nil, &why)
				}
			})
		}
	}
	start(besideCtx, sc.beside)
	start(outlastCtx, sc.outlast)
	start(ctx, sc.front)
	// The sink publishes until the engine has stopped and it has stored what it holds,
	// or the shutdown's deadline passes: then it gives up on what is left (a restart
	// detects the stalls still unanswered again), a shard waiting for room in its queue
	// is let go, and the engine can stop.
	sinkCtx, stopSink := context.WithCancel(context.Background())
	defer stopSink()
	sinkStopped := make(chan struct{})
	var sinkErr error
	if sc.jsSink != nil {
		wg.Go(func() {
			defer close(sinkStopped)
			sinkErr = sc.jsSink.Run(sinkCtx)
		})
	} else {
		close(sinkStopped)
	}
	running := make(chan struct{})
	wg.Go(func() {
		select {
		case <-running:
		case <-ctx.Done():
			sd.begin()
		}
		deadline, cancel := sd.context()
		defer cancel()
		select {
		case <-sinkStopped:
		case <-deadline.Done():
			stopSink()
		}
	})
	err := sc.engine.Run(ctx)
	sd.begin() // now, unless ctx began it: the engine may have stopped on its own
	close(running)
	st := sc.engine.Stats()
	sc.log.Info("engine stopped", zap.Int64("events", st.Events), zap.Int64("hangs", st.Hangs()),
		zap.Int64("resolved", st.Resolved()), zap.Int64("unresolved", st.Unresolved()), zap.Int64("calls", st.Calls))
	if !sc.o.jetstream && st.Armed+st.Hung > 0 {
		sc.log.Warn("stopped watching calls with an unanswered turn: core NATS keeps no state, so their hangs are not detected after a restart; --jetstream keeps them",
			zap.Int64("armed", st.Armed), zap.Int64("hung", st.Hung))
	}
	if sc.jsSink != nil {
		sc.jsSink.Close()
	}
	<-sinkStopped
	if err == nil {
		err = sinkErr
	}
	closeCtx, cancel := sd.context()
	defer cancel()
	if sc.leave != nil {
		// The outputs are stored: the other members may take the partitions over now.
		sc.leave(closeCtx)
	}
	// Core mode's deliverer needs no NATS: the connection is flushed and closed before
	// the wait for its deliveries, which a receiver that is down can make last until the
	// deadline, so that the close has its share of it. In JetStream mode the deliverer
	// acknowledges on NATS: it is beside, stopped before the close, and not waited for
	// (what it had not delivered is delivered after a restart).
	stopBeside()
	if cerr := sc.close(closeCtx); err == nil {
		err = cerr
	}
	if sc.delivering != nil && sc.delivering.Wait(closeCtx) != nil {
		sc.log.Warn("the shutdown's deadline (--drain-timeout) passed with webhook deliveries pending: they are lost")
	}
	stopOutlast()
	wg.Wait()
	return err
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

// close closes the connection, flushing what was published, until ctx is done; then it
// stops the embedded server.
func (sc *sidecar) close(ctx context.Context) error {
	var err error
	if sc.conn != nil {
		err = sc.conn.Close(ctx)
	}
	if sc.embedded != nil {
		sc.embedded.Shutdown()
	}
	return err
}
