package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/transport"
)

// session is a run under way: the NATS server, the load generator's two connections
// (one publishes, one observes what comes back) and the results so far.
type session struct {
	cfg  *Config
	url  string
	srv  *transport.Embedded // nil with Config.NATSURL
	pub  *nats.Conn
	obs  *nats.Conn
	sim  *sim.Sim // the memory and real-time phases' simulation
	prog *progress
	res  *Results
}

// Run runs the phases of cfg against its subjects, one subject at a time, and returns
// the results. Progress goes to stderr.
func Run(ctx context.Context, cfg Config, stderr io.Writer) (*Results, error) {
	simCfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s := &session{cfg: &cfg, prog: newProgress(stderr), res: &Results{
		Config: cfg, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Started: time.Now(),
		Published: map[string]int64{},
	}}
	defer s.prog.close()
	if s.sim, err = sim.New(simCfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := s.connect(); err != nil {
		return nil, err
	}
	defer s.close()
	if cfg.runs(PhaseRealtime) {
		s.prog.note("real time: %d calls at %.0f events/s (think %v..%v, ramp %v), %v per subject",
			simCfg.Calls, float64(simCfg.Calls)*s.sim.EventRate(), simCfg.ThinkMin, simCfg.ThinkMax, simCfg.Ramp, cfg.Duration)
		if cfg.Duration < simCfg.Ramp+cfg.Timeout {
			s.prog.note("warning: --duration %v is short of the ramp %v plus the timeout: few stalls come due", cfg.Duration, simCfg.Ramp)
		}
	}

	st, err := s.decodeFigures()
	if err != nil {
		return nil, err
	}
	fail := func(phase, name string, err error) {
		s.prog.end()
		s.prog.note("%s %s: %v", phase, name, err)
		s.res.Errors = append(s.res.Errors, fmt.Sprintf("%s %s: %v", phase, name, err))
	}
	if cfg.runs(PhaseThroughput) {
		runs := map[string][]ThroughputResult{}
		for range cfg.Repeat {
			for _, name := range cfg.Subjects {
				if ctx.Err() != nil {
					return s.res, ctx.Err()
				}
				r, err := s.throughput(st, name)
				if err != nil {
					fail(PhaseThroughput, name, err)
					continue
				}
				runs[name] = append(runs[name], r)
			}
		}
		for _, name := range cfg.Subjects {
			if len(runs[name]) > 0 {
				s.res.Throughput = append(s.res.Throughput, median(runs[name]))
			}
		}
	}
	for _, phase := range []string{PhaseMemory, PhaseRealtime} {
		if !cfg.runs(phase) {
			continue
		}
		for _, name := range cfg.Subjects {
			if ctx.Err() != nil {
				return s.res, ctx.Err()
			}
			var err error
			switch {
			case phase == PhaseMemory && name != SubjectRaw:
				var r MemoryResult
				if r, err = s.memory(name); err == nil {
					s.res.Memory = append(s.res.Memory, r)
				}
			case phase == PhaseRealtime && name != SubjectRaw:
				var r RealtimeResult
				if r, err = s.realtime(ctx, name); err == nil {
					s.res.Realtime = append(s.res.Realtime, r)
				}
			}
			if err != nil {
				fail(phase, name, err)
			}
		}
	}
	s.res.Elapsed = time.Since(s.res.Started)
	s.res.PeakRSS = readProc(os.Getpid()).peak
	return s.res, nil
}

// connect starts the embedded server, unless a URL is given, and connects.
func (s *session) connect() error {
	s.url = s.cfg.NATSURL
	if s.url == "" {
		srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		s.srv, s.url = srv, srv.ClientURL()
	}
	var err error
	if s.pub, err = nats.Connect(s.url, nats.Name("hangbench-publisher")); err != nil {
		s.close()
		return fmt.Errorf("bench: connect: %w", err)
	}
	if s.obs, err = nats.Connect(s.url, nats.Name("hangbench-observer")); err != nil {
		s.close()
		return fmt.Errorf("bench: connect: %w", err)
	}
	return nil
}

func (s *session) close() {
	for _, nc := range []*nats.Conn{s.pub, s.obs} {
		if nc != nil {
			nc.Close()
		}
	}
	if s.srv != nil {
		s.srv.Shutdown()
	}
}

// slowConsumers returns the embedded server's count of slow consumers; 0 without it.
func (s *session) slowConsumers() int64 {
	if s.srv == nil {
		return 0
	}
	v, err := s.srv.Server().Varz(nil)
	if err != nil {
		return 0
	}
	return v.SlowConsumers
}

// defaultDet are the detection flags of the throughput and real-time phases.
func (s *session) defaultDet() detFlags {
	return detFlags{timeout: s.cfg.Timeout, maxWait: s.cfg.MaxWait, callTTL: 2 * time.Hour, maxCalls: s.cfg.maxCalls()}
}

// watch subscribes handle to the dead-letter subject of c, with no pending limit.
func (s *session) watch(subject string, handle nats.MsgHandler) (*nats.Subscription, error) {
	sub, err := s.obs.Subscribe(subject, handle)
	if err == nil {
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = s.obs.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return sub, nil
}

// start starts subject name for phase, and returns it once it answers markers, with
// the sequence number of its last probe.
func (s *session) start(phase, name string, det detFlags) (*child, *echoes, *nats.Subscription, int64, error) {
	c, err := startChild(s.cfg, s.url, phase, name, det)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	echo := newEchoes()
	sub, err := s.watch(c.dl, echo.handle)
	if err != nil {
		return nil, nil, nil, 0, errors.Join(err, c.stop())
	}
	seq, err := c.probe(s.pub, echo)
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, nil, 0, errors.Join(err, c.stop())
	}
	return c, echo, sub, seq, nil
}

// median returns the run with the median rate, with the range of the rates of all.
func median(runs []ThroughputResult) ThroughputResult {
	sorted := slices.SortedFunc(slices.Values(runs), func(a, b ThroughputResult) int {
		return cmp.Compare(a.EventsPerSec, b.EventsPerSec)
	})
	m := sorted[(len(sorted)-1)/2]
	m.Runs, m.RateMin, m.RateMax = len(sorted), sorted[0].EventsPerSec, sorted[len(sorted)-1].EventsPerSec
	for _, r := range runs {
		m.Lost = max(m.Lost, r.Lost)
		m.Dropped = max(m.Dropped, r.Dropped)
		m.SlowConsumers = max(m.SlowConsumers, r.SlowConsumers)
	}
	return m
}
