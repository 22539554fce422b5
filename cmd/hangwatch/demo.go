package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

const demoSummary = `Watch hangwatch work: an embedded NATS server, the engine, and a simulated voice
pipeline of --calls concurrent calls in which some assistants stall. Each hang and
resolution is printed as it happens; at the end a summary compares them with the
simulation's ground truth. Exits 1 if a hang was missed or false.`

// errDemoMismatch is returned when the demo's hangs differ from the ground truth.
var errDemoMismatch = errors.New("the hangs differ from the simulation's ground truth")

func demoCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("demo", demoSummary)
	def := sim.DefaultConfig()
	calls := c.fs.Int("calls", def.Calls, "concurrent calls")
	duration := c.fs.Duration("duration", 30*time.Second, "how long the simulation runs")
	stallShare := c.fs.Float64("stall-share", def.StallShare, "share of turns whose reply comes past the turn timeout")
	helloShare := c.fs.Float64("hello-share", def.HelloShare, `share of turns where the caller says "hello?" again and again until max-wait catches it`)
	seed := c.fs.Uint64("seed", def.Seed, "seed of the simulation: the same seed gives the same calls")
	listen := c.fs.String("embedded-listen", transport.DefaultEmbeddedListen, "host:port of the embedded NATS server; if taken, a free port")
	timeout := c.fs.Duration("timeout", def.Timeout, "turn timeout")
	maxWait := c.fs.Duration("max-wait", def.MaxWait, "max wait; 0 disables it")
	logLevel := c.fs.String("log-level", "warn", "log level of the engine, on stderr")
	metrics := c.fs.String("metrics-listen", "", "host:port serving the engine's /metrics while the demo runs; empty: none")
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	cfg := def
	cfg.Calls, cfg.StallShare, cfg.HelloShare, cfg.Seed = *calls, *stallShare, *helloShare, *seed
	cfg.Timeout, cfg.MaxWait = *timeout, *maxWait
	if err := cfg.Validate(); err != nil {
		return usageError{c, err}
	}
	if *duration <= 0 {
		return usageError{c, fmt.Errorf("--duration must be above 0, got %v", *duration)}
	}
	log, err := newLogger(stderr, *logLevel, "console")
	if err != nil {
		return usageError{c, err}
	}
	defer log.Sync() //nolint:errcheck // nothing is left to report it to

	ctx, stop := signalContext(func(os.Signal) {})
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	tally, st, err := simulate(ctx, simOptions{cfg: cfg, listen: *listen, metrics: *metrics, log: log, lines: stdout,
		onStart: func(url string, _ *sidecar) {
			fmt.Fprintf(stdout, "hangwatch demo: %d calls for %v, NATS at %s (try: hangwatch tail --nats-url %s --format text)\n",
				cfg.Calls, *duration, url, url)
			fmt.Fprintf(stdout, "turn timeout %v, max wait %v; %.0f%% of turns stall, %.0f%% are \"hello? hello?\"\n\n",
				cfg.Timeout, cfg.MaxWait, cfg.StallShare*100, cfg.HelloShare*100)
		}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nevents=%d bytes=%d\n%s\n", st.Events, st.Bytes, tally.Summary())
	if tally.Missed > 0 || tally.False > 0 {
		return errDemoMismatch
	}
	return nil
}

// simOptions describe a simulated pipeline run against the sidecar.
type simOptions struct {
	cfg    sim.Config
	listen string // where the embedded NATS server listens; if taken, a free port
	// metrics is where the sidecar serves /metrics; empty: nowhere.
	metrics string
	// args are more flags of `hangwatch run` for the sidecar, such as --call-ttl.
	args  []string
	log   *zap.Logger
	lines io.Writer // where each hang and resolution is printed as it happens; nil: nowhere
	// onStart, when set, is called once everything runs, with the server's URL.
	onStart func(url string, sc *sidecar)
}

// simulate runs the simulated pipeline of o.cfg against the sidecar, exactly as `hangwatch
// run` runs it, on an embedded NATS server, until ctx is done. It then hangs up every
// live call, lets the sidecar drain and publish what is due, and compares what it
// published with the ground truth. The demo shows it for seconds, the soak test runs it
// for minutes.
func simulate(ctx context.Context, o simOptions) (sim.Tally, sim.Stats, error) {
	cfg := o.cfg
	cfg.HangUpOnStop = true // the end of the run must not look like silence
	simulation, err := sim.New(cfg)
	if err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	emb, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: o.listen, Logger: o.log})
	if err != nil && o.listen == transport.DefaultEmbeddedListen {
		emb, err = transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0", Logger: o.log})
	}
	if err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	defer emb.Shutdown()

	rc := newCommand("run", "")
	so := sidecarFlags(rc)
	if err := rc.parse(o.args, noEnv); err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	so.conn.URL, so.metricsListen = emb.ClientURL(), o.metrics
	so.det.Timeout, so.det.MaxWait = cfg.Timeout, cfg.MaxWait
	if err := so.validate(); err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	sc, err := startSidecar(so, clock.Real(), o.log)
	if err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	engineCtx, stopEngine := context.WithCancel(context.Background())
	var (
		wg        sync.WaitGroup
		engineErr error
	)
	wg.Go(func() { engineErr = sc.run(engineCtx) })
	defer func() { stopEngine(); wg.Wait() }()

	client, err := nats.Connect(emb.ClientURL(), nats.Name("hangwatch-simulated-pipeline"))
	if err != nil {
		return sim.Tally{}, sim.Stats{}, fmt.Errorf("connect the simulated pipeline: %w", err)
	}
	defer client.Close()
	obs, err := observe(client, so, o.lines)
	if err != nil {
		return sim.Tally{}, sim.Stats{}, err
	}
	if o.onStart != nil {
		o.onStart(emb.ClientURL(), sc)
	}

	runner := sim.NewRunner(simulation, client.Publish)
	err = runner.Run(ctx) // returns after hanging up every live call
	if ferr := client.Flush(); err == nil {
		err = ferr
	}
	stopEngine() // drains what the pipeline published, publishes what is due
	wg.Wait()
	if ferr := client.Flush(); err == nil { // every output has reached us
		err = ferr
	}
	if err == nil {
		err = engineErr
	}
	st := runner.Stats()
	return runner.Truth().Tally(obs.stop(), st.Cutoff), st, err
}

// observer prints the hangs and resolutions as they arrive and keeps them for the
// tally.
type observer struct {
	subs []*nats.Subscription
	mu   sync.Mutex
	seen []sim.Observation
}

func observe(nc *nats.Conn, o *sidecarOptions, lines io.Writer) (*observer, error) {
	obs := &observer{}
	for _, w := range wire.OutputWildcards(o.hangTmpl, o.resolvedTmpl) {
		sub, err := nc.Subscribe(w, func(m *nats.Msg) {
			if lines != nil {
				obs.mu.Lock() // the two subscriptions' handlers never interleave lines
				fmt.Fprintln(lines, summarize(m.Subject, m.Data))
				obs.mu.Unlock()
			}
			// At is message.timestamp: the demo tallies the engine's own detection time.
			ob, err := sim.ParseObservation(m.Data, time.Time{})
			if err != nil {
				return
			}
			obs.mu.Lock()
			obs.seen = append(obs.seen, ob)
			obs.mu.Unlock()
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", w, err)
		}
		obs.subs = append(obs.subs, sub)
	}
	return obs, nc.Flush()
}

// stop drains the subscriptions and returns what was observed.
func (obs *observer) stop() []sim.Observation {
	for _, s := range obs.subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if s.Drain() == nil {
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
			}
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	return obs.seen
}
