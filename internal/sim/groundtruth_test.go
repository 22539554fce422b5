package sim

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// output is what the tests compare of a hang, a hang-resolved or a hang-unresolved.
type output struct {
	kind        detector.Kind
	reason      detector.Reason
	stage       detector.Stage
	first, user string
	reply       string
	ended       string        // unresolved only
	deadline    time.Time     // hang only
	wait        time.Duration // resolved and unresolved
	at          time.Time     // when it was published; not compared
}

func (o output) String() string {
	return fmt.Sprintf("%v/%v/%v first=%s user=%s reply=%s ended=%s deadline=%s wait=%v",
		o.kind, o.reason, o.stage, o.first, o.user, o.reply, o.ended, o.deadline.Format("15:04:05.000"), o.wait)
}

// wantOutputs returns the outputs that the stalls of a call must produce.
func wantOutputs(stalls []Stall) []output {
	var out []output
	for _, s := range stalls {
		out = append(out, output{kind: detector.KindHang, reason: s.Reason, stage: s.Stage, first: s.FirstUserMessageID,
			user: s.UserMessageID, deadline: s.At()})
		if s.Resolved {
			out = append(out, output{kind: detector.KindResolved, reason: s.Reason, stage: s.Stage, first: s.FirstUserMessageID,
				user: s.LastUserMessageID, reply: s.ReplyMessageID, wait: s.Wait})
		} else {
			out = append(out, output{kind: detector.KindUnresolved, reason: s.Reason, stage: s.Stage, first: s.FirstUserMessageID,
				user: s.LastUserMessageID, ended: s.EndedReason, wait: s.Wait})
		}
	}
	return out
}

// toEvent decodes a wire event as the engine does, received at received (engine time
// and wall time alike).
func toEvent(t testing.TB, data []byte, received time.Time) detector.Event {
	t.Helper()
	var ev detector.Event
	if err := wire.Decode(&ev, data, wire.DefaultLimits()); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	ev.Received, ev.Wall = received.UnixNano(), received.UnixNano()
	return ev
}

// detect runs a detector.Call over the events of a call as an engine would: each event
// arrives a delay after its timestamp and each deadline fires a delay late, both below
// jitter; ticks stop at until. It returns the outputs.
func detect(t testing.TB, cfg detector.Config, events []recorded, jitter time.Duration, until time.Time, seed uint64) []output {
	var (
		c    detector.Call
		outs []output
		wake int64 = math.MaxInt64
		n    uint64
	)
	late := func() int64 {
		n++
		if jitter <= 0 {
			return 0
		}
		return int64(draw(seed, n, 0) % uint64(jitter/2))
	}
	record := func(s detector.Step) {
		wake = s.Wake
		if s.Forget {
			wake = math.MaxInt64
		}
		for _, o := range s.Outputs {
			out := output{kind: o.Kind, reason: o.Reason, stage: o.Stage, first: o.FirstUserMessageID, user: o.UserMessageID,
				reply: o.ReplyMessageID, ended: o.EndedReason, at: time.Unix(0, o.At)}
			if o.Kind == detector.KindHang {
				out.deadline = time.Unix(0, o.Deadline)
			} else {
				out.wait = o.Wait
			}
			outs = append(outs, out)
		}
	}
	tick := func(before int64) {
		for wake < math.MaxInt64 {
			at := wake + late()
			if at > before {
				return
			}
			record(c.Tick(&cfg, at, at))
		}
	}
	for _, r := range events {
		received := r.at.Add(time.Duration(late()))
		tick(received.UnixNano())
		ev := toEvent(t, r.data, received)
		record(c.Apply(&cfg, &ev, received.UnixNano()))
	}
	tick(until.UnixNano())
	return outs
}

// scriptEvents returns the events of a script, each at its own time.
func scriptEvents(sc Script) []recorded {
	var out []recorded
	for ev := range sc.Events() {
		out = append(out, recorded{subject: ev.Subject, data: slices.Clone(ev.Data), at: sc.Start().Add(ev.At)})
	}
	return out
}

// TestGroundTruthMatchesDetector feeds scripted calls through the real detector, with
// delivery and timer jitter below Margin, and checks that it publishes exactly the
// hangs and resolutions that the scripts' Stalls predict.
func TestGroundTruthMatchesDetector(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"default", nil},
		{"stormy", stormy},
		{"timeout 3s max-wait 7s", func(c *Config) {
			stormy(c)
			c.Timeout, c.MaxWait = 3*time.Second, 7*time.Second
		}},
		{"max-wait disabled", func(c *Config) { stormy(c); c.MaxWait = 0 }},
		{"short timeout, small margin", func(c *Config) {
			stormy(c)
			c.Timeout, c.MaxWait, c.Margin = 2*time.Second, 4500*time.Millisecond, 200*time.Millisecond
		}},
		{"max-wait just above timeout", func(c *Config) {
			stormy(c)
			c.Timeout, c.MaxWait = 5*time.Second, 5001*time.Millisecond
		}},
		{"no margin", func(c *Config) { stormy(c); c.Margin = 0 }},
		{"long max-wait", func(c *Config) {
			stormy(c)
			c.MaxWait, c.LateMax = 40*time.Second, 20*time.Second
		}},
		{"replies near the timeout", func(c *Config) {
			stormy(c)
			c.ReplyMin, c.ReplyMax, c.ThinkMin = 4*time.Second, 10*time.Second, 0
		}},
		{"tool timeout longer", func(c *Config) { stormy(c); c.ToolTimeout = 8 * time.Second }},
		{"tool timeout past max-wait", func(c *Config) { stormy(c); c.ToolTimeout = 12 * time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				kinds    = map[string]int{}
				stalls   int
				turns    int
				hungTurn bool
			)
			for seed := range uint64(3) {
				s := newSim(t, func(c *Config) {
					if tt.change != nil {
						tt.change(c)
					}
					c.Seed = seed
				})
				cfg := detector.DefaultConfig()
				cfg.Timeout, cfg.MaxWait, cfg.ToolTimeout = s.cfg.Timeout, s.cfg.MaxWait, s.cfg.ToolTimeout
				for i := range uint64(40) {
					sc := s.Script(i, t0.Add(time.Duration(i)*1234*time.Millisecond))
					events := scriptEvents(sc)
					stallList := sc.Stalls()
					want := wantOutputs(stallList)
					got := detect(t, cfg, events, s.cfg.Margin, sc.Start().Add(sc.Duration()+time.Hour), seed<<32|i)
					for i := range got {
						got[i].at = time.Time{}
					}
					if !slices.Equal(got, want) {
						t.Fatalf("seed %d call %d: detector published\n%v\nthe script expects\n%v", seed, i, got, want)
					}
					for _, st := range stallList {
						kinds[st.Reason.String()]++
						kinds[st.Stage.String()]++
						if !st.Resolved {
							kinds["hang-up"]++
						}
						if st.LastUserMessageID != st.UserMessageID {
							kinds["spoke after the hang"]++
						}
						hungTurn = hungTurn || st.Deadline > 0
					}
					stalls += len(stallList)
					sc.scan(func(int64) { turns++ }, nil)
				}
			}
			if turns == 0 || !hungTurn {
				t.Fatal("no turn or no stall at all")
			}
			t.Logf("%d turns, %d stalls: %v", turns, stalls, kinds)
			if tt.name != "default" && (kinds["turn-timeout"] == 0 || kinds["hang-up"] == 0 || kinds["spoke after the hang"] == 0 ||
				kinds["awaiting-assistant"] == 0 || kinds["awaiting-tool"] == 0 || kinds["after-tool"] == 0) {
				t.Errorf("the calls do not cover every kind of stall: %v", kinds)
			}
			if wantMaxWait := s0(tt.change).MaxWait > 0; (kinds["max-wait"] > 0) != wantMaxWait {
				t.Errorf("max-wait stalls: %d, want some: %v", kinds["max-wait"], wantMaxWait)
			}
		})
	}
}

// s0 returns the configuration that change makes of the default.
func s0(change func(*Config)) Config {
	c := DefaultConfig()
	if change != nil {
		change(&c)
	}
	return c
}

// TestStallShares checks that the shares of stalled turns come out as configured.
func TestStallShares(t *testing.T) {
	tests := []struct {
		name                            string
		stall, hello, tool, after       float64
		maxWait                         time.Duration
		wantTimeout, wantMaxWait        float64 // shares of turns that hang awaiting the assistant, by reason
		wantAwaitingTool, wantAfterTool float64
	}{
		{"default", 0.05, 0.02, 0.02, 0.01, 10 * time.Second, 0.05, 0.02, 0.02, 0.01},
		{"more", 0.2, 0.1, 0.1, 0.05, 10 * time.Second, 0.2, 0.1, 0.1, 0.05},
		{"no max-wait", 0.2, 0.1, 0.1, 0.05, 0, 0.2, 0, 0.1, 0.05},
		{"none", 0, 0, 0, 0, 10 * time.Second, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, func(c *Config) {
				c.StallShare, c.HelloShare, c.ToolStallShare, c.AfterToolShare, c.MaxWait = tt.stall, tt.hello, tt.tool, tt.after, tt.maxWait
			})
			var turns, timeouts, maxWaits, awaitingTool, afterTool int
			for i := range uint64(4000) {
				sc := s.Script(i, t0)
				sc.scan(func(int64) { turns++ }, func(r stallRec) {
					switch {
					case r.stage == detector.StageAwaitingTool:
						awaitingTool++
					case r.stage == detector.StageAfterTool:
						afterTool++
					case r.reason == detector.ReasonMaxWait:
						maxWaits++
					default:
						timeouts++
					}
				})
			}
			near := func(got int, want float64) bool {
				share := float64(got) / float64(turns)
				return share >= want*0.9-0.002 && share <= want*1.1+0.002
			}
			if !near(timeouts, tt.wantTimeout) || !near(maxWaits, tt.wantMaxWait) ||
				!near(awaitingTool, tt.wantAwaitingTool) || !near(afterTool, tt.wantAfterTool) {
				t.Errorf("of %d turns, %d turn-timeout, %d max-wait, %d awaiting-tool and %d after-tool stalls; want shares %v, %v, %v and %v",
					turns, timeouts, maxWaits, awaitingTool, afterTool, tt.wantTimeout, tt.wantMaxWait, tt.wantAwaitingTool, tt.wantAfterTool)
			}
		})
	}
}
