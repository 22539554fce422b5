package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/hangwatch/hangwatch/internal/sim"
)

// The subjects under test.
const (
	SubjectRaw      = "raw"      // a plain nats.go subscriber: the ceiling of what NATS delivers
	SubjectEngine   = "engine"   // hangwatch wired in process as `hangwatch run` wires it
	SubjectBinary   = "binary"   // the hangwatch binary itself (Config.Binary)
	SubjectBaseline = "baseline" // bench/baseline: encoding/json, a mutex, time.AfterFunc
)

// The phases of a run.
const (
	PhaseThroughput = "throughput"
	PhaseMemory     = "memory"
	PhaseRealtime   = "realtime"
)

// Config is a load run. Start from DefaultConfig or QuickConfig.
type Config struct {
	// Calls is the number of live calls of the memory and real-time phases.
	Calls int
	// Rate is the event rate the real-time phase aims at: the simulation's think times
	// are scaled so that Calls calls publish about Rate events per second. 0 keeps the
	// simulation's own think times.
	Rate float64
	// Duration is how long the real-time phase runs for each subject.
	Duration time.Duration
	// Ramp spreads the start of the calls of the real-time phase; 0 picks the time in
	// which a call publishes two events at Rate, so that the start is no burst.
	Ramp time.Duration

	// TurnsMin and TurnsMax bound the turns of a call; PayloadBytes is the size a
	// conversation-update reaches at PayloadTurns turns.
	TurnsMin, TurnsMax         int
	PayloadBytes, PayloadTurns int
	// TextBytes, when above 0, is the length of the text of every message of the
	// real-time phase (its history grows by that and the message's metrics per
	// message), instead of the payloads fitted to PayloadBytes.
	TextBytes int
	// StallShare and HelloShare are the shares of turns that hang on the turn timeout
	// and on the max wait.
	StallShare, HelloShare float64
	// Timeout and MaxWait are the thresholds of every subject and of the ground truth.
	Timeout, MaxWait time.Duration
	Seed             uint64

	// TPCalls is the number of calls interleaved in one round of the throughput stream;
	// TPMinBytes keeps only their conversation-updates of at least that size (and each
	// call's end-of-call-report), so that the stream is made of ~30 KB events. Rounds repeat the stream with fresh call ids until TPEvents events
	// are published or TPMaxTime has passed.
	TPCalls    int
	TPMinBytes int
	TPEvents   int
	TPMaxTime  time.Duration
	// Repeat runs the throughput phase this many times, the subjects taking turns, and
	// keeps each subject's median run: the machine is shared, and a run alone is noise.
	Repeat int
	// Window is the most events in flight in the closed loop: published but not yet
	// processed by the subject. A marker every MarkEvery events tells how far it is.
	Window, MarkEvery int

	// NATSURL is the server to use; empty starts an embedded one.
	NATSURL string
	// Binary is the path of a hangwatch binary to test as one more subject.
	Binary string
	// Subjects and Phases select what runs.
	Subjects []string
	Phases   []string
	// Out is the directory for the plot, the logs of the subjects and their profiles.
	Out string
	// Profile writes a CPU profile of each in-process subject and phase into Out.
	Profile bool
	// DecodeTime is how long each decode micro-benchmark runs.
	DecodeTime time.Duration
	// EngineArgs are more flags for the in-process hangwatch subject (--shards,
	// --decoders, --max-inflight-bytes, --max-retained-bytes), for experiments.
	EngineArgs []string
	// Stress makes the report's last line the summary of the stress run (StressSummary)
	// and its targets those of the stress load.
	Stress bool
	// Self is the command that runs a subject: this program, given --serve. Tests set
	// it to the test binary.
	Self []string
}

// DefaultConfig is a full run: 10,000 live calls at 10,000 events/s, 60 s per subject.
// `make bench` raises the calls to 100,000, the scale of the latency target.
func DefaultConfig() Config {
	def := sim.DefaultConfig()
	return Config{
		Calls:        10_000,
		Rate:         10_000,
		Duration:     60 * time.Second,
		TurnsMin:     50,
		TurnsMax:     70,
		PayloadBytes: 30_000,
		PayloadTurns: 60,
		StallShare:   def.StallShare,
		HelloShare:   def.HelloShare,
		Timeout:      def.Timeout,
		MaxWait:      def.MaxWait,
		Seed:         1,
		TPCalls:      1000,
		TPMinBytes:   27_000,
		TPEvents:     200_000,
		TPMaxTime:    15 * time.Second,
		Repeat:       3,
		Window:       1024,
		MarkEvery:    64,
		Subjects:     []string{SubjectRaw, SubjectEngine, SubjectBaseline},
		Phases:       []string{PhaseThroughput, PhaseMemory, PhaseRealtime},
		Out:          "bench/out",
		DecodeTime:   time.Second,
	}
}

// QuickConfig is the same report at a small scale: under a minute on two cores.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Calls, c.Rate, c.Duration = 10_000, 4000, 12*time.Second
	c.TPCalls, c.TPEvents, c.TPMaxTime = 200, 30_000, 1500*time.Millisecond
	c.DecodeTime = 300 * time.Millisecond
	return c
}

// StressConfig is `make bench-stress` (issue 12): 20,000 concurrent calls of 10 turns
// whose messages carry 600 bytes of text, for 48 s a subject (about 400,000 events, 3 GB
// of JSON with the hang-ups at the end), the hangwatch binary (Binary must be set)
// against the baseline in the same run.
func StressConfig() Config {
	c := DefaultConfig()
	c.Calls, c.Rate, c.Duration = 20_000, 0, 48*time.Second
	c.TurnsMin, c.TurnsMax, c.TextBytes = 10, 10, 600
	c.Subjects = []string{SubjectBinary, SubjectBaseline}
	c.Phases = []string{PhaseRealtime}
	c.DecodeTime = 300 * time.Millisecond
	c.Stress = true
	return c
}

// ErrConfig is wrapped by the errors of Config.Validate.
var ErrConfig = errors.New("bench: invalid configuration")

// Validate checks the configuration.
func (c *Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate checks the configuration and returns the simulation of the memory and
// real-time phases: tuning it (a bisection over sim.EventRate) is part of the check,
// and Run keeps the result rather than tuning twice.
func (c *Config) validate() (sim.Config, error) {
	bad := func(format string, args ...any) (sim.Config, error) {
		return sim.Config{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	for _, s := range c.Subjects {
		if !slices.Contains([]string{SubjectRaw, SubjectEngine, SubjectBaseline, SubjectBinary}, s) {
			return bad("unknown subject %q", s)
		}
	}
	if slices.Contains(c.Subjects, SubjectBinary) && c.Binary == "" {
		return bad("subject %q needs --binary", SubjectBinary)
	}
	for _, p := range c.Phases {
		if !slices.Contains([]string{PhaseThroughput, PhaseMemory, PhaseRealtime}, p) {
			return bad("unknown phase %q", p)
		}
	}
	switch {
	case c.Calls < 1:
		return bad("calls must be at least 1")
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return bad("rate must be 0 or above")
	case c.Duration <= 0:
		return bad("duration must be above 0")
	case c.TPCalls < 1 || c.TPEvents < 1 || c.TPMaxTime <= 0 || c.Repeat < 1:
		return bad("the throughput phase needs calls, events, time and at least one run")
	case c.MarkEvery < 1 || c.Window < c.MarkEvery:
		return bad("window must be at least mark-every, and both at least 1")
	case c.DecodeTime <= 0:
		return bad("decode time must be above 0")
	case len(c.Self) == 0:
		return bad("no command to run the subjects with")
	}
	return c.simConfig()
}

// runs reports whether the run includes phase p.
func (c *Config) runs(p string) bool { return slices.Contains(c.Phases, p) }

// baseSim is the simulation that every phase starts from: the seed, the payloads, the
// stalls and the thresholds of c, the rest sim's defaults.
func (c *Config) baseSim() sim.Config {
	s := sim.DefaultConfig()
	s.Seed = c.Seed
	s.PayloadBytes, s.PayloadTurns = c.PayloadBytes, c.PayloadTurns
	s.StallShare, s.HelloShare = c.StallShare, c.HelloShare
	s.Timeout, s.MaxWait = c.Timeout, c.MaxWait
	return s
}

// simConfig is the simulation of the memory and real-time phases: Calls calls of
// TurnsMin..TurnsMax turns, with think times scaled to make Rate events per second.
func (c *Config) simConfig() (sim.Config, error) {
	s := c.baseSim()
	s.Calls, s.HangUpOnStop = c.Calls, true
	s.TurnsMin, s.TurnsMax, s.TextBytes = c.TurnsMin, c.TurnsMax, c.TextBytes
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Rate > 0 {
		var err error
		if s, err = tuneThink(s, c.Rate/float64(c.Calls)); err != nil {
			return s, err
		}
	}
	s.Ramp = c.Ramp
	if s.Ramp == 0 {
		sm, err := sim.New(s)
		if err != nil {
			return s, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		s.Ramp = time.Duration(2 / sm.EventRate() * float64(time.Second)).Round(time.Millisecond)
	}
	return s, nil
}

// tuneThink scales the think times of s so that one call publishes about perCall
// events per second (sim.EventRate), by bisection on the scale.
func tuneThink(s sim.Config, perCall float64) (sim.Config, error) {
	base := s
	at := func(k float64) (sim.Config, float64, error) {
		c := base
		c.ThinkMin = time.Duration(float64(base.ThinkMin) * k).Round(time.Millisecond)
		c.ThinkMax = time.Duration(float64(base.ThinkMax) * k).Round(time.Millisecond)
		sm, err := sim.New(c)
		if err != nil {
			return c, 0, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return c, sm.EventRate(), nil
	}
	lo, hi := 0.01, 10_000.0
	if _, r, err := at(lo); err != nil || r < perCall {
		return s, fmt.Errorf("%w: %.4g events/s per call is more than calls with no think time make (%.4g)", ErrConfig, perCall, r)
	}
	for range 24 {
		mid := math.Sqrt(lo * hi)
		_, r, err := at(mid)
		if err != nil {
			return s, err
		}
		if r > perCall {
			lo = mid
		} else {
			hi = mid
		}
	}
	c, _, err := at(math.Sqrt(lo * hi))
	return c, err
}

// maxCalls is what every subject is given as --max-calls: room for the live calls and
// for the ended ones that are remembered for the call TTL.
func (c *Config) maxCalls() int64 { return max(1_000_000, 2*int64(c.Calls)) }
