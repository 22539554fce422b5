package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

const demoSummary = `Watch hangwatch work: an embedded NATS server, the engine, and a simulated voice
pipeline of --calls concurrent calls in which some assistants stall, some while a tool
they called runs, and some callers hang up in silence. Each hang, resolution and
unresolved hang is printed as it happens, with what the caller was waiting for; at the
end a summary compares them with the simulation's ground truth. Exits 1 if a hang was
missed or false.`

// errDemoMismatch is returned when the demo's hangs differ from the ground truth.
var errDemoMismatch = errors.New("the hangs differ from the simulation's ground truth")

func demoCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("demo", demoSummary)
	def := sim.DefaultConfig()
	calls := c.fs.Int("calls", def.Calls, "concurrent calls")
	duration := c.fs.Duration("duration", 30*time.Second, "how long the simulation runs")
	stallShare := c.fs.Float64("stall-share", def.StallShare, "share of turns whose reply comes past the turn timeout")
	helloShare := c.fs.Float64("hello-share", def.HelloShare, `share of turns where the caller says "hello?" again and again until max-wait catches it`)
	toolStallShare := c.fs.Float64("tool-stall-share", def.ToolStallShare, "share of turns where a tool the assistant called answers past the deadline (stage awaiting-tool)")
	afterToolShare := c.fs.Float64("after-tool-share", def.AfterToolShare, "share of turns where the tool answers in time but the reply comes late (stage after-tool)")
	hangUpShare := c.fs.Float64("hang-up-share", def.HangUpShare, "share of stalled turns whose caller hangs up in silence (hang-unresolved)")
	seed := c.fs.Uint64("seed", def.Seed, "seed of the simulation: the same seed gives the same calls")
	listen := c.fs.String("embedded-listen", transport.DefaultEmbeddedListen, "host:port of the embedded NATS server; if taken, a free port")
	timeout := c.fs.Duration("timeout", def.Timeout, "turn timeout")
	maxWait := c.fs.Duration("max-wait", def.MaxWait, "max wait; 0 disables it")
	toolTimeout := c.fs.Duration("tool-timeout", 0, "the turn timeout while a tool runs; 0: --timeout")
	logLevel := c.fs.String("log-level", "warn", "log level of the engine, on stderr")
	metrics := c.fs.String("metrics-listen", "", "host:port serving the engine's /metrics while the demo runs; empty: none")
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	cfg := def
	cfg.Calls, cfg.StallShare, cfg.HelloShare, cfg.Seed = *calls, *stallShare, *helloShare, *seed
	cfg.ToolStallShare, cfg.AfterToolShare, cfg.HangUpShare = *toolStallShare, *afterToolShare, *hangUpShare
	cfg.Timeout, cfg.MaxWait, cfg.ToolTimeout = *timeout, *maxWait, *toolTimeout
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
			tool := cfg.ToolTimeout
			if tool == 0 {
				tool = cfg.Timeout
			}
			fmt.Fprintf(stdout, "turn timeout %v, max wait %v, tool timeout %v; of the turns %.0f%% stall, %.0f%% are \"hello? hello?\",\n"+
				"%.0f%% wait on a slow tool, %.0f%% stall after the tool; %.0f%% of the callers left waiting hang up\n\n",
				cfg.Timeout, cfg.MaxWait, tool, cfg.StallShare*100, cfg.HelloShare*100,
				cfg.ToolStallShare*100, cfg.AfterToolShare*100, cfg.HangUpShare*100)
		}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s", demoReport(tally, st))
	if tally.Missed > 0 || tally.False > 0 {
		return errDemoMismatch
	}
	return nil
}

// demoReport is the summary of a demo: what happened, by outcome and stage, then how
// it compares with the ground truth, and the tally on one line.
func demoReport(t sim.Tally, st sim.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls, %d events (%.1f MB)\n", t.Calls, st.Events, float64(st.Bytes)/1e6)
	fmt.Fprintf(&b, "hangs %d: resolved %d, unresolved %d (%d callers hung up in silence, %d calls cut by the end of the demo)\n",
		t.Hangs, t.Resolved, t.Unresolved, t.Unresolved-t.Stopped, t.Stopped)
	fmt.Fprintf(&b, "by stage: awaiting-assistant %d, awaiting-tool %d, after-tool %d\n",
		t.Stages[detector.StageAwaitingAssistant], t.Stages[detector.StageAwaitingTool], t.Stages[detector.StageAfterTool])
	verdict := "exact"
	if t.Errors() > 0 {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(&b, "against the ground truth (%d stalls): missed %d, false %d, duplicates %d, wrong %d, outcomes missed %d: %s\n",
		t.Stalls, t.Missed, t.False, t.Duplicates,
		t.WrongReason+t.WrongStage+t.WrongWait+t.WrongEndedReason+t.FalseResolved+t.FalseUnresolved,
		t.MissedResolved+t.MissedUnresolved, verdict)
	fmt.Fprintf(&b, "detection lag (message.timestamp - true deadline, in whole ms) p50 %v, p99 %v, max %v\n%s\n",
		t.Lag(0.5), t.Lag(0.99), t.Lag(1), t.Summary())
	return b.String()
}

// demoLine renders an output as one line for people: when, what, which call, why, what
// the caller was waiting for, how long, and for an unresolved hang why the call ended.
// It never shows message text.
func demoLine(subject string, data []byte) string {
	o, err := sim.ParseObservation(data, time.Time{})
	if err != nil {
		return fmt.Sprintf("%s: not a hangwatch event: %v", subject, err)
	}
	at := o.At.Format("15:04:05.000")
	call, first := printable(o.CallID), printable(o.FirstUserMessageID)
	switch o.Kind {
	case detector.KindResolved:
		return fmt.Sprintf("%s RESOLVED    call=%s %s answered after %.1fs (%s)", at, call, first, o.Wait.Seconds(), o.Stage)
	case detector.KindUnresolved:
		return fmt.Sprintf("%s UNRESOLVED  call=%s %s never answered: ended after %.1fs, %s (%s)",
			at, call, first, o.Wait.Seconds(), printable(o.EndedReason), o.Stage)
	}
	return fmt.Sprintf("%s HANG        call=%s %s %s, %s", at, call, first, o.Reason, o.Stage)
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
	so.det.Timeout, so.det.MaxWait, so.det.ToolTimeout = cfg.Timeout, cfg.MaxWait, cfg.ToolTimeout
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

// observer prints the outputs as they arrive and keeps them for the tally.
type observer struct {
	subs []*nats.Subscription
	mu   sync.Mutex
	seen []sim.Observation
}

func observe(nc *nats.Conn, o *sidecarOptions, lines io.Writer) (*observer, error) {
	obs := &observer{}
	for _, w := range wire.OutputWildcards(o.hangTmpl, o.resolvedTmpl, o.unresolvedTmpl) {
		sub, err := nc.Subscribe(w, func(m *nats.Msg) {
			if lines != nil {
				obs.mu.Lock() // the subscriptions' handlers never interleave lines
				fmt.Fprintln(lines, demoLine(m.Subject, m.Data))
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
