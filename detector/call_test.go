package detector

import (
	"slices"
	"testing"
	"time"
)

const (
	hang   = KindHang
	res    = KindResolved
	turnTO = ReasonTurnTimeout
	mw     = ReasonMaxWait
)

func TestCall(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config // nil: DefaultConfig
		give []op
		want []out
	}{
		{
			name: "reply in time: no hang",
			give: []op{
				conv(0, greeting("w", 0)),
				conv(1000, greeting("w", 0), hello("user-1", 1000)),
				conv(3000, greeting("w", 0), hello("user-1", 1000), reply("user-1-x", 2990)),
				tick(60_000),
			},
		},
		{
			name: "turn timeout: hang at anchor+5s carrying the latest snapshot",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(5999),
				tick(6000),
				tick(9000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "the deadline runs from the anchor, not from arrival",
			give: []op{
				conv(1400, hello("user-1", 1000)), // arrived 400 ms after the turn ended
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a backlog never makes a hang out of the past: anchor clamped to received-max-lag",
			give: []op{
				conv(30_000, hello("user-1", 1000)), // 29 s late
				tick(33_999),
				tick(34_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 34_000, wait: 5000,
				threshold: 5000, deadline: 34_000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a timestamp from the future is clamped to received",
			give: []op{
				conv(1000, hello("user-1", 9000)),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a message without timestamp is anchored at received",
			give: []op{
				conv(1000, hello("user-1", noTS)),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "each user turn re-arms the turn timeout",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(4000, hello("user-1", 1000), hello("user-2", 4000)),
				tick(8999),
				tick(9000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 9000, wait: 5000,
				threshold: 5000, deadline: 9000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "max wait catches the caller who keeps saying hello",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(4000, hello("user-1", 1000), hello("user-2", 4000)),
				conv(8000, hello("user-1", 1000), hello("user-2", 4000), hello("user-3", 8000)),
				tick(10_999),
				tick(11_000),
				conv(12_000, hello("user-1", 1000), hello("user-2", 4000), hello("user-3", 8000), hello("user-4", 12_000)),
				tick(20_000),
			},
			want: []out{{kind: hang, reason: mw, user: "user-3", first: "user-1", at: 11_000, wait: 10_000,
				threshold: 10_000, deadline: 11_000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "max wait 0 disables it",
			cfg:  &Config{Timeout: 5 * time.Second, MaxLag: time.Second, CallTTL: time.Hour},
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(4000, hello("user-1", 1000), hello("user-2", 4000)),
				conv(8000, hello("user-1", 1000), hello("user-2", 4000), hello("user-3", 8000)),
				tick(12_999),
				tick(13_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-3", first: "user-1", at: 13_000, wait: 5000,
				threshold: 5000, deadline: 13_000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "on a tie the turn timeout wins",
			cfg:  &Config{Timeout: 5 * time.Second, MaxWait: 8 * time.Second, MaxLag: time.Second, CallTTL: time.Hour},
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(4000, hello("user-1", 1000), hello("user-2", 4000)),
				tick(9000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 9000, wait: 5000,
				threshold: 5000, deadline: 9000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "one hang per stretch, then one resolved with the wait from the first turn to the reply",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(6000),
				conv(7000, hello("user-1", 1000), hello("user-2", 7000)),
				tick(20_000),
				conv(21_000, hello("user-1", 1000), hello("user-2", 7000), reply("user-2-x", 20_990)),
				conv(21_500, hello("user-1", 1000), hello("user-2", 7000), reply("user-2-x", 20_990)),
				tick(40_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
					threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-1", reply: "user-2-x", at: 21_000,
					wait: 19_990, snapshot: "e4", latest: "e4"},
			},
		},
		{
			name: "a call hangs once per stretch, many times",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(7000, hello("user-1", 1000), reply("r1", 7000)),
				conv(8000, hello("user-1", 1000), reply("r1", 7000), hello("user-2", 8000)),
				conv(14_000, hello("user-1", 1000), reply("r1", 7000), hello("user-2", 8000), reply("r2", 14_000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 6000, snapshot: "e1", latest: "e1"},
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 13_000, wait: 5000, threshold: 5000, deadline: 13_000, snapshot: "e2", latest: "e2"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-2", reply: "r2", at: 14_000, wait: 6000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "a reply that was not late resolves nothing",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(4000, hello("user-1", 1000), reply("r1", 4000)),
				tick(30_000),
			},
		},
		{
			name: "an empty reply is no reply",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(2000, hello("user-1", 1000), silent("r0", 2000)),
				tick(6000),
				conv(8000, hello("user-1", 1000), silent("r0", 2000), reply("r1", 8000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "a bot message is a reply, a tool call or system note is none",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(2000, hello("user-1", 1000), r("t1", "tool", 2000), r("s1", "system", 2000)),
				tick(6000),
				conv(7000, hello("user-1", 1000), r("t1", "tool", 2000), r("s1", "system", 2000), r("b1", "BOT", 7000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "b1", at: 7000, wait: 6000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "a user message with only white space is no user turn",
			give: []op{
				conv(1000, u("user-1", " \t\n", 1000)),
				tick(30_000),
			},
		},
		{
			name: "a greeting is no reply: the stretch starts at the first user turn",
			give: []op{
				conv(0, greeting("w", 0), greeting("w2", 100)),
				conv(1000, greeting("w", 0), greeting("w2", 100), hello("user-1", 1000)),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "the resolved never reports a negative wait",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(6000),
				conv(6100, hello("user-1", 1000), reply("r1", -5000)), // the pipeline's clock is off
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 6100, wait: 4100, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the resolved wait is 0 when the reply is anchored before the first user turn",
			// A max lag above the timeout lets the reply's anchor fall before the hung turn's.
			cfg: &Config{Timeout: time.Second, MaxLag: 5 * time.Second, CallTTL: time.Hour},
			give: []op{
				conv(1000, hello("user-1", noTS)),
				tick(2000),
				conv(2500, hello("user-1", noTS), reply("r1", -10_000)), // anchored at 2500-5000
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 2000, wait: 1000, threshold: 1000, deadline: 2000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 2500, wait: 0, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the hang carries the call of the latest event and the history of the latest snapshot",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				status(2000, StatusOngoing),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e1"}},
		},
		{
			name: "end-of-call-report ends the call: timers cancelled",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				endReport(3000),
				tick(60_000),
			},
		},
		{
			name: "end-of-call-report ends the call whatever its status: ongoing",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				endReportWith(3000, StatusOngoing),
				tick(60_000),
			},
		},
		{
			name: "end-of-call-report ends the call whatever its status: none",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				endReportWith(3000, StatusUnknown),
				tick(60_000),
			},
		},
		{
			name: "status finished ends the call",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				status(3000, StatusFinished),
				tick(60_000),
			},
		},
		{
			name: "status forwarded ends the call",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				status(3000, StatusForwarded),
				tick(60_000),
			},
		},
		{
			name: "no resolved after the end, even if the last event carries the reply",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(6000),
				endReport(8000, hello("user-1", 1000), reply("r1", 8000)),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a late event does not resurrect an ended call",
			give: []op{
				status(0, StatusFinished),
				conv(1000, hello("user-1", 1000)),
				status(1500, StatusOngoing),
				conv(2000, hello("user-1", 1000), hello("user-2", 2000)),
				tick(60_000),
			},
		},
		{
			name: "a stale snapshot is ignored",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(2000, hello("user-1", 1000), reply("r1", 2000)),
				conv(2100, hello("user-1", 1000)), // arrives after the reply
				tick(60_000),
			},
		},
		{
			name: "the same snapshot twice changes nothing",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(3000, hello("user-1", 1000)), // a duplicate must not re-arm the timer
				tick(6000),
				conv(7000, hello("user-1", 1000), reply("r1", 7000)),
				conv(7500, hello("user-1", 1000), reply("r1", 7000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 6000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "lost updates: a stretch first seen late is anchored at its arrival",
			give: []op{
				conv(0, greeting("w", 0)),
				conv(9000, greeting("w", 0), hello("user-1", 1000), reply("r1", 2000), hello("user-2", 3000), hello("user-3", 8700)),
				tick(13_000),
				tick(13_700),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-3", first: "user-2", at: 13_700, wait: 5000, threshold: 5000, deadline: 13_700, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "lost updates: the reply that resolves is the first one after the hung stretch",
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(6000),
				conv(20_000, hello("user-1", 1000), reply("r1", 9000), hello("user-2", 10_000), reply("r2", 11_000), hello("user-3", 19_800)),
				tick(24_800),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 20_000, wait: 18_000, snapshot: "e2", latest: "e2"},
				{kind: hang, reason: turnTO, user: "user-3", first: "user-3", at: 24_800, wait: 5000, threshold: 5000, deadline: 24_800, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "own output events are ignored",
			give: []op{
				typed(1000, TypeOutput),
				conv(2000, hello("user-1", 2000)),
				typed(3000, TypeOutput),
				tick(7000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "other event types only carry status",
			give: []op{
				typed(1000, TypeOther),
				conv(2000, hello("user-1", 2000)),
				typed(3000, TypeOther),
				tick(7000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e2"}},
		},
		{
			name: "a message without messageId is named by its index",
			give: []op{
				conv(1000, greeting("w", 0), hello("", 1000)),
				tick(6000),
				conv(7000, greeting("w", 0), hello("", 1000), reply("", 7000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "#1", first: "#1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "#1", first: "#1", reply: "#2", at: 7000, wait: 6000, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "a call with no event for the call TTL is forgotten and starts afresh",
			cfg:  &Config{Timeout: 5 * time.Second, MaxWait: 10 * time.Second, MaxLag: time.Second, CallTTL: time.Minute},
			give: []op{
				conv(1000, hello("user-1", 1000), reply("r1", 2000)),
				tick(61_999),
				tick(62_000),
				// A fresh call applies any snapshot: this one would be stale before.
				conv(63_000, hello("user-1", 63_000)),
				tick(68_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 68_000, wait: 5000, threshold: 5000, deadline: 68_000, snapshot: "e3", latest: "e3"}},
		},
		{
			name: "an ended call is remembered for the call TTL after its last event",
			cfg:  &Config{Timeout: 5 * time.Second, MaxWait: 10 * time.Second, MaxLag: time.Second, CallTTL: time.Minute},
			give: []op{
				status(0, StatusFinished),
				conv(50_000, hello("user-1", 50_000)), // late: ignored, but keeps the tombstone
				conv(100_000, hello("user-1", 100_000)),
				tick(200_000),
			},
		},
		{
			name: "the call TTL runs from the newest event, even if an older one arrives last",
			cfg:  &Config{Timeout: 5 * time.Second, MaxWait: 10 * time.Second, MaxLag: time.Second, CallTTL: time.Minute},
			give: []op{
				conv(1000, hello("user-1", 1000), reply("r1", 2000)),
				status(30_000, StatusFinished),
				status(10_000, StatusFinished), // a late copy, received (stored) earlier
				// Remembered until 90_000: a late snapshot must not resurrect the call.
				conv(80_000, hello("user-1", 1000), reply("r1", 2000), hello("user-2", 80_000)),
				tick(200_000),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got, _, _ := run(cfg, tt.give)
			if !slices.Equal(got, tt.want) {
				t.Errorf("outputs differ\n got: %v\nwant: %v", got, tt.want)
			}
		})
	}
}

// TestCallFixtureTimeline replays the call of ../shared/fixtures (see its README): with
// the defaults it never hangs; with a 3 s timeout it hangs once on user-2 and resolves
// with a wait of 7100 ms. Times are the fixtures' own, in ms after t0.
func TestCallFixtureTimeline(t *testing.T) {
	w := a("welcome-1", "Thanks for calling Northside clinic. How can I help?", 687)
	u1 := u("user-1", "Hi, I need to move my appointment.", 5507)
	r1 := a("user-1-Qx81LmZp2a-1763647338957", "Of course. What day works better for you?", 8307)
	u2 := u("user-2", "Thursday afternoon if possible.", 12_707)
	u3 := u("user-3", "Hello? Are you there?", 16_507)
	r3 := a("user-3-Qx81LmZp2a-1763647350457", "Sorry about that. Thursday at 3 PM is open. Shall I book it?", 19_807)
	ops := []op{
		status(427, StatusOngoing),
		conv(697, w),
		conv(5522, w, u1),
		conv(8319, w, u1, r1),
		conv(12_718, w, u1, r1, u2),
		conv(16_521, w, u1, r1, u2, u3),
		conv(19_816, w, u1, r1, u2, u3, r3),
		endReport(31_407),
		tick(3_600_000),
	}
	tests := []struct {
		name    string
		timeout time.Duration
		want    []out
	}{
		{name: "defaults: no hang", timeout: 5 * time.Second},
		{
			name:    "timeout 3s: one hang on user-2, resolved after 7100 ms",
			timeout: 3 * time.Second,
			want: []out{
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 15_707, wait: 3000, threshold: 3000, deadline: 15_707, snapshot: "e4", latest: "e4"},
				{kind: res, reason: turnTO, user: "user-3", first: "user-2", reply: "user-3-Qx81LmZp2a-1763647350457", at: 19_816, wait: 7100, snapshot: "e6", latest: "e6"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Timeout = tt.timeout
			got, c, _ := run(cfg, ops)
			if !slices.Equal(got, tt.want) {
				t.Errorf("outputs differ\n got: %v\nwant: %v", got, tt.want)
			}
			if c.State() != StateEnded {
				t.Errorf("state after the end-of-call-report = %v, want ended", c.State())
			}
		})
	}
}

func TestCallState(t *testing.T) {
	tests := []struct {
		name         string
		give         []op
		wantState    State
		wantRetained int
	}{
		{name: "new", give: nil, wantState: StateIdle},
		{name: "idle call keeps no history", give: []op{conv(0, greeting("w", 0))}, wantState: StateIdle},
		{name: "answered keeps no history", give: []op{conv(0, hello("u", 0), reply("r", 10))}, wantState: StateIdle},
		{name: "armed keeps the snapshot", give: []op{conv(0, hello("u", 0))}, wantState: StateArmed, wantRetained: 2},
		{name: "armed keeps the latest event too", give: []op{conv(0, hello("u", 0)), status(10, StatusOngoing)}, wantState: StateArmed, wantRetained: 4},
		{name: "hung lets it go", give: []op{conv(0, hello("u", 0)), tick(5000)}, wantState: StateHung},
		{
			name:      "hung keeps none of the events that follow",
			give:      []op{conv(0, hello("u", 0)), tick(5000), status(6000, StatusOngoing), conv(7000, hello("u", 0), hello("u2", 7000))},
			wantState: StateHung,
		},
		{name: "ended", give: []op{conv(0, hello("u", 0)), endReport(10)}, wantState: StateEnded},
		{name: "ended by a report with status ongoing", give: []op{conv(0, hello("u", 0)), endReportWith(10, StatusOngoing), tick(5000)}, wantState: StateEnded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, _ := run(DefaultConfig(), tt.give)
			if got := c.State(); got != tt.wantState {
				t.Errorf("State() = %v, want %v", got, tt.wantState)
			}
			if got := c.Retained(); got != tt.wantRetained {
				t.Errorf("Retained() = %d, want %d", got, tt.wantRetained)
			}
		})
	}
}

func TestCallStepFlags(t *testing.T) {
	_, _, steps := run(DefaultConfig(), []op{
		conv(0, hello("u", 0), reply("r", 10)),
		conv(100, hello("u", 0)), // stale
		typed(200, TypeOutput),
		endReport(300),
		conv(400, hello("u", 0), reply("r", 10), hello("u2", 400)), // after the end
	})
	var got [][2]bool
	for _, s := range steps {
		got = append(got, [2]bool{s.Ended, s.Ignored})
	}
	want := [][2]bool{{false, false}, {false, true}, {false, true}, {true, false}, {false, true}}
	if !slices.Equal(got, want) {
		t.Errorf("(Ended, Ignored) per step = %v, want %v", got, want)
	}
}

// aliased returns a snapshot with one user turn whose id aliases buf, as the decoder's
// ids alias the payload.
func aliased(buf []byte, messages int32, at int64) Event {
	id := unsafeString(buf)
	return Event{Type: TypeConversationUpdate, Messages: messages, Received: ms(at), Payload: payload(string(buf)),
		Stretches: []Stretch{{First: Turn{ID: id, Index: messages - 1}, Last: Turn{ID: id, Index: messages - 1}}}}
}

// The ids of a stretch may alias its snapshot while the call keeps it; the call copies
// them before it lets the snapshot go, at the hang or for a newer snapshot. The bytes
// are overwritten once let go, as memory that is no longer kept may be.
func TestCallIDsOutliveTheSnapshot(t *testing.T) {
	cfg := DefaultConfig()
	t.Run("hang", func(t *testing.T) {
		buf := []byte("user-1")
		var c Call
		ev := aliased(buf, 1, 0)
		c.Apply(&cfg, &ev)
		hang := c.Tick(&cfg, ms(5000)).Output
		if hang == nil || hang.FirstUserMessageID != "user-1" {
			t.Fatalf("hang = %+v, want one for user-1", hang)
		}
		copy(buf, "XXXXXX")
		answer := conv(6000, hello("user-1", 0), reply("r", 6000)).ev
		answer.Received = ms(6000)
		out := c.Apply(&cfg, answer).Output
		if out == nil || out.FirstUserMessageID != "user-1" || out.UserMessageID != "user-1" {
			t.Errorf("resolved = %+v, want the ids of user-1", out)
		}
	})
	t.Run("newer snapshot", func(t *testing.T) {
		first, second := []byte("user-1"), []byte("user-2")
		var c Call
		ev := aliased(first, 1, 0)
		c.Apply(&cfg, &ev)
		ev2 := aliased(second, 2, 1000)
		ev2.Stretches[0].First.ID, ev2.Stretches[0].First.Index = "user-1", 0
		c.Apply(&cfg, &ev2)
		copy(first, "XXXXXX")
		hang := c.Tick(&cfg, ms(6000)).Output
		if hang == nil || hang.FirstUserMessageID != "user-1" || hang.UserMessageID != "user-2" {
			t.Errorf("hang = %+v, want first user-1, last user-2", hang)
		}
	})
	t.Run("a later new turn", func(t *testing.T) {
		third := []byte("user-3")
		var c Call
		for i, id := range []string{"user-1", "user-2"} {
			ev := aliased([]byte(id), int32(i+1), int64(i)*1000)
			ev.Stretches[0].First.ID, ev.Stretches[0].First.Index = "user-1", 0
			c.Apply(&cfg, &ev)
		}
		ev3 := aliased(third, 3, 2000) // the ids are copies already: user-3's is copied alone
		ev3.Stretches[0].First.ID, ev3.Stretches[0].First.Index = "user-1", 0
		c.Apply(&cfg, &ev3)
		ev4 := aliased([]byte("user-3"), 3, 3000) // one more message, no new user turn
		ev4.Messages = 4
		ev4.Stretches[0].First.ID, ev4.Stretches[0].First.Index = "user-1", 0
		c.Apply(&cfg, &ev4)
		copy(third, "XXXXXX")
		hang := c.Tick(&cfg, ms(7000)).Output
		if hang == nil || hang.FirstUserMessageID != "user-1" || hang.UserMessageID != "user-3" {
			t.Errorf("hang = %+v, want first user-1, last user-3", hang)
		}
	})
}

// TestCallGrowthCopiesIDsOnce checks that the first new user turn of a stretch costs one
// allocation: the ids of the first and the new latest turn are copied together.
func TestCallGrowthCopiesIDsOnce(t *testing.T) {
	cfg := DefaultConfig()
	ask := *conv(0, hello("user-1", 0)).ev
	again := *conv(1000, hello("user-1", 0), hello("user-2", 1000)).ev
	ask.Received, ask.Payload = ms(0), payload("e0")
	again.Received, again.Payload = ms(1000), payload("e1")
	arm := testing.AllocsPerRun(100, func() {
		var c Call
		c.Apply(&cfg, &ask)
	})
	grow := testing.AllocsPerRun(100, func() {
		var c Call
		c.Apply(&cfg, &ask)
		c.Apply(&cfg, &again)
	})
	if grow-arm != 1 {
		t.Errorf("the first new user turn cost %v allocations, want 1", grow-arm)
	}
}
