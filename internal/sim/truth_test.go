package sim

import (
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// truthStalls returns the stalls of every call that a run of s started at start has
// started by end.
func truthStalls(s *Sim, start, end time.Time) []Stall {
	var out []Stall
	for slot := range int64(s.cfg.Calls) {
		for sc := s.firstScript(slot, start.UnixMilli()); !sc.Start().After(end); {
			out = append(out, sc.Stalls()...)
			sc = sc.successor(sc.start + sc.scan(nil, nil))
		}
	}
	return out
}

// perfect returns what a perfect engine observes until end: every hang due by then,
// 20ms after its deadline, and every outcome that came by then: the resolution of a
// reply, the unresolved of a caller who hung up.
func perfect(stalls []Stall, end time.Time) []Observation {
	var obs []Observation
	for _, s := range stalls {
		if s.At().After(end) {
			continue
		}
		obs = append(obs, Observation{Kind: detector.KindHang, CallID: s.CallID, FirstUserMessageID: s.FirstUserMessageID,
			Reason: s.Reason, Stage: s.Stage, At: s.At().Add(20 * time.Millisecond)})
		o := Observation{CallID: s.CallID, FirstUserMessageID: s.FirstUserMessageID, Reason: s.Reason, Stage: s.Stage, Wait: s.Wait}
		at := s.Start.Add(s.Reply)
		if s.Resolved {
			o.Kind = detector.KindResolved
		} else {
			o.Kind, o.EndedReason, at = detector.KindUnresolved, s.EndedReason, s.Start.Add(s.End)
		}
		if !at.After(end) {
			o.At = at.Add(5 * time.Millisecond)
			obs = append(obs, o)
		}
	}
	return obs
}

// counts are the counters of a Tally, without the lags.
type counts struct {
	stalls, hangs, resolved, unresolved, missed, false_, duplicates          int
	wrongReason, wrongStage, wrongWait, wrongEnded                           int
	missedResolved, missedUnresolved, falseResolved, falseUnresolved, beyond int
}

func countsOf(t Tally) counts {
	return counts{t.Stalls, t.Hangs, t.Resolved, t.Unresolved, t.Missed, t.False, t.Duplicates,
		t.WrongReason, t.WrongStage, t.WrongWait, t.WrongEndedReason,
		t.MissedResolved, t.MissedUnresolved, t.FalseResolved, t.FalseUnresolved, t.Beyond}
}

func (c counts) minus(o counts) counts {
	return counts{c.stalls - o.stalls, c.hangs - o.hangs, c.resolved - o.resolved, c.unresolved - o.unresolved,
		c.missed - o.missed, c.false_ - o.false_, c.duplicates - o.duplicates,
		c.wrongReason - o.wrongReason, c.wrongStage - o.wrongStage, c.wrongWait - o.wrongWait, c.wrongEnded - o.wrongEnded,
		c.missedResolved - o.missedResolved, c.missedUnresolved - o.missedUnresolved,
		c.falseResolved - o.falseResolved, c.falseUnresolved - o.falseUnresolved, c.beyond - o.beyond}
}

func TestTally(t *testing.T) {
	s := newSim(t, func(c *Config) { stormy(c); c.Calls, c.Ramp = 4, time.Second })
	truth := s.Truth(t0)
	const window = 90 * time.Second
	all := truthStalls(s, t0, t0.Add(window))

	// a is a stall resolved well inside the window, b a stall the caller hung up on.
	var a, b Stall
	for _, st := range all {
		switch {
		case a.CallID == "" && st.Resolved && st.Start.Add(st.Reply).Before(t0.Add(window-10*time.Second)):
			a = st
		case b.CallID == "" && !st.Resolved && st.Start.Add(st.End).Before(t0.Add(window-10*time.Second)):
			b = st
		}
	}
	if a.CallID == "" || b.CallID == "" {
		t.Fatal("the calls have no resolved stall or no hang-up")
	}
	is := func(s Stall, kind detector.Kind) func(Observation) bool {
		return func(o Observation) bool {
			return o.CallID == s.CallID && o.FirstUserMessageID == s.FirstUserMessageID && o.Kind == kind
		}
	}
	without := func(match func(Observation) bool) func([]Observation) []Observation {
		return func(obs []Observation) []Observation {
			var out []Observation
			for _, o := range obs {
				if !match(o) {
					out = append(out, o)
				}
			}
			return out
		}
	}
	change := func(match func(Observation) bool, f func(*Observation)) func([]Observation) []Observation {
		return func(obs []Observation) []Observation {
			for i := range obs {
				if match(obs[i]) {
					f(&obs[i])
				}
			}
			return obs
		}
	}
	twice := func(match func(Observation) bool) func([]Observation) []Observation {
		return func(obs []Observation) []Observation {
			for _, o := range obs {
				if match(o) {
					o.At = o.At.Add(time.Second)
					return append(obs, o)
				}
			}
			return obs
		}
	}
	plus := func(o Observation) func([]Observation) []Observation {
		return func(obs []Observation) []Observation { return append(obs, o) }
	}
	hangAt := func(callID, first string, at time.Time) Observation {
		return Observation{Kind: detector.KindHang, CallID: callID, FirstUserMessageID: first, Reason: detector.ReasonTurnTimeout, At: at}
	}
	resolvedA := Observation{Kind: detector.KindResolved, CallID: a.CallID, FirstUserMessageID: a.FirstUserMessageID,
		Reason: a.Reason, Stage: a.Stage, Wait: a.Wait, At: a.Start.Add(a.Reply)}
	unresolvedOf := func(s Stall) Observation {
		return Observation{Kind: detector.KindUnresolved, CallID: s.CallID, FirstUserMessageID: s.FirstUserMessageID,
			Reason: s.Reason, Stage: s.Stage, Wait: s.Wait, EndedReason: EndedByCustomer, At: t0.Add(time.Minute)}
	}

	tests := []struct {
		name string
		end  time.Time // default: the window
		give func([]Observation) []Observation
		want counts // change from the tally of the perfect observations
	}{
		{name: "perfect", give: nil},
		{name: "missed", give: without(is(a, detector.KindHang)), want: counts{hangs: -1, missed: 1}},
		{name: "duplicate hang", give: twice(is(a, detector.KindHang)), want: counts{duplicates: 1}},
		{name: "duplicate resolution", give: twice(is(a, detector.KindResolved)), want: counts{duplicates: 1}},
		{name: "duplicate unresolved", give: twice(is(b, detector.KindUnresolved)), want: counts{duplicates: 1}},
		{name: "wrong reason", give: change(is(a, detector.KindHang), func(o *Observation) { o.Reason = 3 - o.Reason }),
			want: counts{wrongReason: 1}},
		{name: "wrong stage", give: change(is(a, detector.KindHang), func(o *Observation) { o.Stage = (o.Stage + 1) % 3 }),
			want: counts{wrongStage: 1}},
		{name: "stage missing", give: change(is(a, detector.KindHang), func(o *Observation) { o.Stage = StageUnknown }),
			want: counts{wrongStage: 1}},
		{name: "wrong stage of the resolution", give: change(is(a, detector.KindResolved), func(o *Observation) { o.Stage = (o.Stage + 1) % 3 }),
			want: counts{wrongStage: 1}},
		{name: "false hang of a stretch that must not hang", give: plus(hangAt(a.CallID, "user-999", t0.Add(time.Minute))),
			want: counts{hangs: 1, false_: 1}},
		{name: "false hang duplicated", give: func(obs []Observation) []Observation {
			o := hangAt(a.CallID, "user-999", t0.Add(time.Minute))
			return append(obs, o, o)
		}, want: counts{hangs: 1, false_: 1, duplicates: 1}},
		{name: "false hang of a foreign call", give: plus(hangAt("WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10", "user-1", t0.Add(time.Minute))),
			want: counts{hangs: 1, false_: 1}},
		{name: "unexpected hang after the end", give: plus(hangAt(a.CallID, "user-999", t0.Add(window+time.Second))),
			want: counts{beyond: 1}},
		{name: "resolution missing", give: without(is(a, detector.KindResolved)), want: counts{resolved: -1, missedResolved: 1}},
		{name: "unresolved missing", give: without(is(b, detector.KindUnresolved)), want: counts{unresolved: -1, missedUnresolved: 1}},
		{name: "resolution of a hang-up", give: plus(Observation{Kind: detector.KindResolved, CallID: b.CallID,
			FirstUserMessageID: b.FirstUserMessageID, Reason: b.Reason, Stage: b.Stage, At: t0.Add(time.Minute)}),
			want: counts{falseResolved: 1}},
		{name: "unresolved of a stretch resolved", give: plus(unresolvedOf(a)), want: counts{falseUnresolved: 1}},
		{name: "unresolved of a stretch that never hung", give: plus(unresolvedOf(Stall{CallID: a.CallID, FirstUserMessageID: "user-999"})),
			want: counts{falseUnresolved: 1}},
		{name: "unresolved with the wrong ended reason", give: change(is(b, detector.KindUnresolved), func(o *Observation) { o.EndedReason = EndedByStop }),
			want: counts{wrongEnded: 1}},
		{name: "unresolved with the wrong wait", give: change(is(b, detector.KindUnresolved), func(o *Observation) { o.Wait -= time.Millisecond }),
			want: counts{wrongWait: 1}},
		{name: "resolution of a stretch that never hung", give: plus(Observation{Kind: detector.KindResolved, CallID: a.CallID,
			FirstUserMessageID: "user-999", At: t0.Add(time.Minute)}),
			want: counts{falseResolved: 1}},
		{name: "wrong wait", give: change(is(a, detector.KindResolved), func(o *Observation) { o.Wait += time.Millisecond }),
			want: counts{wrongWait: 1}},
		{name: "deadline after the end, hang observed later", end: a.At().Add(-time.Millisecond),
			give: plus(hangAt(a.CallID, a.FirstUserMessageID, a.At().Add(20*time.Millisecond))), want: counts{beyond: 1}},
		{name: "deadline just before the end, not observed", end: a.At().Add(100 * time.Millisecond),
			give: without(is(a, detector.KindHang)), want: counts{stalls: -1, hangs: -1}},
		{name: "deadline just before the end, observed", end: a.At().Add(100 * time.Millisecond)},
		{name: "reply after the end, resolution observed later", end: a.At().Add(time.Second),
			give: plus(resolvedA), want: counts{beyond: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := tt.end
			if end.IsZero() {
				end = t0.Add(window)
			}
			obs := perfect(all, end)
			base := truth.Tally(obs, end)
			if got := countsOf(base); base.Errors() != 0 || got.beyond != 0 || got.hangs != got.stalls || got.stalls == 0 ||
				got.unresolved == 0 && tt.end.IsZero() {
				t.Fatalf("perfect observations tally %v", base)
			}
			if base.Lag(0) != 20*time.Millisecond || base.Lag(1) != 20*time.Millisecond || base.Calls < s.cfg.Calls || base.Turns == 0 {
				t.Errorf("perfect observations tally %v", base)
			}
			if tt.give != nil {
				obs = tt.give(perfect(all, end))
			}
			got := truth.Tally(obs, end)
			if diff := countsOf(got).minus(countsOf(base)); diff != tt.want {
				t.Errorf("tally %v\nchanged by %+v, want %+v", got, diff, tt.want)
			}
		})
	}
}

// TestTallyStopped checks the outcomes of the stretches still hung when a Runner with
// HangUpOnStop stops: a hang-unresolved ended by the stop, measured to it.
func TestTallyStopped(t *testing.T) {
	s := newSim(t, func(c *Config) { stormy(c); c.Calls, c.Ramp, c.HangUpOnStop = 4, time.Second, true })
	all := truthStalls(s, t0, t0.Add(90*time.Second))
	var c Stall // the end falls 1.5 s after it hangs, its reply or hang-up after the stop
	for _, st := range all {
		at := st.Start.Add(st.Reply)
		if !st.Resolved {
			at = st.Start.Add(st.End)
		}
		if at.Sub(st.At()) > 3*time.Second {
			c = st
			break
		}
	}
	if c.CallID == "" {
		t.Fatal("no stall is hung long enough")
	}
	end := c.At().Add(1500 * time.Millisecond)
	stop := end.Add(500 * time.Millisecond)
	truth := s.Truth(t0)
	truth.stop = stop.UnixMilli()
	tests := []struct {
		name string
		give func(*Observation) bool // false: left out
		want counts
	}{
		{name: "ended by the stop", give: func(*Observation) bool { return true }},
		{name: "not observed", give: func(*Observation) bool { return false }, want: counts{unresolved: -1, missedUnresolved: 1}},
		{name: "wrong ended reason", give: func(o *Observation) bool { o.EndedReason = EndedByCustomer; return true },
			want: counts{wrongEnded: 1}},
		{name: "wrong wait", give: func(o *Observation) bool { o.Wait += time.Second; return true },
			want: counts{wrongWait: 1}},
	}
	stopped := Observation{Kind: detector.KindUnresolved, CallID: c.CallID, FirstUserMessageID: c.FirstUserMessageID,
		Reason: c.Reason, Stage: c.Stage, EndedReason: EndedByStop, Wait: waitToStop(s, c, stop), At: stop}
	base := truth.Tally(append(perfect(truthStalls(s, t0, end), end), stopped), end)
	if base.Errors() != 0 || base.Unresolved == 0 {
		t.Fatalf("perfect observations tally %v", base)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := perfect(truthStalls(s, t0, end), end)
			o := stopped
			if tt.give(&o) {
				obs = append(obs, o)
			}
			got := truth.Tally(obs, end)
			if diff := countsOf(got).minus(countsOf(base)); diff != tt.want {
				t.Errorf("tally %v\nchanged by %+v, want %+v", got, diff, tt.want)
			}
		})
	}
}

// waitToStop returns the wait of stall c's hang-unresolved when the stop ends its call.
func waitToStop(s *Sim, c Stall, stop time.Time) time.Duration {
	index, _ := s.ParseCallID(c.CallID)
	first, _ := parseUserID(c.FirstUserMessageID)
	sc := s.scriptAt(index, c.Start.UnixMilli())
	var firstAt int64
	sc.scan(nil, func(r stallRec) {
		if r.first == first {
			firstAt = r.firstAt
		}
	})
	return time.Duration(stop.UnixMilli()-sc.start-firstAt) * time.Millisecond
}

func TestTallySummary(t *testing.T) {
	tally := Tally{Calls: 200, Turns: 1500, Stalls: 100, Hangs: 101, Resolved: 90, Missed: 1, False: 2,
		Lags: []time.Duration{time.Millisecond, 2 * time.Millisecond, 9 * time.Millisecond}}
	tally.Unresolved, tally.Stages = 8, [3]int{80, 15, 5}
	want := "calls=200 turns=1500 stalls=100 hangs=101 resolved=90 unresolved=8 missed=1 false=2 duplicates=0" +
		" awaiting_assistant=80 awaiting_tool=15 after_tool=5 wrong_reason=0 wrong_stage=0 wrong_wait=0 wrong_ended_reason=0" +
		" missed_resolved=0 missed_unresolved=0 false_resolved=0 false_unresolved=0 beyond=0 lag_p50=2ms lag_p99=9ms lag_max=9ms"
	if got := tally.Summary(); got != want {
		t.Errorf("Summary() =\n%s\nwant\n%s", got, want)
	}
}

func TestTruthExpect(t *testing.T) {
	s := newSim(t, func(c *Config) { stormy(c); c.Calls, c.Ramp = 3, time.Second })
	truth := s.Truth(t0)
	stalls := truthStalls(s, t0, t0.Add(3*time.Minute))
	if len(stalls) == 0 {
		t.Fatal("no stall")
	}
	for _, want := range stalls {
		got, ok := truth.Expect(want.CallID, want.FirstUserMessageID)
		if !ok || got != want {
			t.Errorf("Expect(%s, %s) = %+v, %v, want %+v", want.CallID, want.FirstUserMessageID, got, ok, want)
		}
	}
	tests := []struct {
		name        string
		call, first string
	}{
		{"unknown stretch", stalls[0].CallID, "user-999"},
		{"foreign call", "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10", "user-1"},
		{"bad user id", stalls[0].CallID, "welcome-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := truth.Expect(tt.call, tt.first); ok {
				t.Errorf("Expect(%s, %s) = %+v, want none", tt.call, tt.first, got)
			}
		})
	}
	r := NewRunner(s, func(string, []byte) error { return nil })
	if _, ok := r.Truth().Expect(stalls[0].CallID, stalls[0].FirstUserMessageID); ok {
		t.Error("a runner that has not started expects a stall")
	}
	if got := r.Truth().Tally(perfect(stalls, t0.Add(time.Hour)), t0.Add(time.Hour)); got.Calls != 0 || got.False != got.Hangs {
		t.Errorf("a runner that has not started tallies %v", got)
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct {
		give string
		want detector.Reason
	}{
		{"turn-timeout", detector.ReasonTurnTimeout},
		{"max-wait", detector.ReasonMaxWait},
		{"", 0},
		{"Turn-Timeout", 0},
	}
	for _, tt := range tests {
		if got := ParseReason(tt.give); got != tt.want {
			t.Errorf("ParseReason(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestParseObservation(t *testing.T) {
	received := time.Unix(1_763_647_400, 123_456_789)
	tests := []struct {
		name    string
		give    string
		at      time.Time
		want    Observation
		wantErr bool
	}{
		{
			name: "hang, received",
			give: `{"message":{"timestamp":1763647400120,"type":"hang","call":{"id":"c1","teamId":"t"},` +
				`"hang":{"reason":"max-wait","stage":"awaiting-tool","userMessageId":"user-3","firstUserMessageId":"user-2","waitMs":10000}}}`,
			at: received,
			want: Observation{Kind: detector.KindHang, CallID: "c1", FirstUserMessageID: "user-2",
				Reason: detector.ReasonMaxWait, Stage: detector.StageAwaitingTool, Wait: 10 * time.Second, At: received},
		},
		{
			name: "resolved, at its timestamp",
			give: `{"message":{"timestamp":1763647400120,"type":"hang-resolved","call":{"id":"c1"},` +
				`"hang":{"firstUserMessageId":"user-2","stage":"after-tool","replyMessageId":"r","waitMs":7100}}}`,
			want: Observation{Kind: detector.KindResolved, CallID: "c1", FirstUserMessageID: "user-2",
				Stage: detector.StageAfterTool, Wait: 7100 * time.Millisecond, At: time.UnixMilli(1763647400120)},
		},
		{
			name: "unresolved",
			give: `{"message":{"timestamp":1763647400120,"type":"hang-unresolved","call":{"id":"c1"},` +
				`"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","firstUserMessageId":"user-2","waitMs":9000,"endedReason":"customer-ended-call"}}}`,
			want: Observation{Kind: detector.KindUnresolved, CallID: "c1", FirstUserMessageID: "user-2", Reason: detector.ReasonTurnTimeout,
				Wait: 9 * time.Second, EndedReason: "customer-ended-call", At: time.UnixMilli(1763647400120)},
		},
		{
			name: "stage missing",
			give: `{"message":{"timestamp":1763647400120,"type":"hang","call":{"id":"c1"},"hang":{"firstUserMessageId":"user-2"}}}`,
			want: Observation{Kind: detector.KindHang, CallID: "c1", FirstUserMessageID: "user-2", Stage: StageUnknown,
				At: time.UnixMilli(1763647400120)},
		},
		{name: "not JSON", give: `bench-marker 1`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseObservation([]byte(tt.give), tt.at)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseObservation() error = %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && (got != tt.want || !got.At.Equal(tt.want.At)) {
				t.Errorf("ParseObservation() = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		give []time.Duration
		q    float64
		want time.Duration
	}{
		{give: nil, q: 0.5, want: 0},
		{give: ms(7), q: 0, want: 7 * time.Millisecond},
		{give: ms(1, 2, 3, 4), q: 0.5, want: 2 * time.Millisecond},
		{give: ms(1, 2, 3, 4), q: 0.51, want: 3 * time.Millisecond},
		{give: ms(1, 2, 3, 4), q: 0.99, want: 4 * time.Millisecond},
		{give: ms(1, 2, 3, 4), q: 1, want: 4 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Quantile(tt.give, tt.q); got != tt.want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", tt.give, tt.q, got, tt.want)
		}
	}
}
