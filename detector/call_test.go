package detector

import (
	"slices"
	"testing"
	"time"
	"unsafe"
)

const (
	hang      = KindHang
	res       = KindResolved
	unres     = KindUnresolved
	turnTO    = ReasonTurnTimeout
	mw        = ReasonMaxWait
	awaitTool = StageAwaitingTool
	afterTool = StageAfterTool
)

// conf returns a valid configuration with the given thresholds, a max lag of 1 s and a
// call TTL of an hour.
func conf(timeout, maxWait, toolTimeout time.Duration) Config {
	return Config{
		Thresholds: Thresholds{Timeout: timeout, MaxWait: maxWait, ToolTimeout: toolTimeout},
		MaxLag:     time.Second,
		CallTTL:    time.Hour,
	}
}

// disabled returns the defaults with detection disabled, as for a team that opted out.
func disabled() Config {
	c := DefaultConfig()
	c.Disabled = true
	return c
}

// callTest is a row of the timeline tables: ops run by the harness, and the outputs.
type callTest struct {
	name string
	cfg  *Config // nil: DefaultConfig
	give []op
	want []out
}

func runCallTests(t *testing.T, tests []callTest) {
	t.Helper()
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

func ptr[T any](v T) *T { return &v }

func TestCallDeadlines(t *testing.T) {
	u1 := hello("user-1", 1000)
	tests := []callTest{
		{
			name: "reply in time: no hang",
			give: []op{
				conv(0, greeting("w", 0)),
				conv(1000, greeting("w", 0), u1),
				conv(3000, greeting("w", 0), u1, reply("user-1-x", 2990)),
				tick(60_000),
			},
		},
		{
			name: "turn timeout: hang at anchor+5s carrying the latest snapshot",
			give: []op{conv(1000, u1), tick(5999), tick(6000), tick(9000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "the deadline runs from the anchor, not from arrival",
			give: []op{conv(1400, u1), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a backlog never makes a hang out of the past: anchor clamped to received-max-lag",
			give: []op{conv(30_000, u1), tick(33_999), tick(34_000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 34_000, wait: 5000,
				threshold: 5000, deadline: 34_000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a timestamp from the future is clamped to received",
			give: []op{conv(1000, hello("user-1", 9000)), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a message without timestamp is anchored at received",
			give: []op{conv(1000, hello("user-1", noTS)), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			// Read as Unix time 0, it would be clamped to received-max-lag: a hang at 5000.
			name: "a timestamp of 0 is no timestamp",
			give: []op{conv(1000, hello("user-1", -t0)), tick(5000), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "each user turn re-arms the turn timeout",
			give: []op{conv(1000, u1), conv(4000, u1, hello("user-2", 4000)), tick(8999), tick(9000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 9000, wait: 5000,
				threshold: 5000, deadline: 9000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "max wait catches the caller who keeps saying hello",
			give: []op{
				conv(1000, u1),
				conv(4000, u1, hello("user-2", 4000)),
				conv(8000, u1, hello("user-2", 4000), hello("user-3", 8000)),
				tick(10_999),
				tick(11_000),
				conv(12_000, u1, hello("user-2", 4000), hello("user-3", 8000), hello("user-4", 12_000)),
				tick(20_000),
			},
			want: []out{{kind: hang, reason: mw, user: "user-3", first: "user-1", at: 11_000, wait: 10_000,
				threshold: 10_000, deadline: 11_000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "max wait 0 disables it",
			cfg:  ptr(conf(5*time.Second, 0, 0)),
			give: []op{
				conv(1000, u1),
				conv(4000, u1, hello("user-2", 4000)),
				conv(8000, u1, hello("user-2", 4000), hello("user-3", 8000)),
				tick(12_999),
				tick(13_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-3", first: "user-1", at: 13_000, wait: 5000,
				threshold: 5000, deadline: 13_000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "on a tie the turn timeout wins",
			cfg:  ptr(conf(5*time.Second, 8*time.Second, 0)),
			give: []op{conv(1000, u1), conv(4000, u1, hello("user-2", 4000)), tick(9000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 9000, wait: 5000,
				threshold: 5000, deadline: 9000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "one hang per stretch, then one resolved with the wait from the first turn to the reply",
			give: []op{
				conv(1000, u1),
				tick(6000),
				conv(7000, u1, hello("user-2", 7000)),
				tick(20_000),
				conv(21_000, u1, hello("user-2", 7000), reply("user-2-x", 20_990)),
				conv(21_500, u1, hello("user-2", 7000), reply("user-2-x", 20_990)),
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
				conv(1000, u1),
				conv(7000, u1, reply("r1", 7000)),
				conv(8000, u1, reply("r1", 7000), hello("user-2", 8000)),
				conv(14_000, u1, reply("r1", 7000), hello("user-2", 8000), reply("r2", 14_000)),
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
			give: []op{conv(1000, u1), conv(4000, u1, reply("r1", 4000)), tick(30_000)},
		},
		{
			name: "an empty reply is no reply",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("r0", 2000)),
				tick(6000),
				conv(8000, u1, silent("r0", 2000), reply("r1", 8000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "a bot message is a reply, a system note is none",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, other("s1", "system", 2000)),
				tick(6000),
				conv(7000, u1, other("s1", "system", 2000), other("b1", "BOT", 7000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "b1", at: 7000, wait: 6000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "a user message with only white space is no user turn",
			give: []op{conv(1000, u("user-1", " \t\n", 1000)), tick(30_000)},
		},
		{
			name: "a greeting is no reply: the stretch starts at the first user turn",
			give: []op{
				conv(0, greeting("w", 0), greeting("w2", 100)),
				conv(1000, greeting("w", 0), greeting("w2", 100), u1),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "the resolved wait never goes below 0",
			give: []op{
				conv(1000, u1),
				tick(6000),
				conv(6100, u1, reply("r1", -5000)), // the pipeline's clock stepped back
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 6100, wait: 0, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the resolved wait runs between anchors when neither has a timestamp",
			give: []op{
				conv(1000, hello("user-1", noTS)),
				tick(6000),
				conv(7500, hello("user-1", noTS), reply("r1", noTS)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7500, wait: 6500, snapshot: "e2", latest: "e2"},
			},
		},
		{
			// The turn is anchored at 200 (its timestamp 100 clamped), the reply at 7500.
			name: "the resolved wait runs between anchors when the reply has no timestamp",
			give: []op{
				conv(1200, hello("user-1", 100)),
				tick(5200),
				conv(7500, hello("user-1", 100), reply("r1", noTS)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 5200, wait: 5000, threshold: 5000, deadline: 5200, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7500, wait: 7300, snapshot: "e2", latest: "e2"},
			},
		},
		{
			// The reply's timestamp 6000 is clamped to 6500: 5500 after the turn's anchor.
			name: "the resolved wait runs between anchors when the turn has no timestamp",
			give: []op{
				conv(1000, hello("user-1", noTS)),
				tick(6000),
				conv(7500, hello("user-1", noTS), reply("r1", 6000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7500, wait: 5500, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the hang carries the call of the latest event and the history of the latest snapshot",
			give: []op{conv(1000, u1), status(2000, StatusOngoing), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e1"}},
		},
		{
			name: "a status event older than the latest event is not the latest",
			give: []op{conv(1000, u1), status(2000, StatusOngoing).sent(500), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a hang detected late measures its wait to the detection",
			give: []op{conv(1000, u1), tickDue(5500, 8000), tickDue(6000, 9000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000,
				threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "no hang without evidence: a reply stored before the deadline, read after it",
			give: []op{
				conv(1000, u1),
				tickDue(5000, 7000),
				conv(7000, u1, reply("r1", 5900)).stored(5900).sent(5900),
				tick(20_000),
			},
		},
		{
			name: "a reply stored after the deadline: the hang first, then its resolved, both at detection",
			give: []op{
				conv(1000, u1),
				tickDue(5000, 7000),
				conv(7000, u1, reply("r1", 6050)).stored(6100).sent(6100),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 5050, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "stored order: a later snapshot that replaced the one with the reply shows it in time: no hang",
			give: []op{
				conv(1000, u1),
				conv(7000, u1, reply("r1", 5900), hello("user-2", 6900)).stored(6950).sent(6950),
			},
		},
		{
			name: "stored order: the event after the deadline shows the reply came late: hang, then resolved",
			give: []op{
				conv(1000, u1),
				conv(7000, u1, reply("r1", 6500)).stored(6600).sent(6600),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 5500, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "stored order: a status after the deadline: the hang fires before it is applied",
			give: []op{conv(1000, u1), status(7000, StatusOngoing).stored(6600).sent(6600)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "stored order: an older copy after the deadline answers nothing: hang",
			give: []op{conv(1000, u1).sent(1000), conv(7000, u1, reply("r1", 900)).stored(6600).sent(900)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "evidence lagging: a reply sent after the deadline, read before the evidence, still shows the hang",
			give: []op{
				conv(1000, u1),
				conv(10_000, u1, reply("r1", 7000)).sent(7000).lagging(5000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 10_000, wait: 9000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 10_000, wait: 6000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "evidence lagging: a reply sent before the deadline, read after it, is no hang",
			give: []op{
				conv(1000, u1),
				conv(10_000, u1, reply("r1", 5500)).sent(5500).lagging(5000),
				tick(20_000),
			},
		},
		{
			name: "a reply that arrives at the deadline comes after it",
			give: []op{conv(1000, u1), conv(6000, u1, reply("r1", 6000))},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 6000, wait: 5000, snapshot: "e1", latest: "e1"},
			},
		},
	}
	runCallTests(t, tests)
}

func TestCallStages(t *testing.T) {
	u1 := hello("user-1", 1000)
	long := conf(5*time.Second, 30*time.Second, 20*time.Second) // a tool may run 20 s
	tests := []callTest{
		{
			name: "awaiting-tool: a tool_calls entry without its result",
			give: []op{conv(1000, u1), conv(1500, u1, toolCalls("tc", 1500, "call-1")), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "awaiting-tool: an assistant message with toolCalls without its result",
			give: []op{conv(1000, u1), conv(1500, u1, asstCalls("tc", 1500, "call-1")), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "after-tool: the tool_call_result came, no reply",
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				conv(2000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 2000, "call-1")),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "after-tool: the tool message came, no reply",
			give: []op{
				conv(1000, u1),
				conv(1500, u1, asstCalls("tc", 1500, "call-1")),
				conv(2000, u1, asstCalls("tc", 1500, "call-1"), toolMsg("tr", 2000, "call-1")),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "awaiting-assistant: tools before the first user turn count for nothing",
			give: []op{conv(1000, toolCalls("tc", 500, "call-0"), u1), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a result answers the call it names, not another",
			give: []op{
				conv(1000, u1, asstCalls("tc", 1000, "call-1", "call-2"), toolMsg("tr2", 1000, "call-2")),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "every call answered: after-tool",
			give: []op{
				conv(1000, u1, asstCalls("tc", 1000, "call-1", "call-2"), toolMsg("tr2", 1000, "call-2"), toolMsg("tr1", 1000, "call-1")),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a result for a call never made answers nothing",
			give: []op{conv(1000, u1, toolCalls("tc", 1000, "call-1"), toolResult("tr", 1000, "call-9")), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a result without id answers a call without id",
			give: []op{conv(1000, u1, toolCalls("tc", 1000), toolResult("tr", 1000, "")), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "the resolved carries the stage of the hang",
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				tick(6000),
				conv(7000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 7000, "call-1")),
				conv(8000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 7000, "call-1"), reply("r1", 8000)),
			},
			want: []out{
				{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e4", latest: "e4"},
			},
		},
		{
			name: "the tool timeout replaces the timeout while a tool runs",
			cfg:  &long,
			give: []op{conv(1000, u1), conv(1500, u1, toolCalls("tc", 1500, "call-1")), tick(6000), tick(20_999), tick(21_000)},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 21_000, wait: 20_000, threshold: 20_000, deadline: 21_000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "a tool timeout shorter than the timeout",
			cfg:  ptr(conf(5*time.Second, 10*time.Second, 2*time.Second)),
			give: []op{conv(1000, u1), conv(1500, u1, toolCalls("tc", 1500, "call-1")), tick(2999), tick(3000)},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 3000, wait: 2000, threshold: 2000, deadline: 3000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "max wait still applies while a tool runs",
			cfg:  ptr(conf(5*time.Second, 10*time.Second, 20*time.Second)),
			give: []op{conv(1000, u1), conv(1500, u1, toolCalls("tc", 1500, "call-1")), tick(10_999), tick(11_000)},
			want: []out{{kind: hang, reason: mw, stage: awaitTool, user: "user-1", first: "user-1", at: 11_000, wait: 10_000, threshold: 10_000, deadline: 11_000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "the result moves the deadline back, before it has passed",
			cfg:  &long,
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				conv(3000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 3000, "call-1")),
				tick(5999), tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "the result moves the deadline back into the past: it fires at once",
			cfg:  &long,
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				conv(8000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 8000, "call-1")),
				tick(9000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 8000, wait: 7000, threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "a turn while a tool runs re-arms the tool timeout",
			cfg:  &long,
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				conv(3000, u1, toolCalls("tc", 1500, "call-1"), hello("user-2", 3000)),
				tick(22_999), tick(23_000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-2", first: "user-1", at: 23_000, wait: 20_000, threshold: 20_000, deadline: 23_000, snapshot: "e2", latest: "e2"}},
		},
	}
	runCallTests(t, tests)
}

func TestCallThresholds(t *testing.T) {
	u1, u2 := hello("user-1", 1000), hello("user-2", 2000)
	short := conf(2*time.Second, 4*time.Second, 0)
	tests := []callTest{
		{
			name: "a change after arming does not move the deadline",
			give: []op{conv(1000, u1), tick(2000).with(short), tick(3000), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a new user turn re-arms with the thresholds then in force",
			give: []op{conv(1000, u1), conv(2000, u1, u2).with(short), tick(3999), tick(4000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 4000, wait: 2000, threshold: 2000, deadline: 4000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "a hung stretch keeps the thresholds of its hang",
			give: []op{conv(1000, u1), tick(6000), conv(7000, u1, hello("user-2", 7000)).with(short), tick(30_000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a disabled call arms nothing",
			cfg:  ptr(disabled()),
			give: []op{conv(1000, u1), tick(30_000)},
		},
		{
			name: "disabled after arming: the armed deadline still fires",
			give: []op{conv(1000, u1), tick(2000).with(disabled()), tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "disabled, then a new user turn: it re-arms disabled, and nothing fires",
			give: []op{conv(1000, u1), conv(2000, u1, u2).with(disabled()), tick(30_000)},
		},
		{
			name: "enabled again: the next snapshot arms",
			cfg:  ptr(disabled()),
			give: []op{conv(1000, u1), conv(2000, u1, u2).with(DefaultConfig()), tick(7000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e1"}},
		},
	}
	runCallTests(t, tests)
}

func TestCallEnd(t *testing.T) {
	u1 := hello("user-1", 1000)
	tests := []callTest{
		{
			name: "an end while armed publishes nothing",
			give: []op{conv(1000, u1), endReport(3000), tick(60_000)},
		},
		{
			name: "an end while hung: one unresolved, measured to the end's own timestamp",
			give: []op{
				conv(1000, u1),
				tick(6000),
				status(9000, StatusEnded).ended("customer-ended-call"),
				status(9500, StatusEnded).ended("customer-ended-call"),
				endReport(9800),
				tick(60_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", ended: "customer-ended-call", at: 9000, wait: 8000, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "the unresolved wait runs between own timestamps when both have one",
			give: []op{conv(1000, hello("user-1", 500)), tick(5500), status(9000, StatusEnded).sent(7000)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 5500, wait: 5000, threshold: 5000, deadline: 5500, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 6500, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "the unresolved wait runs between anchors when the end has no timestamp",
			give: []op{conv(1000, hello("user-1", 500)), tick(5500), status(9000, StatusEnded).sent(noTS)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 5500, wait: 5000, threshold: 5000, deadline: 5500, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8500, snapshot: "e0", latest: "e2"},
			},
		},
		{
			// The end's timestamp 7000 is clamped to 8000.
			name: "the unresolved wait runs between anchors when the turn has no timestamp",
			give: []op{conv(1000, hello("user-1", noTS)), tick(6000), status(9000, StatusEnded).sent(7000)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 7000, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "the unresolved carries the end's own history and its latest user turn",
			give: []op{
				conv(1000, u1),
				tick(6000),
				endReport(9000, u1, hello("user-2", 8000)).ended("silence-timed-out"),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-2", first: "user-1", ended: "silence-timed-out", at: 9000, wait: 8000, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "rebuilt: an end after the deadline whose history shows the stretch unanswered: hang, then unresolved",
			give: []op{
				conv(9000, u1).stored(1000).held(),
				endReport(9000, u1).stored(7000).sent(7000).held(),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 6000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			// The call ended during a failover or restart: the latest snapshot read shows
			// the stretch unanswered, and a reply would have replaced it (SPEC §6).
			name: "rebuilt: an end after the deadline without a history: hang, then unresolved",
			give: []op{
				conv(9000, u1).stored(1000).held(),
				endReport(9000).stored(7000).sent(7000).held(),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 6000, snapshot: "e0", latest: "e1"},
			},
		},
		{
			// A speech-update may have answered it, in a message the stream replaced with
			// a later speech-update (assistant stopped): only an end's history tells.
			name: "rebuilt: an end without a history of a call that spoke is no evidence",
			give: func() []op {
				stopped := speech(6500, 6500).stored(6500).held()
				stopped.ev.Speech = false
				return []op{
					conv(9000, u1).stored(1000).held(),
					stopped,
					endReport(9000).stored(7000).sent(7000).held(),
				}
			}(),
		},
		{
			name: "rebuilt: an end before the deadline is no hang",
			give: []op{
				conv(9000, u1).stored(1000).held(),
				endReport(9000).stored(4000).sent(4000).held(),
			},
		},
		{
			name: "rebuilt: an end after the deadline whose history shows a reply is no hang",
			give: []op{
				conv(9000, u1).stored(1000).held(),
				endReport(9000, u1, reply("r1", 2000)).stored(7000).sent(7000).held(),
			},
		},
		{
			name: "an end with an empty history carries the latest snapshot",
			give: []op{conv(1000, u1), tick(6000), endReport(9000)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "an end whose history shows the stretch answered publishes nothing",
			give: []op{conv(1000, u1), tick(6000), endReport(9000, u1, reply("r1", 8000)), tick(60_000)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "an end whose history shows the stretch answered before its latest turn publishes nothing",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("a1", 2000)),
				tick(6000),
				conv(7000, u1, silent("a1", 2000), hello("user-2", 7000)),
				endReport(9000, u1, a("a1", "Sure.", 6900), hello("user-2", 7000)),
				tick(60_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "an end after the resolved publishes nothing",
			give: []op{conv(1000, u1), tick(6000), conv(7000, u1, reply("r1", 7000)), endReport(9000)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 6000, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the unresolved carries the stage of the hang",
			give: []op{
				conv(1000, u1, toolCalls("tc", 1000, "call-1")),
				tick(6000),
				conv(7000, u1, toolCalls("tc", 1000, "call-1"), toolResult("tr", 7000, "call-1")),
				status(9000, StatusEnded),
			},
			want: []out{
				{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 9000, wait: 8000, snapshot: "e2", latest: "e3"},
			},
		},
		{
			name: "a late duplicate does not resurrect an ended call",
			give: []op{
				status(0, StatusFinished),
				conv(1000, u1),
				status(1500, StatusOngoing),
				conv(2000, u1, hello("user-2", 2000)),
				tick(60_000),
			},
		},
		{
			name: "after the unresolved, late snapshots change nothing",
			give: []op{
				conv(1000, u1),
				tick(6000),
				status(9000, StatusEnded),
				conv(9500, u1).sent(1000),
				conv(10_000, u1, reply("r1", 9900)),
				conv(11_000, u1, reply("r1", 9900), hello("user-2", 11_000)),
				status(11_500, StatusEnded),
				tick(60_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, snapshot: "e0", latest: "e2"},
			},
		},
	}
	runCallTests(t, tests)
}

// TestCallEnds checks every event that ends a call (SPEC §2): the step says so, the
// armed deadline is cancelled, and the call ignores what follows.
func TestCallEnds(t *testing.T) {
	output := typed(3000, TypeOutput)
	output.ev.Status = StatusFinished
	tests := []struct {
		name string
		give op
		want bool // ends the call
	}{
		{name: "end-of-call-report", give: endReport(3000), want: true},
		{name: "end-of-call-report with call.status ongoing", give: endReportWith(3000, StatusOngoing), want: true},
		{name: "end-of-call-report without call.status", give: endReportWith(3000, StatusUnknown), want: true},
		{name: "status finished", give: status(3000, StatusFinished), want: true},
		{name: "status forwarded", give: status(3000, StatusForwarded), want: true},
		{name: "Vapi status ended", give: status(3000, StatusEnded), want: true},
		{name: "Vapi status forwarding", give: status(3000, StatusForwarding), want: true},
		{name: "a hang event with call.status finished", give: output, want: true},
		{name: "status ongoing", give: status(3000, StatusOngoing)},
		{name: "status queued", give: status(3000, StatusQueued)},
		{name: "a hang event", give: typed(3000, TypeOutput)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, c, steps := run(DefaultConfig(), []op{conv(1000, hello("user-1", 1000)), tt.give, tick(60_000)})
			if ended := steps[1].Ended; ended != tt.want {
				t.Errorf("Step.Ended = %v, want %v", ended, tt.want)
			}
			if tt.want {
				if len(got) != 0 {
					t.Errorf("outputs after the end: %v", got)
				}
				if c.State() != StateEnded {
					t.Errorf("State() = %v, want ended", c.State())
				}
			} else if len(got) != 1 || got[0].kind != hang {
				t.Errorf("outputs = %v, want the hang", got)
			}
		})
	}
}

func TestCallSpeech(t *testing.T) {
	u1 := hello("user-1", 1000)
	stopped := speech(3000, 3000)
	stopped.ev.Speech = false
	tests := []callTest{
		{
			name: "a speech start resolves the hung stretch, with the history as last received",
			give: []op{
				conv(1000, u1),
				tick(6000),
				speech(7000, 6800),
				conv(9000, u1, a("r1", "Sure.", 6800)),
				tick(60_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 5800, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "a speech start answers the armed stretch",
			give: []op{conv(1000, u1), speech(3000, 3000), tick(20_000), conv(21_000, u1, reply("r1", 3000)), tick(60_000)},
		},
		{
			name: "a speech start before the latest turn ended answers nothing",
			give: []op{conv(1000, u1), conv(3000, u1, hello("user-2", 3000)), speech(3100, 2500), tick(8000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 8000, wait: 5000, threshold: 5000, deadline: 8000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "a speech start before the snapshot that holds the turn: already answered",
			give: []op{speech(2000, 1900), conv(2100, hello("user-1", 1500)), tick(30_000)},
		},
		{
			name: "a turn that ended after the speech start arms",
			give: []op{speech(2000, 1900), conv(2100, hello("user-1", 1950)), tick(6950)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6950, wait: 5000, threshold: 5000, deadline: 6950, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "a speech-update that is not the assistant starting changes nothing",
			give: []op{conv(1000, u1), stopped, tick(6000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
		{
			name: "a speech start without timestamp answers, its wait measured between anchors",
			give: []op{conv(1000, u1), tick(6000), speech(7000, noTS)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, snapshot: "e0", latest: "e2"},
			},
		},
		{
			name: "an ended call ignores a speech start",
			give: []op{conv(1000, u1), tick(6000), endReport(7000), speech(7100, 7050)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 6000, snapshot: "e0", latest: "e2"},
			},
		},
	}
	runCallTests(t, tests)
}

func TestCallOrder(t *testing.T) {
	u1, r1 := hello("user-1", 1000), reply("r1", 2000)
	hang1 := out{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}
	tests := []callTest{
		{
			name: "a snapshot with an older timestamp is ignored",
			give: []op{conv(1000, u1), conv(2000, u1, r1), conv(2100, u1).sent(1500), tick(60_000)},
		},
		{
			name: "a stale snapshot does not take the stage back",
			cfg:  ptr(conf(5*time.Second, 30*time.Second, 20*time.Second)),
			give: []op{
				conv(1000, u1),
				conv(1500, u1, toolCalls("tc", 1500, "call-1")),
				conv(3000, u1, toolCalls("tc", 1500, "call-1"), toolResult("tr", 3000, "call-1")),
				conv(3100, u1, toolCalls("tc", 1500, "call-1")).sent(1500),
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "a stale snapshot is not the history a hang carries",
			give: []op{conv(1000, u1), conv(2000, u1, hello("user-2", 2000)), conv(2100, u1).sent(1000), tick(7000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "a snapshot with a newer timestamp is applied, even when shorter (a window)",
			give: []op{
				conv(1000, greeting("w", 0), u1),
				tick(6000),
				conv(8000, reply("r1", 7000), hello("user-2", 8000)),
				tick(13_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 6000, snapshot: "e2", latest: "e2"},
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 13_000, wait: 5000, threshold: 5000, deadline: 13_000, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "the same snapshot twice changes nothing",
			give: []op{
				conv(1000, u1),
				conv(3000, u1).sent(1000), // a duplicate must not re-arm the timer
				tick(6000),
				conv(7000, u1, reply("r1", 7000)),
				conv(7500, u1, reply("r1", 7000)).sent(7000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 6000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "without timestamps: a snapshot that ends with a new message is newer, a shorter one older",
			give: []op{
				conv(1000, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				conv(2100, u1).sent(noTS),
				tick(60_000),
			},
		},
		{
			name: "without timestamps: a window that slid on is newer",
			give: []op{
				conv(1000, greeting("w", 0), u1).sent(noTS),
				tick(6000),
				conv(7000, u1, reply("r1", 7000)).sent(noTS), // as long, ends with a message after u1
			},
			want: []out{
				hang1,
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 7000, wait: 6000, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "on a timestamp tie, a shorter snapshot is older",
			give: []op{conv(1000, u1), conv(2000, u1, r1), conv(2000, u1).sent(2000), tick(60_000)},
		},
		{
			name: "an answered turn never arms again when a later snapshot no longer shows its reply",
			give: []op{conv(1000, u1), conv(2000, u1, r1), conv(3000, u1, silent("r1", 2000)), tick(60_000)},
		},
		{
			name: "a user turn not after the answered one never arms",
			give: []op{
				conv(1000, u("", "Hi", 1000)),
				conv(2000, u("", "Hi", 1000), a("", "Sure.", 1900)),
				conv(3000, u("", "Hi there", 1000)), // the transcript rewritten, the reply gone
				tick(60_000),
			},
		},
		{
			name: "the empty assistant message filled later under the same messageId is the reply",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("a1", 2000)),
				tick(6000),
				conv(7000, u1, a("a1", "Sure.", 6900)),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "a1", at: 7000, wait: 5900, snapshot: "e3", latest: "e3"},
			},
		},
		{
			// SPEC §2: the stretch is the run of user turns after the last reply.
			name: "an empty message filled in place after the caller spoke again answers the turns before it only",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("a1", 2000)),
				conv(4000, u1, silent("a1", 2000), hello("user-2", 4000)),
				conv(4500, u1, a("a1", "Sure.", 3900), hello("user-2", 4000)),
				tick(8999), tick(9000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 9000, wait: 5000, threshold: 5000, deadline: 9000, snapshot: "e3", latest: "e3"}},
		},
		{
			name: "an empty message filled in place after the caller spoke again resolves the hung turns before it",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("a1", 2000)),
				tick(6000),
				conv(7000, u1, silent("a1", 2000), hello("user-2", 7000)),
				conv(8000, u1, a("a1", "Sure.", 6900), hello("user-2", 7000)),
				tick(11_999), tick(12_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "a1", at: 8000, wait: 5900, snapshot: "e4", latest: "e4"},
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 12_000, wait: 5000, threshold: 5000, deadline: 12_000, snapshot: "e4", latest: "e4"},
			},
		},
		{
			// The turn's anchor is that of the event that first showed it (7000), not of
			// the one that starts its stretch (received 9500: 8500 at the earliest).
			name: "a turn that starts a stretch when the turns before it are answered keeps its anchor",
			give: []op{
				conv(1000, u1),
				conv(2000, u1, silent("a1", 2000)),
				conv(7000, u1, silent("a1", 2000), hello("user-2", 7000)),
				conv(9500, u1, a("a1", "Sure.", 2000), hello("user-2", 7000)),
				tick(12_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "a1", at: 9500, wait: 1000, snapshot: "e3", latest: "e3"},
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 12_000, wait: 5000, threshold: 5000, deadline: 12_000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "without timestamps, the empty assistant message filled later is the reply",
			give: []op{
				conv(1000, u1, silent("a1", 1500)).sent(noTS),
				tick(6000),
				conv(7000, u1, a("a1", "Sure.", 6900)).sent(noTS),
			},
			want: []out{hang1, {kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "a1", at: 7000, wait: 5900, snapshot: "e2", latest: "e2"}},
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
				conv(1000, u1),
				tick(6000),
				conv(20_000, u1, reply("r1", 9000), hello("user-2", 10_000), reply("r2", 11_000), hello("user-3", 19_800)),
				tick(24_800),
			},
			want: []out{
				hang1,
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 20_000, wait: 8000, snapshot: "e2", latest: "e2"},
				{kind: hang, reason: turnTO, user: "user-3", first: "user-3", at: 24_800, wait: 5000, threshold: 5000, deadline: 24_800, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "own output events are ignored",
			give: []op{typed(1000, TypeOutput), conv(2000, hello("user-1", 2000)), typed(3000, TypeOutput), tick(7000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e1"}},
		},
		{
			name: "other event types only carry status",
			give: []op{typed(1000, TypeOther), conv(2000, hello("user-1", 2000)), typed(3000, TypeOther), tick(7000)},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 7000, wait: 5000, threshold: 5000, deadline: 7000, snapshot: "e1", latest: "e2"}},
		},
	}
	runCallTests(t, tests)
}

// TestCallLate covers stretches that a JetStream replay shows only once answered: their
// own timestamps tell whether they hung.
func TestCallLate(t *testing.T) {
	tests := []callTest{
		{
			name: "a reply after the deadline: the hang, late, then its resolved",
			give: []op{conv(9000, hello("user-1", 1000), reply("r1", 7000)).stored(7100).sent(7100)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, threshold: 5000, deadline: 6000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 9000, wait: 6000, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "a reply in time: nothing",
			give: []op{conv(9000, hello("user-1", 1000), reply("r1", 5900)).stored(7100).sent(7100)},
		},
		{
			name: "live, the same history: nothing",
			give: []op{conv(7100, hello("user-1", 1000), reply("r1", 7000))},
		},
		{
			name: "a turn that came after the deadline of the turn before it",
			give: []op{conv(12_000, hello("user-1", 1000), hello("user-2", 8000), reply("r1", 9000)).stored(9100).sent(9100)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 12_000, wait: 11_000, threshold: 5000, deadline: 6000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-1", reply: "r1", at: 12_000, wait: 8000, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "a turn before the deadline re-arms it: the reply came in time",
			give: []op{conv(10_000, hello("user-1", 1000), hello("user-2", 5000), reply("r1", 9500)).stored(9600).sent(9600)},
		},
		{
			name: "a turn before the deadline re-arms it: the hang names it",
			give: []op{conv(10_000, hello("user-1", 1000), hello("user-2", 4000), reply("r1", 9500)).stored(9600).sent(9600)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-2", first: "user-1", at: 10_000, wait: 6000, threshold: 5000, deadline: 9000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-1", reply: "r1", at: 10_000, wait: 8500, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "a turn without timestamp: the deadline is unknown, nothing",
			give: []op{conv(12_000, hello("user-1", 1000), hello("user-2", noTS), reply("r1", 9000)).stored(9100).sent(9100)},
		},
		{
			name: "max wait",
			give: []op{conv(13_000, hello("user-1", 1000), hello("user-2", 5000), hello("user-3", 9000), reply("r1", 12_000)).stored(12_100).sent(12_100)},
			want: []out{
				{kind: hang, reason: mw, user: "user-3", first: "user-1", at: 13_000, wait: 12_000, threshold: 10_000, deadline: 11_000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: mw, user: "user-3", first: "user-1", reply: "r1", at: 13_000, wait: 11_000, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "a tool result that moved the deadline into the past",
			cfg:  ptr(conf(5*time.Second, 30*time.Second, 20*time.Second)),
			give: []op{conv(9000, hello("user-1", 1000), toolCalls("tc", 1500, "call-1"), toolResult("tr", 8000, "call-1"), reply("r1", 8500)).stored(8600).sent(8600)},
			want: []out{
				{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 9000, wait: 8000, threshold: 5000, deadline: 6000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", reply: "r1", at: 9000, wait: 7500, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "a tool call after the deadline: the stage at the deadline",
			give: []op{conv(9000, hello("user-1", 1000), toolCalls("tc", 6500, "call-1"), toolResult("tr", 8000, "call-1"), reply("r1", 8500)).stored(8600).sent(8600)},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 9000, wait: 8000, threshold: 5000, deadline: 6000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 9000, wait: 7500, snapshot: "e0", latest: "e0"},
			},
		},
		{
			name: "only the latest stretch of a snapshot, and only once",
			give: []op{
				conv(15_000, hello("user-1", 1000), reply("r1", 7000), hello("user-2", 8000), reply("r2", 14_000)).stored(14_100).sent(14_100),
				conv(15_500, hello("user-1", 1000), reply("r1", 7000), hello("user-2", 8000), reply("r2", 14_000)).stored(14_100).sent(14_100),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 15_000, wait: 7000, threshold: 5000, deadline: 13_000, late: true, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-2", reply: "r2", at: 15_000, wait: 6000, snapshot: "e0", latest: "e0"},
			},
		},
		{
			// The open stretch armed with a 20 s timeout, so that it is not due before the
			// stored snapshot; the later stretch is read with the thresholds then in force.
			name: "the open stretch answered in time, a later one late, in one stored snapshot",
			cfg:  ptr(conf(20*time.Second, 0, 0)),
			give: []op{
				conv(1000, hello("user-1", 1000)),
				conv(12_000, hello("user-1", 1000), reply("r1", 3000), hello("user-2", 4000), reply("r2", 10_000)).stored(10_100).sent(10_100).with(DefaultConfig()),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 12_000, wait: 8000, threshold: 5000, deadline: 9000, late: true, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-2", reply: "r2", at: 12_000, wait: 6000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "without the timestamps: nothing",
			give: []op{conv(9000, hello("user-1", noTS), reply("r1", 7000)).stored(7100).sent(7100)},
		},
		{
			name: "disabled: nothing",
			cfg:  ptr(disabled()),
			give: []op{conv(9000, hello("user-1", 1000), reply("r1", 7000)).stored(7100).sent(7100)},
		},
	}
	runCallTests(t, tests)
}

func TestCallTTL(t *testing.T) {
	minute := conf(5*time.Second, 10*time.Second, 0)
	minute.CallTTL = time.Minute
	tests := []callTest{
		{
			name: "a call with no event for the call TTL is forgotten and starts afresh",
			cfg:  &minute,
			give: []op{
				conv(1000, hello("user-1", 1000), reply("r1", 2000)),
				tick(60_999),
				tick(61_000),
				// A fresh call applies any snapshot, and knows of no answered turn.
				conv(62_000, hello("user-1", 62_000)).sent(500),
				tick(67_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 67_000, wait: 5000, threshold: 5000, deadline: 67_000, snapshot: "e3", latest: "e3"}},
		},
		{
			name: "an ended call is remembered for the call TTL after its last event",
			cfg:  &minute,
			give: []op{
				status(0, StatusFinished),
				conv(50_000, hello("user-1", 50_000)), // late: ignored, but keeps the call
				conv(100_000, hello("user-1", 100_000)),
				tick(200_000),
			},
		},
		{
			name: "the call TTL runs from the newest event, even if an older one arrives last",
			cfg:  &minute,
			give: []op{
				conv(1000, hello("user-1", 1000), reply("r1", 2000)),
				status(30_000, StatusFinished),
				status(31_000, StatusFinished).stored(10_000), // a late copy, stored earlier
				// Remembered until 90_000: a late snapshot must not resurrect the call.
				conv(80_000, hello("user-1", 1000), reply("r1", 2000), hello("user-2", 80_000)),
				tick(200_000),
			},
		},
		{
			name: "a hung call is forgotten after the TTL: a late reply then resolves nothing",
			cfg:  &minute,
			give: []op{
				conv(1000, hello("user-1", 1000)),
				tick(6000),
				tick(61_000),
				conv(62_000, hello("user-1", 1000), reply("r1", 62_000)),
				tick(200_000),
			},
			want: []out{{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 6000, wait: 5000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"}},
		},
	}
	runCallTests(t, tests)
}

// TestCallKeptUntilHung checks that a call whose stretch has not hung is not forgotten,
// however late the tick: it hangs first.
func TestCallKeptUntilHung(t *testing.T) {
	cfg := conf(5*time.Second, 10*time.Second, 0)
	cfg.CallTTL = time.Minute
	ev := *conv(1000, hello("user-1", 1000)).ev
	ev.Received, ev.Wall, ev.Payload = eng(1000), wallNs(1000), payload("e0")
	var c Call
	c.Apply(&cfg, &ev, eng(1000))
	late := eng(1000) + int64(2*time.Minute)
	s := c.Tick(&cfg, late, late)
	if s.Forget || len(s.Outputs) != 1 || s.Outputs[0].Kind != KindHang {
		t.Fatalf("Tick past the TTL = %+v, want the hang and no Forget", s)
	}
	if s := c.Tick(&cfg, late, late); !s.Forget {
		t.Errorf("Tick past the TTL once hung = %+v, want Forget", s)
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
		{name: "hung keeps its payloads", give: []op{conv(0, hello("u", 0)), tick(5000)}, wantState: StateHung, wantRetained: 2},
		{
			name:         "hung keeps the latest snapshot and event, for its unresolved",
			give:         []op{conv(0, hello("u", 0)), tick(5000), conv(7000, hello("u", 0), hello("u2", 7000)), status(8000, StatusOngoing)},
			wantState:    StateHung,
			wantRetained: 4,
		},
		{name: "resolved keeps nothing", give: []op{conv(0, hello("u", 0)), tick(5000), conv(7000, hello("u", 0), reply("r", 7000))}, wantState: StateIdle},
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

// TestCallSteps checks the flags of each step: Kept and Tail (what the engine keeps, and
// from where in the history), Ended and Ignored.
func TestCallSteps(t *testing.T) {
	w, sys := greeting("w", 0), other("s", "system", 1900)
	u1, u2, r1, u3 := hello("user-1", 1000), hello("user-2", 2000), reply("r1", 3000), hello("user-3", 4000)
	type flags struct {
		kept          bool
		tail          int32
		ended, ignore bool
	}
	give := []op{
		conv(0, w),                            // idle
		conv(1000, w, u1),                     // arms: the tail starts at the greeting
		status(1500, StatusOngoing),           // the latest event
		conv(2000, w, u1, sys, u2),            // a new turn
		conv(3000, w, u1, sys, u2, r1),        // answered in time: kept no more
		status(3500, StatusOngoing),           // idle
		conv(4000, w, u1, sys, u2, r1, u3),    // arms: the tail starts at r1
		conv(4100, w, u1, sys, u2).sent(2000), // stale
		typed(4200, TypeOutput),
		endReport(4300),
		conv(4400, w, u1, sys, u2, r1, u3, hello("user-4", 4400)),
	}
	want := []flags{
		{},
		{kept: true, tail: 0},
		{kept: true},
		{kept: true, tail: 0},
		{},
		{},
		{kept: true, tail: 4},
		{ignore: true},
		{ignore: true},
		{ended: true},
		{ignore: true},
	}
	_, _, steps := run(DefaultConfig(), give)
	var got []flags
	for _, s := range steps {
		got = append(got, flags{s.Kept, s.Tail, s.Ended, s.Ignored})
	}
	if !slices.Equal(got, want) {
		t.Errorf("flags per step\n got: %+v\nwant: %+v", got, want)
	}

	// Without a reply before it, the tail starts at the first user turn.
	_, _, steps = run(DefaultConfig(), []op{conv(0, sys, u1, silent("a", 1100), u2)})
	if s := steps[0]; !s.Kept || s.Tail != 1 {
		t.Errorf("Kept, Tail = %v, %d; want true, 1", s.Kept, s.Tail)
	}
}

// TestCallArmedAndKept checks what the engine reads besides the outputs' ids: Armed (the
// anchor of the stretch's first turn, from which input gaps count), and the payloads the
// call keeps, which the engine may replace with compact copies.
func TestCallArmedAndKept(t *testing.T) {
	cfg := DefaultConfig()
	var c Call
	ev := *conv(1400, hello("user-1", 1000)).ev
	ev.Received, ev.Wall, ev.Payload = eng(1400), wallNs(1400), payload("e0")
	c.Apply(&cfg, &ev, eng(1400))
	if s, l := c.Kept(); s != payload("e0") || l != payload("e0") {
		t.Fatalf("Kept() = %v, %v; want e0, e0", s, l)
	}
	c.Keep(payload("compact"), payload("call"))
	if got := c.Retained(); got != len("compact")+len("call") {
		t.Errorf("Retained() = %d after Keep, want %d", got, len("compact")+len("call"))
	}
	s := c.Tick(&cfg, eng(6000), eng(6000))
	if len(s.Outputs) != 1 {
		t.Fatalf("Tick() = %+v, want a hang", s)
	}
	if h := s.Outputs[0]; h.Armed != eng(1000) || h.Snapshot != payload("compact") || h.Latest != payload("call") {
		t.Errorf("hang Armed %d, Snapshot %v, Latest %v; want %d, compact, call", since(h.Armed), h.Snapshot, h.Latest, 1000)
	}

	// A late hang is armed at its first turn's anchor, read from the reply's.
	r := newRunner(cfg)
	r.do(0, conv(9000, hello("user-1", 1000), reply("r1", 7000)).stored(7100).sent(7100))
	if outs := r.steps[0].Outputs; len(outs) != 2 || outs[0].Armed != eng(1000) {
		t.Errorf("outputs %v, want a late hang armed at 1000 and its resolved", r.outs)
	}
}

// TestCallRewrittenTurnWithoutID: a user turn without messageId whose text (and end)
// a later snapshot rewrites has a new identity; the greeting before it, whose own time
// says it came before the stretch, answers nothing: no false resolution, no second
// hang, and a caller whose one turn keeps growing still gets the max-wait hang.
func TestCallRewrittenTurnWithoutID(t *testing.T) {
	g := greeting("", 0)
	kinds := func(outs []out) (s []string) {
		for _, o := range outs {
			s = append(s, o.kind.String()+"/"+o.reason.String())
		}
		return s
	}
	tests := []struct {
		name string
		give []op
		want []string
	}{
		{
			name: "rewritten after it hung",
			give: []op{conv(1000, g, u("", "I need", 1000)), tick(6000), conv(7000, g, u("", "I need help", 1500)), tick(60_000)},
			want: []string{"hang/turn-timeout"},
		},
		{
			name: "rewritten every 4 s, nobody answers: max wait",
			give: []op{
				conv(1000, g, u("", "hello", 1000)),
				conv(5000, g, u("", "hello hello", 5000)),
				conv(9000, g, u("", "hello hello hello", 9000)),
				tick(60_000),
			},
			want: []string{"hang/max-wait"},
		},
		{
			name: "rewritten, then answered",
			give: []op{conv(1000, g, u("", "I need", 1000)), conv(2000, g, u("", "I need help", 1500)), conv(3000, g, u("", "I need help", 1500), reply("", 2900)), tick(60_000)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, _ := run(DefaultConfig(), tt.give)
			if k := kinds(got); !slices.Equal(k, tt.want) {
				t.Errorf("outputs %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCallEndWhileEvidenceLags: a call's end read while the evidence lags (a paused
// engine, a flush round trip in flight). When its own timestamp is past the stretch's
// deadline, the stretch hung first: hang, then hang-unresolved, as a reply in that place
// gives hang + hang-resolved (TestCallLate). When it is before, the call simply ended.
// SPEC §2: a deadline that fires late fires with its true waitMs; §3 hang-unresolved.
func TestCallEndWhileEvidenceLags(t *testing.T) {
	u1 := hello("user-1", 1000)
	runCallTests(t, []callTest{
		{
			name: "caller hangs up 6 s into the silence; the end is read before the evidence",
			give: []op{
				conv(1000, u1),
				status(10_000, StatusEnded).sent(7000).lagging(5000).ended("customer-ended-call"),
				tick(20_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 10_000, wait: 9000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: unres, reason: turnTO, user: "user-1", first: "user-1", ended: "customer-ended-call", at: 10_000, wait: 6000, snapshot: "e0", latest: "e1"},
			},
		},
		{
			name: "caller hangs up 4 s into the silence; the end is read after the deadline",
			give: []op{
				conv(1000, u1),
				status(10_000, StatusEnded).sent(5000).lagging(5000).ended("customer-ended-call"),
				tick(20_000),
			},
		},
	})
}

// TestCallTurnWhileEvidenceLags: a snapshot read while the evidence lags (a paused
// engine) brings a new user turn. Spoken after the stretch's deadline by its own time,
// it shows that the stretch hung before it: hang first, then the turn joins the hung
// stretch (with max wait off and a reply 4.5 s later, the re-armed timeout would have hidden
// the hang). Spoken before the deadline, it re-arms the timeout as it would have live.
// SPEC §2: the engine's own pauses neither fire nor delay a deadline.
func TestCallTurnWhileEvidenceLags(t *testing.T) {
	u1 := hello("user-1", 1000)
	noMaxWait := conf(5*time.Second, 0, 0)
	runCallTests(t, []callTest{
		{
			name: "a turn spoken after the deadline, read while the evidence lags",
			cfg:  &noMaxWait,
			give: []op{
				conv(1000, u1),
				conv(10_000, u1, hello("user-2", 7000)).sent(7000).lagging(5000),
				conv(12_000, u1, hello("user-2", 7000), reply("r1", 11_500)).sent(11_500),
				tick(30_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 10_000, wait: 9000, threshold: 5000, deadline: 6000, snapshot: "e0", latest: "e0"},
				{kind: res, reason: turnTO, user: "user-2", first: "user-1", reply: "r1", at: 12_000, wait: 10_500, snapshot: "e2", latest: "e2"},
			},
		},
		{
			name: "a turn spoken before the deadline, read while the evidence lags",
			cfg:  &noMaxWait,
			give: []op{
				conv(1000, u1),
				conv(10_000, u1, hello("user-2", 5500)).sent(5500).lagging(5000),
				conv(10_400, u1, hello("user-2", 5500), reply("r1", 10_400)).sent(10_400),
				tick(30_000),
			},
		},
	})
}

// TestCallSize pins the 64 bytes of a Call: an engine shard holds a million, and the
// heap per idle call (bench-quick, goal 200 B) counts every word.
func TestCallSize(t *testing.T) {
	if n := unsafe.Sizeof(Call{}); n != 64 {
		t.Errorf("a Call takes %d bytes, want 64", n)
	}
}
