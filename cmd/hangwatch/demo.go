package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/transport"
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
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	cfg := def
	cfg.Calls, cfg.StallShare, cfg.HelloShare, cfg.Seed = *calls, *stallShare, *helloShare, *seed
	cfg.Timeout, cfg.MaxWait, cfg.HangUpOnStop = *timeout, *maxWait, true
	simulation, err := sim.New(cfg)
	if err != nil {
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

	emb, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: *listen, Logger: log})
	if err != nil && *listen == transport.DefaultEmbeddedListen {
		emb, err = transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0", Logger: log})
	}
	if err != nil {
		return err
	}
	defer emb.Shutdown()

	// The sidecar, exactly as `hangwatch run --nats-url <embedded>` would run it.
	rc := newCommand("run", "")
	o := sidecarFlags(rc)
	if err := rc.parse(nil, func(string) string { return "" }); err != nil {
		return err
	}
	o.conn.URL, o.metricsListen = emb.ClientURL(), ""
	o.det.Timeout, o.det.MaxWait = cfg.Timeout, cfg.MaxWait
	if err := o.validate(); err != nil {
		return usageError{c, err}
	}
	sc, err := startSidecar(o, clock.Real(), log)
	if err != nil {
		return err
	}

	client, err := nats.Connect(emb.ClientURL(), nats.Name("hangwatch-demo"))
	if err != nil {
		return fmt.Errorf("connect the simulated pipeline: %w", err)
	}
	defer client.Close()
	obs, err := observe(client, o, stdout)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "hangwatch demo: %d calls for %v, NATS at %s (try: hangwatch tail --nats-url %s --format text)\n",
		cfg.Calls, *duration, emb.ClientURL(), emb.ClientURL())
	fmt.Fprintf(stdout, "turn timeout %v, max wait %v; %.0f%% of turns stall, %.0f%% are \"hello? hello?\"\n\n",
		cfg.Timeout, cfg.MaxWait, cfg.StallShare*100, cfg.HelloShare*100)

	ctx, stop := signalContext(func(os.Signal) {})
	defer stop()
	engineCtx, stopEngine := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var engineErr error
	wg.Go(func() { engineErr = sc.run(engineCtx) })

	runner := sim.NewRunner(simulation, client.Publish)
	simCtx, cancel := context.WithTimeout(ctx, *duration)
	simErr := runner.Run(simCtx) // returns after hanging up every live call
	cancel()
	if err := client.Flush(); err != nil && simErr == nil {
		simErr = err
	}
	stopEngine() // drains what the pipeline published, publishes what is due
	wg.Wait()
	if err := client.Flush(); err != nil && simErr == nil { // every output has reached us
		simErr = err
	}
	observations := obs.stop()

	st := runner.Stats()
	tally := runner.Truth().Tally(observations, st.Cutoff)
	fmt.Fprintf(stdout, "\nevents=%d bytes=%d\n%s\n", st.Events, st.Bytes, tally.Summary())
	switch {
	case simErr != nil:
		return simErr
	case engineErr != nil:
		return engineErr
	case tally.Missed > 0 || tally.False > 0:
		return errDemoMismatch
	}
	return nil
}

// observer prints the hangs and resolutions as they arrive and keeps them for the
// tally.
type observer struct {
	subs []*nats.Subscription
	mu   sync.Mutex
	seen []sim.Observation
}

func observe(nc *nats.Conn, o *sidecarOptions, stdout io.Writer) (*observer, error) {
	obs := &observer{}
	for _, t := range []transport.SubjectTemplate{o.hangTmpl, o.resolvedTmpl} {
		// One subscription handler at a time prints, so lines never interleave.
		sub, err := nc.Subscribe(t.Wildcard(), func(m *nats.Msg) {
			fmt.Fprintln(stdout, summarize(m.Subject, m.Data))
			var ev event
			if json.Unmarshal(m.Data, &ev) != nil {
				return
			}
			kind := detector.KindHang
			if ev.Message.Type == "hang-resolved" {
				kind = detector.KindResolved
			}
			obs.mu.Lock()
			obs.seen = append(obs.seen, sim.Observation{
				Kind: kind, CallID: ev.Message.Call.ID, FirstUserMessageID: ev.Message.Hang.FirstUserMessageID,
				Reason: sim.ParseReason(ev.Message.Hang.Reason), Wait: time.Duration(ev.Message.Hang.WaitMs) * time.Millisecond,
				At: time.UnixMilli(ev.Message.Timestamp),
			})
			obs.mu.Unlock()
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", t.Wildcard(), err)
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
