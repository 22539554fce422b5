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
// 20ms after its deadline, and every resolution whose reply came by then.
func perfect(stalls []Stall, end time.Time) []Observation {
	var obs []Observation
	for _, s := range stalls {
		if s.At().After(end) {
			continue
		}
		obs = append(obs, Observation{Kind: detector.KindHang, CallID: s.CallID, FirstUserMessageID: s.FirstUserMessageID,
			Reason: s.Reason, At: s.At().Add(20 * time.Millisecond)})
		if reply := s.Start.Add(s.Reply); s.Resolved && !reply.After(end) {
			obs = append(obs, Observation{Kind: detector.KindResolved, CallID: s.CallID, FirstUserMessageID: s.FirstUserMessageID,
				Reason: s.Reason, Wait: s.Wait, At: reply.Add(5 * time.Millisecond)})
		}
	}
	return obs
}

// counts are the counters of a Tally, without the lags.
type counts struct {
	stalls, hangs, resolved, missed, false_, duplicates, wrongReason, unresolved, falseResolved, wrongWait, beyond int
}

func countsOf(t Tally) counts {
	return counts{t.Stalls, t.Hangs, t.Resolved, t.Missed, t.False, t.Duplicates, t.WrongReason,
		t.Unresolved, t.FalseResolved, t.WrongWait, t.Beyond}
}

func (c counts) minus(o counts) counts {
	return counts{c.stalls - o.stalls, c.hangs - o.hangs, c.resolved - o.resolved, c.missed - o.missed,
		c.false_ - o.false_, c.duplicates - o.duplicates, c.wrongReason - o.wrongReason, c.unresolved - o.unresolved,
		c.falseResolved - o.falseResolved, c.wrongWait - o.wrongWait, c.beyond - o.beyond}
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
		case b.CallID == "" && !st.Resolved && st.At().Before(t0.Add(window-10*time.Second)):
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
		Reason: a.Reason, Wait: a.Wait, At: a.Start.Add(a.Reply)}

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
		{name: "wrong reason", give: change(is(a, detector.KindHang), func(o *Observation) { o.Reason = 3 - o.Reason }),
			want: counts{wrongReason: 1}},
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
		{name: "resolution missing", give: without(is(a, detector.KindResolved)), want: counts{resolved: -1, unresolved: 1}},
		{name: "resolution of a hang-up", give: plus(Observation{Kind: detector.KindResolved, CallID: b.CallID,
			FirstUserMessageID: b.FirstUserMessageID, Reason: b.Reason, At: t0.Add(time.Minute)}),
			want: counts{falseResolved: 1}},
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
			if got := countsOf(base); got.missed+got.false_+got.duplicates+got.wrongReason+got.unresolved+
				got.falseResolved+got.wrongWait+got.beyond != 0 || got.hangs != got.stalls || got.stalls == 0 {
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

func TestTallySummary(t *testing.T) {
	tally := Tally{Calls: 200, Turns: 1500, Stalls: 100, Hangs: 101, Resolved: 90, Missed: 1, False: 2,
		Lags: []time.Duration{time.Millisecond, 2 * time.Millisecond, 9 * time.Millisecond}}
	want := "calls=200 turns=1500 stalls=100 hangs=101 resolved=90 missed=1 false=2 duplicates=0 wrong_reason=0" +
		" unresolved=0 false_resolved=0 wrong_wait=0 beyond=0 lag_p50=2ms lag_p99=9ms lag_max=9ms"
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
				`"hang":{"reason":"max-wait","userMessageId":"user-3","firstUserMessageId":"user-2","waitMs":10000}}}`,
			at: received,
			want: Observation{Kind: detector.KindHang, CallID: "c1", FirstUserMessageID: "user-2",
				Reason: detector.ReasonMaxWait, Wait: 10 * time.Second, At: received},
		},
		{
			name: "resolved, at its timestamp",
			give: `{"message":{"timestamp":1763647400120,"type":"hang-resolved","call":{"id":"c1"},` +
				`"hang":{"firstUserMessageId":"user-2","replyMessageId":"r","waitMs":7100}}}`,
			want: Observation{Kind: detector.KindResolved, CallID: "c1", FirstUserMessageID: "user-2",
				Wait: 7100 * time.Millisecond, At: time.UnixMilli(1763647400120)},
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
