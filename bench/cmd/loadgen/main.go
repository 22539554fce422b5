// Command loadgen is hangwatch's load generator: `make bench-quick` for a report in
// under a minute, `make bench` for the full one. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/hangwatch/hangwatch/bench"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv(bench.ChildEnv) != "" || (len(args) > 0 && strings.TrimLeft(args[0], "-") == "serve") {
		// A subject under test, started by the load generator.
		if err := bench.Serve(ctx, args, stderr); err != nil {
			fmt.Fprintln(stderr, "loadgen serve:", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && strings.TrimLeft(args[0], "-") == "memory-scenario" {
		return memoryScenario(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	res, err := bench.Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		if res == nil {
			return 1
		}
	}
	if path, err := res.PlotLags(cfg.Out); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
	} else if path != "" {
		fmt.Fprintln(stderr, "lag distributions plotted in", path)
	}
	out := stdout
	if f, ferr := os.Create(filepath.Join(cfg.Out, "report.txt")); ferr == nil {
		defer f.Close()
		out = io.MultiWriter(stdout, f)
	}
	res.Report(out)
	if err != nil || len(res.Errors) > 0 {
		return 1
	}
	return 0
}

func parse(args []string, stderr io.Writer) (bench.Config, error) {
	cfg := bench.DefaultConfig()
	fs, o := newFlags(&cfg, stderr)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if o.quick || o.stress {
		// The preset, then every flag given over it: parse again onto it.
		cfg = bench.QuickConfig()
		if o.stress {
			cfg = bench.StressConfig()
		}
		fs, o = newFlags(&cfg, stderr)
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Subjects = strings.Split(*o.subjects, ",")
	if *o.engineArgs != "" {
		cfg.EngineArgs = strings.Fields(*o.engineArgs)
	}
	cfg.Phases = strings.Split(*o.phases, ",")
	subjectsSet := false
	fs.Visit(func(f *flag.Flag) { subjectsSet = subjectsSet || f.Name == "subjects" })
	if cfg.Binary != "" && !subjectsSet && !slices.Contains(cfg.Subjects, bench.SubjectBinary) {
		cfg.Subjects = append(cfg.Subjects, bench.SubjectBinary)
	}
	if cfg.Binary != "" {
		abs, err := filepath.Abs(cfg.Binary)
		if err != nil {
			return cfg, err
		}
		cfg.Binary = abs
	}
	self, err := os.Executable()
	if err != nil {
		return cfg, err
	}
	cfg.Self = []string{self}
	return cfg, nil
}

// flagValues are the flags that are not fields of bench.Config.
type flagValues struct {
	quick, stress    bool
	subjects, phases *string
	engineArgs       *string
}

// newFlags returns the flags of the load generator, with cfg's values as defaults.
func newFlags(cfg *bench.Config, stderr io.Writer) (*flag.FlagSet, *flagValues) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &flagValues{}
	fs.BoolVar(&o.quick, "quick", false, "the small preset of `make bench-quick` (other flags override it)")
	fs.BoolVar(&o.stress, "stress", false, "the preset of `make bench-stress`: 20,000 calls of 10 turns, 600 B texts, hangwatch and the baseline (other flags override it)")
	fs.IntVar(&cfg.Calls, "calls", cfg.Calls, "live calls of the memory and real-time phases")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "events/s of the real-time phase (think times are scaled to it); 0: the simulation's own")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "real-time phase, per subject")
	fs.DurationVar(&cfg.Ramp, "ramp", cfg.Ramp, "spread the start of the real-time calls over this; 0: two events' time at the rate")
	fs.IntVar(&cfg.TurnsMin, "turns-min", cfg.TurnsMin, "fewest turns of a call")
	fs.IntVar(&cfg.TurnsMax, "turns-max", cfg.TurnsMax, "most turns of a call")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", cfg.PayloadBytes, "size of a conversation-update at --payload-turns turns")
	fs.IntVar(&cfg.TextBytes, "text-bytes", cfg.TextBytes, "real-time phase: the text length of every message; 0: fitted to --payload-bytes")
	fs.IntVar(&cfg.PayloadTurns, "payload-turns", cfg.PayloadTurns, "turns at which a conversation-update reaches --payload-bytes; also the turns of the throughput stream's calls")
	fs.Float64Var(&cfg.StallShare, "stall-share", cfg.StallShare, "share of turns answered past the turn timeout")
	fs.Float64Var(&cfg.HelloShare, "hello-share", cfg.HelloShare, `share of turns where the caller says "hello?" until max-wait`)
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "turn timeout of the subjects and the ground truth")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "max wait of the subjects and the ground truth")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the simulation: the same seed, the same stream")
	fs.IntVar(&cfg.TPCalls, "tp-calls", cfg.TPCalls, "calls interleaved in a round of the throughput stream")
	fs.IntVar(&cfg.TPMinBytes, "tp-min-bytes", cfg.TPMinBytes, "the throughput stream keeps conversation-updates of at least this size")
	fs.IntVar(&cfg.TPEvents, "tp-events", cfg.TPEvents, "events per subject in the throughput phase")
	fs.DurationVar(&cfg.TPMaxTime, "tp-max-time", cfg.TPMaxTime, "longest throughput run per subject")
	fs.IntVar(&cfg.Repeat, "repeat", cfg.Repeat, "throughput runs per subject, taken in turns; the median is reported")
	fs.IntVar(&cfg.Window, "window", cfg.Window, "closed loop: most events published and not yet decoded")
	fs.IntVar(&cfg.MarkEvery, "mark-every", cfg.MarkEvery, "closed loop: a marker every this many events")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS server to use; empty: an embedded one")
	fs.StringVar(&cfg.Binary, "binary", cfg.Binary, "a hangwatch binary to test too, as `hangwatch run`")
	o.subjects = fs.String("subjects", strings.Join(cfg.Subjects, ","), "subjects under test: raw, engine, baseline, binary (with --binary, added by default)")
	o.engineArgs = fs.String("engine-args", "", "more flags for the in-process hangwatch subject, space-separated: --shards N, --decoders N, --max-inflight-bytes N, --max-retained-bytes N, --pack-after D")
	o.phases = fs.String("phases", strings.Join(cfg.Phases, ","), "phases: throughput, memory, realtime")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "directory of the plot, the subjects' logs and profiles")
	fs.BoolVar(&cfg.Profile, "profile", cfg.Profile, "write a CPU profile of each in-process subject and phase into --out")
	fs.DurationVar(&cfg.DecodeTime, "decode-time", cfg.DecodeTime, "how long each decode micro-benchmark runs")
	return fs, o
}

// memoryScenario runs the memory scenario of issue 11 against the binary
// (`loadgen --memory-scenario --binary bin/hangwatch`, `make bench-memory`).
func memoryScenario(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := bench.DefaultBudgetConfig()
	fs := flag.NewFlagSet("loadgen --memory-scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Binary, "binary", cfg.Binary, "the hangwatch binary (required)")
	fs.IntVar(&cfg.Calls, "calls", cfg.Calls, "calls armed at once")
	fs.IntVar(&cfg.HistoryBytes, "history-bytes", cfg.HistoryBytes, "bytes of each armed call's history")
	fs.Int64Var(&cfg.MaxRetained, "max-retained-bytes", cfg.MaxRetained, "the binary's --max-retained-bytes")
	fs.IntVar(&cfg.Tombs, "tombs", cfg.Tombs, "end-of-call-reports of calls never seen")
	fs.DurationVar(&cfg.ReturnWait, "return-wait", cfg.ReturnWait, "how long to wait for the RSS to return after the calls end")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS server to use; empty: an embedded one")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "directory of the binary's log")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Binary != "" {
		abs, err := filepath.Abs(cfg.Binary)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
		cfg.Binary = abs
	}
	res, err := bench.RunBudget(ctx, cfg, stderr)
	if res != nil {
		out := stdout
		if f, ferr := os.Create(filepath.Join(cfg.Out, "memory-scenario.txt")); ferr == nil {
			defer f.Close()
			out = io.MultiWriter(stdout, f)
		}
		res.Report(out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	if !res.Met() {
		return 1
	}
	return 0
}
