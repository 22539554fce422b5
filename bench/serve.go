package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hangwatch/hangwatch/bench/baseline"
	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/logs"
	hwmetrics "github.com/hangwatch/hangwatch/internal/metrics"
	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// ChildEnv is set in the environment of a subject that the load generator runs, so that
// a test binary standing in for the load generator knows to serve.
const ChildEnv = "HANGBENCH_CHILD"

// serveOptions are the flags of a subject process.
type serveOptions struct {
	role, url, subject, deadLetter, ctl string
	det                                 detector.Config
	maxCalls, maxRetained               int64
	cpuProfile, memProfile              string
	// Tuning of the engine subject, for experiments: 0 keeps run.go's choice.
	shards, decoders int
	inflight         int64
	probeEvery       time.Duration
	packAfter        time.Duration
	gcPercent        int
	runtimeTimers    bool
}

// ChildStats is what a subject process reports on its control subject.
type ChildStats struct {
	Role string `json:"role"`
	// Received counts the messages received, markers included; Bad those rejected;
	// Dropped those NATS dropped because the subject fell behind.
	Received, Bad, Dropped int64
	// Calls held (ended ones included) and where they stand.
	Calls, Idle, Armed, Hung, Ended int64
	// Retained is the bytes of received events that the calls keep, as received on the
	// wire; RetainedEvents how many events that is.
	Retained, RetainedEvents    int64
	Hangs, Resolved, Unresolved int64
	// HeapAlloc is runtime.MemStats.HeapAlloc, after two GCs when they were asked for;
	// HeapLive the heap found live by the latest GC.
	HeapAlloc, HeapLive uint64
	Goroutines          int
	// InternalLag is the quantiles of the time from a hang's deadline to its hand-over
	// to the code that encodes and publishes it (engine.Sink.Publish, the baseline's
	// emit), inside the subject: its own share of the detection lag.
	InternalLag LagQuantiles
}

// LagQuantiles are quantiles of lags, in ns.
type LagQuantiles struct {
	N                   int
	P50, P99, P999, Max time.Duration
}

// lagRecorder keeps every lag it is given, with its deadline: hangs are few enough.
type lagRecorder struct {
	mu   sync.Mutex
	lags []deadlineLag
}

type deadlineLag struct{ deadline, lag int64 }

func (l *lagRecorder) add(deadline time.Time, lag time.Duration) {
	l.mu.Lock()
	l.lags = append(l.lags, deadlineLag{deadline.UnixNano(), int64(lag)})
	l.mu.Unlock()
}

// quantiles returns the quantiles of the lags of the deadlines until until (Unix ns;
// 0 for all): the load generator leaves out the hangs due after the end of its run, which
// the ground truth does not count either.
func (l *lagRecorder) quantiles(until int64) LagQuantiles {
	l.mu.Lock()
	var lags []time.Duration
	for _, dl := range l.lags {
		if until == 0 || dl.deadline <= until {
			lags = append(lags, time.Duration(dl.lag))
		}
	}
	l.mu.Unlock()
	slices.Sort(lags)
	return LagQuantiles{N: len(lags), P50: sim.Quantile(lags, 0.5), P99: sim.Quantile(lags, 0.99),
		P999: sim.Quantile(lags, 0.999), Max: sim.Quantile(lags, 1)}
}

// Serve runs a subject process (the hidden --serve mode of the load generator) until ctx
// is done: raw, engine or baseline, consuming from NATS, rejecting markers onto the
// dead-letter subject, and answering "stats" and "gc" requests on the control subject.
func Serve(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseServe(args)
	if err != nil {
		return err
	}
	switch {
	case o.gcPercent != 0:
		debug.SetGCPercent(o.gcPercent)
	case o.role == SubjectEngine:
		debug.SetGCPercent(engine.DefaultGCPercent) // as hangwatch run sets it
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// The control subscription comes first: the load generator asks for stats as soon
	// as the subject answers its markers.
	ctl, err := nats.Connect(o.url, nats.Name("hangbench-ctl-"+o.role))
	if err != nil {
		return fmt.Errorf("connect control: %w", err)
	}
	defer ctl.Close()
	var (
		s        subjectProcess
		internal lagRecorder
		started  = make(chan struct{})
	)
	if _, err := ctl.Subscribe(o.ctl, func(m *nats.Msg) {
		if <-started; s == nil {
			return // the subject did not start
		}
		// "gc", or "stats" and the Unix ns until which deadlines count for InternalLag.
		req, until, _ := strings.Cut(string(m.Data), " ")
		if req == "gc" {
			runtime.GC()
			runtime.GC()
		}
		if o.memProfile != "" && req == "stats" && until == "" {
			// A plain request samples the run (near the end of the real-time phase): the
			// heap then is the one to look at.
			if f, err := os.Create(o.memProfile); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
		st := s.stats()
		st.Role = o.role
		ns, _ := strconv.ParseInt(until, 10, 64)
		st.InternalLag = internal.quantiles(ns)
		st.HeapAlloc, st.HeapLive, st.Goroutines = heap()
		data, _ := json.Marshal(st)
		_ = m.Respond(data)
	}); err != nil {
		return fmt.Errorf("subscribe control: %w", err)
	}
	if err := ctl.Flush(); err != nil {
		return fmt.Errorf("subscribe control: %w", err)
	}
	switch o.role {
	case SubjectRaw:
		s, err = startRaw(o)
	case SubjectEngine:
		s, err = startEngine(o, stderr, &internal)
	case SubjectBaseline:
		s, err = startBaseline(o, &internal)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		s = nil
		close(started)
		return err
	}
	close(started)
	<-ctx.Done()
	return s.stop()
}

func parseServe(args []string) (serveOptions, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o serveOptions
	def := detector.DefaultConfig()
	fs.StringVar(&o.role, "serve", "", "raw, engine or baseline")
	fs.StringVar(&o.url, "nats-url", "", "NATS server")
	fs.StringVar(&o.subject, "subject", transport.DefaultSubject, "subject to consume")
	fs.StringVar(&o.deadLetter, "dead-letter-subject", "", "where rejected events go")
	fs.StringVar(&o.ctl, "ctl", "", "control subject")
	fs.DurationVar(&o.det.Timeout, "timeout", def.Timeout, "turn timeout")
	fs.DurationVar(&o.det.MaxWait, "max-wait", def.MaxWait, "max wait")
	fs.DurationVar(&o.det.MaxLag, "max-lag", def.MaxLag, "max lag")
	fs.DurationVar(&o.det.CallTTL, "call-ttl", def.CallTTL, "call TTL")
	fs.Int64Var(&o.maxCalls, "max-calls", engine.DefaultMaxCalls, "max calls")
	fs.Int64Var(&o.maxRetained, "max-retained-bytes", 0, "retained bytes budget (engine); 0: its default")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile here")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile here at each plain stats request")
	fs.IntVar(&o.shards, "shards", 0, "engine shards; 0: GOMAXPROCS")
	fs.IntVar(&o.decoders, "decoders", 0, "engine decode workers; 0: as many as shards")
	fs.Int64Var(&o.inflight, "max-inflight-bytes", 0, "engine in-flight bytes; 0: its default")
	fs.DurationVar(&o.probeEvery, "probe-every", 0, "source: prove progress unasked this often; 0: its default")
	fs.DurationVar(&o.packAfter, "pack-after", 0, "engine: pack a kept copy after this; 0: its default; negative: never")
	fs.IntVar(&o.gcPercent, "gc-percent", 0, "GOGC of the subject; 0: hangwatch run's for the engine, the runtime's for the others")
	fs.BoolVar(&o.runtimeTimers, "runtime-timers", false, "engine: the runtime's timers rather than clock.Real's")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("serve: %w", err)
	}
	if o.url == "" || o.ctl == "" || o.deadLetter == "" {
		return o, errors.New("serve: --nats-url, --ctl and --dead-letter-subject are required")
	}
	return o, o.det.Validate()
}

// heap returns the heap allocated, the heap the latest GC found live, and the number of
// goroutines.
func heap() (alloc, live uint64, goroutines int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		live = sample[0].Value.Uint64()
	}
	return ms.HeapAlloc, live, runtime.NumGoroutine()
}

// subjectProcess is a running subject.
type subjectProcess interface {
	stats() ChildStats
	stop() error
}

// pendingMsgs and pendingBytes are the subscription limits of every subject, those of
// transport.Source: what NATS may buffer while the subject is behind.
const (
	pendingMsgs  = 1_000_000
	pendingBytes = 1 << 30
)

// subscriber is what raw and baseline share: a nats.go connection and one
// subscription, set up as transport.Source sets up its own.
type subscriber struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

func connect(o serveOptions, name string) (*subscriber, error) {
	nc, err := nats.Connect(o.url, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &subscriber{nc: nc}, nil
}

func (s *subscriber) subscribe(subject string, handle nats.MsgHandler) error {
	sub, err := s.nc.Subscribe(subject, handle)
	if err == nil {
		err = sub.SetPendingLimits(pendingMsgs, pendingBytes)
	}
	if err == nil {
		err = s.nc.Flush()
	}
	if err != nil {
		s.nc.Close()
		return fmt.Errorf("subscribe: %w", err)
	}
	s.sub = sub
	return nil
}

func (s *subscriber) dropped() int64 {
	n, _ := s.sub.Dropped()
	return int64(n)
}

// stop drains the subscription (what NATS holds is still handled) and the connection.
func (s *subscriber) stop() error {
	closed := make(chan struct{})
	s.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := s.nc.Drain(); err != nil {
		s.nc.Close()
		return fmt.Errorf("drain: %w", err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		s.nc.Close()
		return errors.New("drain: not done after 30s")
	}
	return nil
}

// raw only counts the messages and reads a byte of every cache line of each: what any
// consumer must pay to get the events out of NATS.
type raw struct {
	*subscriber
	received, bad, touched atomic.Int64
}

func startRaw(o serveOptions) (*raw, error) {
	s, err := connect(o, "hangbench-raw")
	if err != nil {
		return nil, err
	}
	r := &raw{subscriber: s}
	return r, s.subscribe(o.subject, func(m *nats.Msg) {
		r.received.Add(1)
		var x byte
		for i := 0; i < len(m.Data); i += 64 {
			x ^= m.Data[i]
		}
		r.touched.Add(int64(x))
		if len(m.Data) > 0 && m.Data[0] != '{' {
			r.bad.Add(1)
			_ = s.nc.Publish(o.deadLetter, m.Data)
		}
	})
}

func (r *raw) stats() ChildStats {
	return ChildStats{Received: r.received.Load(), Bad: r.bad.Load(), Dropped: r.dropped()}
}

// engineProcess is hangwatch wired as cmd/hangwatch's run.go wires it in core mode: a
// transport.Conn, a transport.Source, the engine decoding with wire.Decode in its
// pipeline (as many decode workers as shards), and a transport.Sink wrapped in the
// metrics' observer, logging JSON at info level to stderr.
type engineProcess struct {
	conn   *transport.Conn
	source *transport.Source
	sink   *transport.Sink
	engine *engine.Engine
	log    *zap.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
}

// timedSink wraps the sink to note the time from each hang's deadline to its publish
// call, where the sink encodes it: the baseline notes its own at the same point, before
// its json.Marshal. (It reads the clock before the call, not after as run.go's
// hangwatch_detection_lag_seconds does: after, a GC assist or a preemption of the shard
// can come between the publish and the reading, while the hang is already on its way.)
type timedSink struct {
	engine.Sink
	lags *lagRecorder
}

func (t timedSink) Publish(callID string, out *detector.Output) error {
	if out.Kind == detector.KindHang {
		t.lags.add(time.Unix(0, out.Deadline), time.Duration(time.Now().UnixNano()-out.Deadline))
	}
	return t.Sink.Publish(callID, out)
}

func startEngine(o serveOptions, stderr io.Writer, lags *lagRecorder) (*engineProcess, error) {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encCfg), zapcore.Lock(zapcore.AddSync(stderr)), zapcore.InfoLevel))
	limited := logs.RateLimited(log)
	conn, err := transport.Connect(transport.ConnOptions{URL: o.url, Logger: log, Limited: limited})
	if err != nil {
		return nil, err
	}
	p := &engineProcess{conn: conn, log: log}
	p.source = transport.NewSource(conn, transport.SourceOptions{
		Subjects: []string{o.subject}, DeadLetter: o.deadLetter, Logger: log, Limited: limited, ProbeEvery: o.probeEvery,
	})
	p.sink = transport.NewSink(conn, transport.SinkOptions{})
	limits := wire.Limits{MaxBytes: int(conn.NATS().MaxPayload()), MaxDepth: wire.DefaultLimits().MaxDepth}
	decode := engine.DecoderFunc(func(ev *detector.Event, data []byte) error { return wire.Decode(ev, data, limits) })
	clk := clock.Real()
	if o.runtimeTimers {
		clk = clockwork.NewRealClock()
	}
	shards, decoders := runtime.GOMAXPROCS(0), o.decoders
	if o.shards > 0 {
		shards = o.shards
	}
	if decoders == 0 {
		decoders = shards
	}
	observed := hwmetrics.Observe(timedSink{p.sink, lags}, hwmetrics.NewRegistry(nil))
	opts := []engine.Option{engine.WithConfig(o.det), engine.WithClock(clk), engine.WithLogger(log),
		engine.WithLimitedLogger(limited), engine.WithShards(shards), engine.WithDecoders(decoders), engine.WithMaxCalls(o.maxCalls)}
	if o.inflight > 0 {
		opts = append(opts, engine.WithInflight(o.inflight, engine.DefaultDepth))
	}
	if o.maxRetained > 0 {
		opts = append(opts, engine.WithMaxRetainedBytes(o.maxRetained))
	}
	if o.packAfter != 0 {
		opts = append(opts, engine.WithPackAfter(o.packAfter))
	}
	p.engine, err = engine.New(p.source, decode, observed, opts...)
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Go(func() { p.err = p.engine.Run(ctx) })
	// Ready once the source has subscribed; the load generator probes with markers too.
	for deadline := time.Now().Add(10 * time.Second); !p.source.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, errors.New("engine: source not ready after 10s")
		}
	}
	return p, nil
}

func (p *engineProcess) stats() ChildStats {
	es := p.engine.Stats()
	var st ChildStats
	// The engine counts every message it decoded, by type, and the bad ones: what the
	// source received, markers included.
	for _, n := range es.Types {
		st.Received += n
	}
	st.Received += es.Bad
	st.Bad = es.Bad
	st.Dropped = p.source.Stats().Dropped // messages, as raw and baseline count them
	st.Calls, st.Idle, st.Armed, st.Hung, st.Ended = es.Calls+es.Tombs, es.Idle, es.Armed, es.Hung, es.Tombs
	st.Retained, st.RetainedEvents = es.Retained, es.Armed+es.Hung
	pub := p.sink.Published()
	st.Hangs, st.Resolved, st.Unresolved = pub[detector.KindHang], pub[detector.KindResolved], pub[detector.KindUnresolved]
	return st
}

// stop shuts down as run.go does: the engine drains the subscription and publishes what
// is due, then the connection flushes and closes.
func (p *engineProcess) stop() error {
	p.cancel()
	p.wg.Wait()
	st := p.engine.Stats()
	p.log.Info("engine stopped", zap.Int64("events", st.Events), zap.Int64("hangs", st.Hangs()),
		zap.Int64("resolved", st.Resolved()), zap.Int64("unresolved", st.Unresolved()), zap.Int64("calls", st.Calls))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.conn.Close(ctx)
	_ = p.log.Sync()
	return errors.Join(p.err, err)
}

// baselineProcess is bench/baseline behind a plain nats.go subscription.
type baselineProcess struct {
	*subscriber
	d        *baseline.Detector
	received atomic.Int64
}

func startBaseline(o serveOptions, lags *lagRecorder) (*baselineProcess, error) {
	s, err := connect(o, "hangbench-baseline")
	if err != nil {
		return nil, err
	}
	cfg := baseline.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag, cfg.CallTTL = o.det.Timeout, o.det.MaxWait, o.det.MaxLag, o.det.CallTTL
	cfg.MaxCalls = int(o.maxCalls)
	d, err := baseline.New(cfg, func(subject, msgID string, data []byte) error {
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set("Content-Type", "application/json")
		m.Header.Set(nats.MsgIdHdr, msgID)
		return s.nc.PublishMsg(m)
	}, baseline.WithPublished(lags.add))
	if err != nil {
		s.nc.Close()
		return nil, err
	}
	p := &baselineProcess{subscriber: s, d: d}
	err = s.subscribe(o.subject, func(m *nats.Msg) {
		p.received.Add(1)
		if err := d.Handle(m.Data, time.Now()); err != nil {
			dl := nats.NewMsg(o.deadLetter)
			dl.Data = m.Data
			dl.Header.Set(transport.HeaderBadInputError, err.Error())
			_ = s.nc.PublishMsg(dl)
		}
	})
	if err != nil {
		d.Close()
		return nil, err
	}
	return p, nil
}

func (p *baselineProcess) stats() ChildStats {
	st := p.d.Stats()
	return ChildStats{
		Received: p.received.Load(), Bad: st.Bad, Dropped: p.dropped(),
		Calls: int64(st.Calls), Idle: int64(st.Idle), Armed: int64(st.Armed), Hung: int64(st.Hung), Ended: int64(st.Ended),
		Retained: st.RetainedBytes, RetainedEvents: st.RetainedSnapshots,
		Hangs: st.Hangs, Resolved: st.Resolved,
	}
}

func (p *baselineProcess) stop() error {
	err := p.subscriber.stop()
	p.d.Close()
	return err
}
