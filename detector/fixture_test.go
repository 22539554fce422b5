package detector

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// The calls of internal/fixtures, event by event, built by hand from the files (ids,
// roles, timestamps; the texts are shortened, which changes no verdict), each event
// received at its own timestamp. Times are ms after the call start, which is t0 for both
// calls: the webhook call started at 1763647331407, the Vapi call at 1772700001318
// (call.startedAt), and only differences of times matter. TestFixtureTimelinesMatchFiles
// checks them against the files.

// webhookStart is the Unix ms of the start of the webhook call.
const webhookStart = int64(1_763_647_331_407)

func webhookCall() []op {
	w := a("welcome-1", "Thanks for calling Northside clinic. How can I help?", 280)
	u1 := u("user-1", "Hi, I need to move my appointment.", 5100)
	r1 := a("user-1-Qx81LmZp2a-1763647338957", "Of course. What day works better for you?", 7900)
	u2 := u("user-2", "Thursday afternoon if possible.", 12_300)
	u3 := u("user-3", "Hello? Are you there?", 16_100)
	r3 := a("user-3-Qx81LmZp2a-1763647350457", "Sorry about that. Thursday at 3 PM is open. Shall I book it?", 19_400)
	return []op{
		status(20, StatusOngoing),           // 01
		conv(290, w),                        // 02
		conv(5115, w, u1),                   // 03
		conv(7912, w, u1, r1),               // 04
		conv(12_311, w, u1, r1, u2),         // 05
		conv(16_114, w, u1, r1, u2, u3),     // 06
		conv(19_409, w, u1, r1, u2, u3, r3), // 07
		endReport(31_000),                   // 08: its messages array is empty
	}
}

// vapiMsgs is the Vapi history: no messageId; a user turn is read at its endTime, a bot
// message at its time (its start).
func vapiMsgs() (sys, greet, u1, call, result, r1, u2 msg) {
	return other("", "system", -180),
		msg{role: "bot", text: "Thanks for calling Brightline Outfitters, this is Juno.", ts: 640},
		msg{role: "user", text: "Hi, could you check my order status? It's order 4417.", ts: 8300},
		toolCalls("", 9150, "call_T7mQ2vK9xLp4RcW8nHf3JdYb"),
		toolResult("", 14_800, "call_T7mQ2vK9xLp4RcW8nHf3JdYb"),
		msg{role: "bot", text: "Order 4417 shipped on Monday and should arrive Friday.", ts: 16_000},
		msg{role: "user", text: "Hello? Are you still there?", ts: 27_800}
}

func vapiCall() []op {
	sys, greet, u1, call, result, r1, u2 := vapiMsgs()
	return []op{
		status(40, StatusOngoing),                                // 01 in-progress
		conv(4090, sys, greet),                                   // 02
		conv(8710, sys, greet, u1),                               // 03
		conv(9190, sys, greet, u1, call),                         // 04
		conv(14_840, sys, greet, u1, call, result),               // 05
		conv(19_960, sys, greet, u1, call, result, r1),           // 06
		conv(28_210, sys, greet, u1, call, result, r1, u2),       // 07
		status(36_800, StatusEnded).ended("customer-ended-call"), // 08
		endReportWith(39_450, StatusEnded, sys, greet, u1, call, result, r1, u2).ended("customer-ended-call"), // 09
	}
}

// idOf returns the id the detector gives m: its messageId, else its fallback.
func idOf(m msg) string {
	ev := &Event{}
	decode(ev, []msg{m})
	return messageID(&ev.Messages[0])
}

// TestCallFixtureWebhook replays the webhook call (fixtures/README.md): with the defaults
// it never hangs; with a 3 s timeout it hangs once on user-2 at 15300, before user-3
// arrives, and resolves at 19409 with a wait of 7100 ms (user-2 at 12300 to the reply at
// 19400, own timestamps).
func TestCallFixtureWebhook(t *testing.T) {
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
				{kind: hang, reason: turnTO, user: "user-2", first: "user-2", at: 15_300, wait: 3000, threshold: 3000, deadline: 15_300, snapshot: "e4", latest: "e4"},
				{kind: res, reason: turnTO, user: "user-3", first: "user-2", reply: "user-3-Qx81LmZp2a-1763647350457", at: 19_409, wait: 7100, snapshot: "e6", latest: "e6"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Timeout = tt.timeout
			got, c, _ := run(cfg, append(webhookCall(), tick(3_600_000)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("outputs differ\n got: %v\nwant: %v", got, tt.want)
			}
			if c.State() != StateEnded {
				t.Errorf("state after the end-of-call-report = %v, want ended", c.State())
			}
		})
	}
}

// TestCallFixtureVapi replays the Vapi call (fixtures/vapi/README.md). User-1 (ended
// 8300) hangs at 13300 while lookup_order runs (awaiting-tool); the reply that starts at
// 16000 resolves it when its update arrives at 19960. User-2 (ended 27800) hangs at 32800
// and the caller hangs up at 36800: hang-unresolved, 9000 ms, customer-ended-call. The
// end-of-call-report that follows changes nothing.
//
// The resolved waitMs is 7700, not the README's 11600: SPEC §1 anchors a reply at its
// start (`time`) and §3 measures the resolved wait between own timestamps, 16000 - 8300;
// the README derives 11600 under an older rule that read a reply at its endTime and
// measured between anchors.
func TestCallFixtureVapi(t *testing.T) {
	_, _, u1, _, _, r1, u2 := vapiMsgs()
	hang1 := out{kind: hang, reason: turnTO, stage: awaitTool, user: idOf(u1), first: idOf(u1), at: 13_300, wait: 5000, threshold: 5000, deadline: 13_300, snapshot: "e3", latest: "e3"}
	hang2 := out{kind: hang, reason: turnTO, user: idOf(u2), first: idOf(u2), at: 32_800, wait: 5000, threshold: 5000, deadline: 32_800, snapshot: "e6", latest: "e6"}
	ops := vapiCall()
	speechAt := func(i int) []op { // a speech-update when the reply starts, inserted at index i
		return slices.Insert(slices.Clone(ops), i, speech(16_040, 16_000))
	}
	tests := []struct {
		name string
		give []op
		want []out
	}{
		{
			name: "as recorded",
			give: ops,
			want: []out{
				hang1,
				{kind: res, reason: turnTO, stage: awaitTool, user: idOf(u1), first: idOf(u1), reply: idOf(r1), at: 19_960, wait: 7700, snapshot: "e5", latest: "e5"},
				hang2,
				{kind: unres, reason: turnTO, user: idOf(u2), first: idOf(u2), ended: "customer-ended-call", at: 36_800, wait: 9000, snapshot: "e6", latest: "e7"},
			},
		},
		{
			// The speech-update Vapi also sends ends the silence when the reply starts.
			name: "with the speech-update of the reply",
			give: speechAt(5),
			want: []out{
				hang1,
				{kind: res, reason: turnTO, stage: awaitTool, user: idOf(u1), first: idOf(u1), at: 16_040, wait: 7700, snapshot: "e4", latest: "e5"},
				{kind: hang, reason: turnTO, user: idOf(u2), first: idOf(u2), at: 32_800, wait: 5000, threshold: 5000, deadline: 32_800, snapshot: "e7", latest: "e7"},
				{kind: unres, reason: turnTO, user: idOf(u2), first: idOf(u2), ended: "customer-ended-call", at: 36_800, wait: 9000, snapshot: "e7", latest: "e8"},
			},
		},
		{
			// The report's own history (artifact.messages) shows user-2 unanswered.
			name: "without the status-update, the end-of-call-report ends it",
			give: slices.Delete(slices.Clone(ops), 7, 8),
			want: []out{
				hang1,
				{kind: res, reason: turnTO, stage: awaitTool, user: idOf(u1), first: idOf(u1), reply: idOf(r1), at: 19_960, wait: 7700, snapshot: "e5", latest: "e5"},
				hang2,
				{kind: unres, reason: turnTO, user: idOf(u2), first: idOf(u2), ended: "customer-ended-call", at: 39_450, wait: 11_650, snapshot: "e7", latest: "e7"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, c, _ := run(DefaultConfig(), append(tt.give, tick(3_600_000)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("outputs differ\n got: %v\nwant: %v", got, tt.want)
			}
			if c.State() != StateEnded {
				t.Errorf("state at the end = %v, want ended", c.State())
			}
		})
	}
}

// fixtureEvent is what TestFixtureTimelinesMatchFiles reads of a fixture file.
type fixtureEvent struct {
	Message struct {
		Type        string `json:"type"`
		Timestamp   int64  `json:"timestamp"`
		Status      string `json:"status"`
		EndedReason string `json:"endedReason"`
		Call        struct {
			Status string `json:"status"`
		} `json:"call"`
		Messages []fixtureMsg `json:"messages"`
		Artifact struct {
			Messages []fixtureMsg `json:"messages"`
		} `json:"artifact"`
	} `json:"message"`
}

type fixtureMsg struct {
	MessageID  string `json:"messageId"`
	Role       string `json:"role"`
	Text       string `json:"text"`
	Message    string `json:"message"`
	Timestamp  int64  `json:"timestamp"`
	Time       int64  `json:"time"`
	EndTime    int64  `json:"endTime"`
	ToolCallID string `json:"toolCallId"`
	ToolCalls  []struct {
		ID string `json:"id"`
	} `json:"toolCalls"`
}

// TestFixtureTimelinesMatchFiles checks that the hand-built calls above are those of the
// fixture files: type, timestamp and end of each event, and of each message its id, role,
// own time (as §1 reads it), whether it has text, and its tool ids.
func TestFixtureTimelinesMatchFiles(t *testing.T) {
	check := func(t *testing.T, start int64, names []string, read func(string) []byte, ops []op) {
		if len(names) != len(ops) {
			t.Fatalf("%d files, %d events", len(names), len(ops))
		}
		for i, name := range names {
			var f fixtureEvent
			if err := json.Unmarshal(read(name), &f); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			m, ev := f.Message, ops[i].ev
			if !strings.Contains(name, m.Type) || m.Timestamp-start != ops[i].at || ev.Time != t0+ops[i].at {
				t.Errorf("%s: %s at %d, the test has %v at %d", name, m.Type, m.Timestamp-start, ev.Type, ops[i].at)
			}
			if got := ev.Ends(); got != (m.Type == "end-of-call-report" || m.Status == "ended") {
				t.Errorf("%s: the test's event ends the call: %v", name, got)
			}
			if ev.EndedReason != m.EndedReason {
				t.Errorf("%s: endedReason %q, the test has %q", name, m.EndedReason, ev.EndedReason)
			}
			msgs := m.Messages
			if msgs == nil {
				msgs = m.Artifact.Messages
			}
			if int(ev.Count) != len(msgs) {
				t.Errorf("%s: %d messages, the test has %d", name, len(msgs), ev.Count)
			}
			for j, fm := range msgs {
				own := fm.Timestamp
				switch {
				case own != 0:
				case fm.Role == "user" && fm.EndTime != 0:
					own = fm.EndTime
				default:
					own = fm.Time
				}
				var tools []uint64
				for _, c := range fm.ToolCalls {
					tools = append(tools, hash64("tool", c.ID))
				}
				if fm.ToolCallID != "" {
					tools = append(tools, hash64("tool", fm.ToolCallID))
				}
				k := slices.IndexFunc(ev.Messages, func(m Message) bool { return m.Index == int32(j) })
				if k < 0 {
					if fm.Role != "system" {
						t.Errorf("%s: message %d (%s) is not in the test's history", name, j, fm.Role)
					}
					continue
				}
				tm := ev.Messages[k]
				spoken := strings.TrimSpace(fm.Text+fm.Message) != ""
				if tm.ID != fm.MessageID || tm.Time != own-start+t0 || (tm.Role == RoleUser || tm.Role == RoleReply) != spoken ||
					!slices.Equal(ev.ToolIDs(&tm), tools) {
					t.Errorf("%s: message %d is %s %q at %d, the test has %v %q at %d", name, j, fm.Role, fm.MessageID, own-start, tm.Role, tm.ID, tm.Time-t0)
				}
			}
		}
	}
	t.Run("webhook", func(t *testing.T) { check(t, webhookStart, fixtures.WebhookNames(), fixtures.Webhook, webhookCall()) })
	t.Run("vapi", func(t *testing.T) { check(t, t0, fixtures.VapiNames(), fixtures.Vapi, vapiCall()) })
}
