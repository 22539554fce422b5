package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// output is what the tests compare of a hang or a hang-resolved.
type output struct {
	kind        detector.Kind
	reason      detector.Reason
	first, user string
	reply       string
	deadline    time.Time // hang only
	wait        time.Duration
	at          time.Time // when it was published; not compared
}

func (o output) String() string {
	return fmt.Sprintf("%v/%v first=%s user=%s reply=%s deadline=%s wait=%v",
		o.kind, o.reason, o.first, o.user, o.reply, o.deadline.Format("15:04:05.000"), o.wait)
}

// wantOutputs returns the outputs that the stalls of a call must produce.
func wantOutputs(stalls []Stall) []output {
	var out []output
	for _, s := range stalls {
		out = append(out, output{kind: detector.KindHang, reason: s.Reason, first: s.FirstUserMessageID, user: s.UserMessageID, deadline: s.At()})
		if s.Resolved {
			out = append(out, output{kind: detector.KindResolved, reason: s.Reason, first: s.FirstUserMessageID,
				user: s.LastUserMessageID, reply: s.ReplyMessageID, wait: s.Wait})
		}
	}
	return out
}

// size is a detector.Payload that only knows its length.
type size int

func (n size) Len() int { return int(n) }

// toEvent builds the detector's view of a wire event, the way the decoder does.
func toEvent(t testing.TB, data []byte, received time.Time) detector.Event {
	w, msgs := decode(t, data)
	ev := detector.Event{
		CallID:   w.Message.Call.ID,
		Received: received.UnixNano(),
		Payload:  size(len(data)),
		Messages: int32(len(msgs)),
	}
	switch w.Message.Type {
	case TypeConversationUpdate:
		ev.Type = detector.TypeConversationUpdate
	case TypeStatusUpdate:
		ev.Type = detector.TypeStatusUpdate
	case TypeEndOfCallReport:
		ev.Type = detector.TypeEndOfCallReport
	default:
		t.Fatalf("unexpected type %q", w.Message.Type)
	}
	switch w.Message.Call.Status {
	case "ongoing":
		ev.Status = detector.StatusOngoing
	case "finished":
		ev.Status = detector.StatusFinished
	}
	for i, m := range msgs {
		turn := detector.Turn{ID: m.MessageID, Index: int32(i), HasTime: m.Timestamp != nil}
		if m.Timestamp != nil {
			turn.Time = *m.Timestamp
		}
		ev.Stretches = detector.AddMessage(ev.Stretches, detector.ParseRole(m.Role), strings.TrimSpace(m.Text) != "", turn)
	}
	return ev
}

// detect runs a detector.Call over the events of a call as an engine would: each event
// arrives a delay after its timestamp and each deadline fires a delay late, both below
// jitter; ticks stop at until. It returns the outputs.
func detect(t testing.TB, cfg detector.Config, events []recorded, jitter time.Duration, until time.Time, seed uint64) []output {
	var (
		c    detector.Call
		outs []output
		wake int64 = -1
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
		if o := s.Output; o != nil {
			out := output{kind: o.Kind, reason: o.Reason, first: o.FirstUserMessageID, user: o.UserMessageID,
				reply: o.ReplyMessageID, at: time.Unix(0, o.At)}
			if o.Kind == detector.KindHang {
				out.deadline = time.Unix(0, o.Deadline)
			} else {
				out.wait = o.Wait
			}
			outs = append(outs, out)
		}
	}
	tick := func(before int64) {
		for wake >= 0 {
			at := wake + late()
			if at > before {
				return
			}
			record(c.Tick(&cfg, at))
		}
	}
	for _, r := range events {
		received := r.at.Add(time.Duration(late()))
		tick(received.UnixNano())
		ev := toEvent(t, r.data, received)
		record(c.Apply(&cfg, &ev))
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
				cfg.Timeout, cfg.MaxWait = s.cfg.Timeout, s.cfg.MaxWait
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
			if tt.name != "default" && (kinds["turn-timeout"] == 0 || kinds["hang-up"] == 0 || kinds["spoke after the hang"] == 0) {
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
		name        string
		stall       float64
		hello       float64
		maxWait     time.Duration
		wantTimeout float64 // share of turns that hang with turn-timeout
		wantMaxWait float64
	}{
		{"default", 0.05, 0.02, 10 * time.Second, 0.05, 0.02},
		{"more", 0.2, 0.1, 10 * time.Second, 0.2, 0.1},
		{"no max-wait", 0.2, 0.1, 0, 0.2, 0},
		{"none", 0, 0, 10 * time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, func(c *Config) { c.StallShare, c.HelloShare, c.MaxWait = tt.stall, tt.hello, tt.maxWait })
			var turns, timeouts, maxWaits int
			for i := range uint64(4000) {
				sc := s.Script(i, t0)
				sc.scan(func(int64) { turns++ }, func(r stallRec) {
					if r.reason == detector.ReasonMaxWait {
						maxWaits++
					} else {
						timeouts++
					}
				})
			}
			near := func(got int, want float64) bool {
				share := float64(got) / float64(turns)
				return share >= want*0.9-0.002 && share <= want*1.1+0.002
			}
			if !near(timeouts, tt.wantTimeout) || !near(maxWaits, tt.wantMaxWait) {
				t.Errorf("of %d turns, %d turn-timeout and %d max-wait stalls; want shares %v and %v",
					turns, timeouts, maxWaits, tt.wantTimeout, tt.wantMaxWait)
			}
		})
	}
}
