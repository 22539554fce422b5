package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// decodeFixture decodes an event of the webhook (dialect "webhook") or Vapi fixture call.
func decodeFixture(t testing.TB, dialect, name string) *detector.Event {
	t.Helper()
	ev := new(detector.Event)
	if err := Decode(ev, fixtureData(dialect, name), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return ev
}

func fixtureData(dialect, name string) []byte {
	if dialect == "vapi" {
		return fixtures.Vapi(name)
	}
	return fixtures.Webhook(name)
}

// msgWithID is a message with a messageId, keyed by it.
func msgWithID(role detector.Role, id string, index int32, time int64) detector.Message {
	return detector.Message{Role: role, Index: index, ID: id, Key: hashID([]byte(id)), Time: time}
}

// msgNoID is a message without a messageId, keyed by its role, time, text and tools.
func msgNoID(role detector.Role, text string, index int32, time int64, tools ...uint64) detector.Message {
	return detector.Message{Role: role, Index: index, Key: fallbackKey(role, time, []byte(text), tools), Time: time}
}

// withTools sets the tool range of m.
func withTools(m detector.Message, lo, hi int32) detector.Message {
	m.ToolLo, m.ToolHi = lo, hi
	return m
}

// The messages of the webhook fixture call.
var (
	whUser1  = msgWithID(detector.RoleUser, "user-1", 1, 1763647336507)
	whReply1 = msgWithID(detector.RoleReply, "user-1-Qx81LmZp2a-1763647338957", 2, 1763647339307)
	whUser2  = msgWithID(detector.RoleUser, "user-2", 3, 1763647343707)
	whUser3  = msgWithID(detector.RoleUser, "user-3", 4, 1763647347507)
	whReply3 = msgWithID(detector.RoleReply, "user-3-Qx81LmZp2a-1763647350457", 5, 1763647350807)
	whGreet  = msgWithID(detector.RoleReply, "welcome-1", 0, 1763647331687)
)

const (
	whCallID = "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"
	vpCallID = "c4a7e2d9-1f3b-4c8e-b5a6-9d0e7f2a1b34"
	vpOrgID  = "8e1f6a3c-27d4-4b9a-9c5e-3a7d0b2e6f18"
	vpAsstID = "5b9d2e7a-4c1f-4e8b-a3d6-0f7c9e1a2b45"
)

func TestDecodeWebhookFixtures(t *testing.T) {
	tests := []struct {
		give string
		want detector.Event
	}{
		{"01-status-update-ongoing.json", detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusOngoing, Time: 1763647331427}},
		{"02-conversation-update-welcome.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647331697,
			HasHistory: true, Count: 1, Messages: []detector.Message{whGreet}}},
		{"03-conversation-update-user-1.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647336522,
			HasHistory: true, Count: 2, Messages: []detector.Message{whGreet, whUser1}}},
		{"04-conversation-update-reply-1.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647339319,
			HasHistory: true, Count: 3, Messages: []detector.Message{whGreet, whUser1, whReply1}}},
		{"05-conversation-update-user-2.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647343718,
			HasHistory: true, Count: 4, Messages: []detector.Message{whGreet, whUser1, whReply1, whUser2}}},
		{"06-conversation-update-user-3.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647347521,
			HasHistory: true, Count: 5, Messages: []detector.Message{whGreet, whUser1, whReply1, whUser2, whUser3}}},
		{"07-conversation-update-reply-3.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1763647350816,
			HasHistory: true, Count: 6, Messages: []detector.Message{whGreet, whUser1, whReply1, whUser2, whUser3, whReply3}}},
		{"08-end-of-call-report.json", detector.Event{Type: detector.TypeEndOfCallReport, Status: detector.StatusFinished, Time: 1763647362407, HasHistory: true}},
	}
	if len(tests) != len(fixtures.WebhookNames()) {
		t.Fatalf("%d fixtures, %d tests", len(fixtures.WebhookNames()), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			ev := decodeFixture(t, "webhook", tt.give)
			want := tt.want
			want.CallID, want.TeamID, want.AssistantID = whCallID, "team-7a31c9", "asst-42e1b0"
			assertEvent(t, ev, &want)
			p := ev.Payload.(*Payload)
			if p.TeamID() != "team-7a31c9" || p.AssistantID() != "asst-42e1b0" {
				t.Errorf("payload team %q assistant %q", p.TeamID(), p.AssistantID())
			}
			// The webhook dialect names the model flat, and truncates the assistant to {}
			// after the first event.
			wantProvider, wantModel := "", ""
			if tt.give == "01-status-update-ongoing.json" {
				wantProvider, wantModel = "openai", "gpt-4o-mini"
			}
			if prov, model := p.Model(); prov != wantProvider || model != wantModel {
				t.Errorf("model %q %q, want %q %q", prov, model, wantProvider, wantModel)
			}
			checkDecode(t, ev, fixtures.Webhook(tt.give), DefaultLimits())
		})
	}
}

// assertEvent compares everything Decode sets but the payload.
func assertEvent(t *testing.T, got, want *detector.Event) {
	t.Helper()
	g := *got
	g.Payload = nil
	if len(g.Messages) == 0 {
		g.Messages = nil
	}
	if len(g.Tools) == 0 {
		g.Tools = nil
	}
	if !eventsEqual(&g, want) {
		t.Errorf("event\n got %+v\nwant %+v", g, *want)
	}
}

func eventsEqual(a, b *detector.Event) bool {
	if len(a.Messages) != len(b.Messages) || len(a.Tools) != len(b.Tools) {
		return false
	}
	for i := range a.Messages {
		if a.Messages[i] != b.Messages[i] {
			return false
		}
	}
	for i := range a.Tools {
		if a.Tools[i] != b.Tools[i] {
			return false
		}
	}
	x, y := *a, *b
	x.Messages, y.Messages, x.Tools, y.Tools = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}

// The messages of the Vapi fixture call, without messageIds: keyed by text and time.
const (
	vpToolID   = "call_T7mQ2vK9xLp4RcW8nHf3JdYb"
	vpGreetTxt = "Thanks for calling Brightline Outfitters, this is Juno. How can I help?"
	vpUser1Txt = "Hi, could you check my order status? It's order 4417."
	vpReplyTxt = "Order 4417 shipped on Monday and should arrive Friday. Let me get the tracking link."
	vpUser2Txt = "Hello? Are you still there?"
)

var (
	vpTool   = hashID([]byte(vpToolID))
	vpGreet  = msgNoID(detector.RoleReply, vpGreetTxt, 1, 1772700001958)
	vpUser1  = msgNoID(detector.RoleUser, vpUser1Txt, 2, 1772700009618) // its endTime
	vpCall   = withTools(msgNoID(detector.RoleToolCall, "", 3, 1772700010468, vpTool), 0, 1)
	vpResult = withTools(msgNoID(detector.RoleToolResult, "", 4, 1772700016118, vpTool), 1, 2)
	vpReply  = msgNoID(detector.RoleReply, vpReplyTxt, 5, 1772700017318) // its time, when it started
	vpUser2  = msgNoID(detector.RoleUser, vpUser2Txt, 6, 1772700029118)
)

// TestDecodeVapiFixtures decodes the Vapi call of internal/fixtures event by event
// (its README at /work/shared/fixtures/vapi describes the shapes).
func TestDecodeVapiFixtures(t *testing.T) {
	all := []detector.Message{vpGreet, vpUser1, vpCall, vpResult, vpReply, vpUser2}
	history := func(n int) []detector.Message { return append([]detector.Message(nil), all[:n]...) }
	tools := []uint64{vpTool, vpTool}
	tests := []struct {
		give string
		want detector.Event
	}{
		{"01-status-update-in-progress.json", detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusOngoing, Time: 1772700001358}},
		{"02-conversation-update-greeting.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700005408,
			HasHistory: true, Count: 2, Messages: history(1)}},
		{"03-conversation-update-user-1.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700010028,
			HasHistory: true, Count: 3, Messages: history(2)}},
		{"04-conversation-update-tool-call.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700010508,
			HasHistory: true, Count: 4, Messages: history(3), Tools: tools[:1]}},
		{"05-conversation-update-tool-result.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700016158,
			HasHistory: true, Count: 5, Messages: history(4), Tools: tools}},
		{"06-conversation-update-reply-1.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700021278,
			HasHistory: true, Count: 6, Messages: history(5), Tools: tools}},
		{"07-conversation-update-user-2.json", detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, Time: 1772700029528,
			HasHistory: true, Count: 7, Messages: history(6), Tools: tools}},
		{"08-status-update-ended.json", detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusEnded, Time: 1772700038118,
			EndedReason: "customer-ended-call"}},
		// The history of the end-of-call-report is only in artifact.messages.
		{"09-end-of-call-report.json", detector.Event{Type: detector.TypeEndOfCallReport, Status: detector.StatusEnded, Time: 1772700040768,
			EndedReason: "customer-ended-call", HasHistory: true, Count: 7, Messages: history(6), Tools: tools}},
	}
	if len(tests) != len(fixtures.VapiNames()) {
		t.Fatalf("%d fixtures, %d tests", len(fixtures.VapiNames()), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			ev := decodeFixture(t, "vapi", tt.give)
			want := tt.want
			want.CallID, want.TeamID, want.AssistantID = vpCallID, vpOrgID, vpAsstID
			assertEvent(t, ev, &want)
			if ev.Ends() != (tt.give >= "08") {
				t.Errorf("Ends() = %v", ev.Ends())
			}
			p := ev.Payload.(*Payload)
			if p.TeamID() != vpOrgID {
				t.Errorf("payload team %q, want the orgId", p.TeamID())
			}
			if prov, model := p.Model(); prov != "openai" || model != "gpt-4o-mini" {
				t.Errorf("model %q %q", prov, model)
			}
			if p.value(p.phoneNumber) == nil {
				t.Errorf("phoneNumber not kept")
			}
			checkDecode(t, ev, fixtures.Vapi(tt.give), DefaultLimits())
		})
	}
	// The tool result names the call it answers.
	ev := decodeFixture(t, "vapi", "05-conversation-update-tool-result.json")
	call, result := ev.ToolIDs(&ev.Messages[2]), ev.ToolIDs(&ev.Messages[3])
	if len(call) != 1 || len(result) != 1 || call[0] != result[0] {
		t.Errorf("tool call ids %v, result ids %v", call, result)
	}
}

// ev wraps a message object into an event.
func ev(message string) string { return `{"message":` + message + `}` }

// withMessages wraps a history into a conversation-update of the call c1.
func withMessages(messages string) string {
	return ev(`{"type":"conversation-update","call":{"id":"c1"},"messages":` + messages + `}`)
}

func user(id, text string, ts string) string {
	return `{"messageId":"` + id + `","role":"user","text":` + text + `,"timestamp":` + ts + `}`
}

// decodeTests are valid events beyond the fixtures; they seed FuzzDecode too. want holds
// the fields the row is about; the reference decoder checks every field.
var decodeTests = []struct {
	name string
	give string
	want detector.Event
}{
	{
		name: "minimal",
		give: ev(`{"call":{"id":"c1"}}`),
		want: detector.Event{CallID: "c1"},
	},
	{
		name: "nulls are absent",
		give: ev(`{"type":null,"timestamp":null,"endedReason":null,"call":{"id":"c1","status":null,"teamId":null,"orgId":null,"assistantId":null,"endedReason":null,"messages":null},"messages":null,"artifact":null}`),
		want: detector.Event{CallID: "c1"},
	},
	{
		name: "unknown type and status",
		give: ev(`{"type":"error","call":{"id":"c1","status":"ringing"}}`),
		want: detector.Event{CallID: "c1"},
	},
	{
		name: "own outputs",
		give: ev(`{"type":"hang-unresolved","call":{"id":"c1"}}`),
		want: detector.Event{Type: detector.TypeOutput, CallID: "c1"},
	},
	{
		name: "status case-insensitive",
		give: ev(`{"type":"status-update","call":{"id":"c1","status":"FORWARDED"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusForwarded, CallID: "c1"},
	},
	{
		name: "vapi statuses",
		give: ev(`{"type":"conversation-update","call":{"id":"c1","status":"Forwarding"}}`),
		want: detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusForwarding, CallID: "c1"},
	},
	{
		name: "message.status of a status-update wins",
		give: ev(`{"status":"ended","type":"status-update","call":{"id":"c1","status":"in-progress"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusEnded, CallID: "c1"},
	},
	// SPEC §2: a call ends on any event whose call.status ends it. A status-update's
	// message.status that hangwatch does not know (Vapi's enum has scheduled, ringing,
	// not-found, deletion-failed, ...) or that does not end the call keeps a call.status
	// that does.
	{
		name: "unknown message.status of a status-update keeps call.status ended",
		give: ev(`{"type":"status-update","status":"ringing","call":{"id":"c1","status":"ended"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusEnded, CallID: "c1"},
	},
	{
		name: "unknown message.status of a status-update keeps call.status finished",
		give: ev(`{"type":"status-update","status":"not-found","call":{"id":"c1","status":"finished"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusFinished, CallID: "c1"},
	},
	{
		name: "message.status of a status-update that does not end keeps call.status finished",
		give: ev(`{"type":"status-update","status":"in-progress","call":{"id":"c1","status":"finished"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusFinished, CallID: "c1"},
	},
	{
		name: "unknown message.status of a status-update keeps call.status ongoing",
		give: ev(`{"type":"status-update","status":"ringing","call":{"id":"c1","status":"in-progress"}}`),
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusOngoing, CallID: "c1"},
	},
	{
		name: "message.status of another type is not read",
		give: ev(`{"status":5,"role":[],"type":"conversation-update","call":{"id":"c1","status":"in-progress"}}`),
		want: detector.Event{Type: detector.TypeConversationUpdate, Status: detector.StatusOngoing, CallID: "c1"},
	},
	{
		name: "speech started by the assistant",
		give: ev(`{"type":"speech-update","status":"started","role":"assistant","turn":2,"call":{"id":"c1","status":"in-progress"}}`),
		want: detector.Event{Type: detector.TypeSpeechUpdate, Status: detector.StatusOngoing, CallID: "c1", Speech: true},
	},
	{
		name: "speech started by the bot, any case",
		give: ev(`{"type":"speech-update","status":"Started","role":"BOT","call":{"id":"c1"}}`),
		want: detector.Event{Type: detector.TypeSpeechUpdate, CallID: "c1", Speech: true},
	},
	{
		name: "speech stopped",
		give: ev(`{"type":"speech-update","status":"stopped","role":"assistant","call":{"id":"c1"}}`),
		want: detector.Event{Type: detector.TypeSpeechUpdate, CallID: "c1"},
	},
	{
		name: "user speech",
		give: ev(`{"type":"speech-update","status":"started","role":"user","call":{"id":"c1"}}`),
		want: detector.Event{Type: detector.TypeSpeechUpdate, CallID: "c1"},
	},
	{
		name: "timestamp in seconds",
		give: ev(`{"timestamp":1772700001.358,"call":{"id":"c1"}}`),
		want: detector.Event{CallID: "c1", Time: 1772700001358},
	},
	{
		name: "team from orgId, ended reason from call",
		give: ev(`{"call":{"id":"c1","orgId":"o1","assistantId":"a1","endedReason":"silence-timed-out"}}`),
		want: detector.Event{CallID: "c1", TeamID: "o1", AssistantID: "a1", EndedReason: "silence-timed-out"},
	},
	{
		name: "teamId wins over orgId, message.endedReason over call's",
		give: ev(`{"endedReason":"customer-ended-call","call":{"orgId":"o1","teamId":"t1","id":"c1","endedReason":"x"}}`),
		want: detector.Event{CallID: "c1", TeamID: "t1", EndedReason: "customer-ended-call"},
	},
	{
		name: "duplicate keys: the last wins",
		give: `{"message":5,"message":{"type":7,"type":"end-of-call-report","call":{"id":5,"id":"c1","status":"queued","status":"finished"},"call":{"id":"c2","status":9,"status":"Queued"}}}`,
		want: detector.Event{Type: detector.TypeEndOfCallReport, Status: detector.StatusQueued, CallID: "c2"},
	},
	{
		name: "escaped keys and values",
		give: `{"mess\u0061ge":{"typ\u0065":"st\u0061tus-update","c\u0061ll":{"\u0069d":"c\u00e9\"1","st\u0061tus":"\u006fngoing"}}}`,
		want: detector.Event{Type: detector.TypeStatusUpdate, Status: detector.StatusOngoing, CallID: "cé\"1"},
	},
	{
		name: "invalid UTF-8 and lone surrogates become U+FFFD",
		give: "{\"message\":{\"call\":{\"id\":\"a\xffb\\ud800c\"}}}",
		want: detector.Event{CallID: "a\uFFFDb\uFFFDc"},
	},
	{
		name: "white space everywhere",
		give: " \n{ \"message\" :\t{ \"call\" : { \"id\" : \"c1\" } , \"messages\" : [ ] } }\r\n",
		want: detector.Event{CallID: "c1", HasHistory: true},
	},
	{
		name: "white-space text is no turn",
		give: withMessages(`[` + user("u1", `"\u00a0\n"`, "1") + `,` + user("u2", "\" \\t\u3000\\u2003\"", "2") + `,` + user("u3", `""`, "3") + `]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 3},
	},
	{
		name: "escaped text is a turn",
		give: withMessages(`[` + user("u1", `"\u00a0\u0041"`, "1763647331") + `]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 1,
			Messages: []detector.Message{msgWithID(detector.RoleUser, "u1", 0, 1763647331000)}},
	},
	{
		name: "seconds and float timestamps",
		give: withMessages(`[` + user("u1", `"a"`, "1763647331.5") + `,` + user("u2", `"b"`, "1763647332687.9") + `,` + user("u3", `"c"`, "-2") + `,` + user("u4", `"d"`, "1e300") + `]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 4, Messages: []detector.Message{
			msgWithID(detector.RoleUser, "u1", 0, 1763647331500), msgWithID(detector.RoleUser, "u2", 1, 1763647332687),
			msgWithID(detector.RoleUser, "u3", 2, -2000), msgWithID(detector.RoleUser, "u4", 3, 1<<53),
		}},
	},
	{
		// SPEC §1: a timestamp below 1e11 is in seconds; as integer and as float.
		name: "timestamps around 1e11",
		give: withMessages(`[` + user("u1", `"a"`, "99999999999") + `,` + user("u2", `"b"`, "99999999999.5") + `,` + user("u3", `"c"`, "100000000000.0") + `]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 3, Messages: []detector.Message{
			msgWithID(detector.RoleUser, "u1", 0, 99999999999000), msgWithID(detector.RoleUser, "u2", 1, 99999999999500),
			msgWithID(detector.RoleUser, "u3", 2, 100000000000),
		}},
	},
	{
		name: "webhook roles: greeting, bot reply, system, empty reply, second reply",
		give: withMessages(`[{"role":"assistant","text":"Hi","messageId":"w1"},` + user("u1", `"a"`, "1000000000000") +
			`,{"role":"system","text":"x","messageId":"s1"},{"role":"assistant","text":" ","messageId":"e1"},{"role":"BOT","text":"ok","messageId":"r1","timestamp":1000000000500},{"role":"user","text":"b"}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 6, Messages: []detector.Message{
			msgWithID(detector.RoleReply, "w1", 0, 0), msgWithID(detector.RoleUser, "u1", 1, 1000000000000),
			msgWithID(detector.RoleReply, "r1", 4, 1000000000500), msgNoID(detector.RoleUser, "b", 5, 0),
		}},
	},
	{
		name: "vapi times: a user turn at endTime, a reply at time, timestamp first",
		give: withMessages(`[{"role":"user","message":"a","time":1000000000000,"endTime":1000000002000},{"role":"user","message":"b","time":1000000003000},` +
			`{"role":"bot","message":"c","time":1000000004000,"endTime":1000000005000},{"role":"user","message":"d","time":1,"endTime":2,"timestamp":1000000009000}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 4, Messages: []detector.Message{
			msgNoID(detector.RoleUser, "a", 0, 1000000002000), msgNoID(detector.RoleUser, "b", 1, 1000000003000),
			msgNoID(detector.RoleReply, "c", 2, 1000000004000), msgNoID(detector.RoleUser, "d", 3, 1000000009000),
		}},
	},
	{
		name: "text, else message, else content when a string",
		give: withMessages(`[{"role":"user","text":"t","message":"m","content":"c"},{"role":"user","message":"m","content":"c"},{"role":"user","content":"c"},` +
			`{"role":"user","content":[{"type":"text","text":"x"}]},{"role":"user","text":"","message":"m"}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 5, Messages: []detector.Message{
			msgNoID(detector.RoleUser, "t", 0, 0), msgNoID(detector.RoleUser, "m", 1, 0), msgNoID(detector.RoleUser, "c", 2, 0),
		}},
	},
	{
		name: "tool calls: vapi role, OpenAI assistant message, results by id",
		give: withMessages(`[` + user("u1", `"a"`, "1000000000000") + `,` +
			`{"role":"tool_calls","message":"","toolCalls":[{"id":"t1","type":"function"},{"id":"t2"}],"time":1000000001000},` +
			`{"role":"tool_call_result","toolCallId":"t2","result":"{}","time":1000000002000},` +
			`{"role":"assistant","content":"","tool_calls":[{"id":"t3"}]},` +
			`{"role":"tool","tool_call_id":"t3","content":"x"},` +
			`{"role":"assistant","content":"","tool_calls":[]},` +
			`{"role":"tool_calls","toolCalls":[{"type":"function"}]},` +
			`{"role":"tool_call_result"},` +
			`{"role":"assistant","text":"both","toolCalls":[{"id":"t4"}]},` +
			`{"role":"user","text":"u","toolCalls":[{"id":"t5"}]}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 10, Messages: []detector.Message{
			msgWithID(detector.RoleUser, "u1", 0, 1000000000000),
			withTools(msgNoID(detector.RoleToolCall, "", 1, 1000000001000, hashID([]byte("t1")), hashID([]byte("t2"))), 0, 2),
			withTools(msgNoID(detector.RoleToolResult, "", 2, 1000000002000, hashID([]byte("t2"))), 2, 3),
			withTools(msgNoID(detector.RoleToolCall, "", 3, 0, hashID([]byte("t3"))), 3, 4),
			withTools(msgNoID(detector.RoleToolResult, "x", 4, 0, hashID([]byte("t3"))), 4, 5),
			withTools(msgNoID(detector.RoleToolCall, "", 6, 0), 5, 5),
			withTools(msgNoID(detector.RoleToolResult, "", 7, 0), 5, 5),
			msgNoID(detector.RoleReply, "both", 8, 0),
			msgNoID(detector.RoleUser, "u", 9, 0),
		}, Tools: []uint64{hashID([]byte("t1")), hashID([]byte("t2")), hashID([]byte("t2")), hashID([]byte("t3")), hashID([]byte("t3"))}},
	},
	{
		name: "toolCalls wins over tool_calls, toolCallId over tool_call_id",
		give: withMessages(`[{"role":"tool_calls","tool_calls":[{"id":"b"}],"toolCalls":[{"id":"a"}]},{"role":"tool","tool_call_id":"b","toolCallId":"a"}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 2, Messages: []detector.Message{
			withTools(msgNoID(detector.RoleToolCall, "", 0, 0, hashID([]byte("a"))), 0, 1),
			withTools(msgNoID(detector.RoleToolResult, "", 1, 0, hashID([]byte("a"))), 1, 2),
		}, Tools: []uint64{hashID([]byte("a")), hashID([]byte("a"))}},
	},
	{
		name: "history under call.messages",
		give: ev(`{"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 1, Messages: []detector.Message{msgWithID(detector.RoleUser, "u1", 0, 1000000000000)}},
	},
	{
		name: "history under artifact.messages",
		give: ev(`{"artifact":{"transcript":"x","messages":[{"role":"user","message":"a","time":1000000000000}]},"call":{"id":"c1","messages":[5]}}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 1, Messages: []detector.Message{msgNoID(detector.RoleUser, "a", 0, 1000000000000)}},
	},
	{
		name: "null message.messages falls back to call.messages",
		give: ev(`{"messages":null,"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 1, Messages: []detector.Message{msgWithID(detector.RoleUser, "u1", 0, 1000000000000)}},
	},
	{
		name: "message.messages wins over the others",
		give: ev(`{"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `,5]},"artifact":{"messages":{}},"messages":[{"role":"x"},` + user("u2", `"b"`, "1000000000001") + `]}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 2, Messages: []detector.Message{msgWithID(detector.RoleUser, "u2", 1, 1000000000001)}},
	},
	{
		name: "message.messages before call.messages",
		give: ev(`{"messages":[` + user("u2", `"b"`, "1000000000001") + `],"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 1, Messages: []detector.Message{msgWithID(detector.RoleUser, "u2", 0, 1000000000001)}},
	},
	{
		name: "a later null takes the preferred history back",
		give: ev(`{"messages":[` + user("u2", `"b"`, "1000000000001") + `],"call":{"id":"c1","messages":[{"role":"tool_calls","toolCalls":[{"id":"t"}]},` + user("u1", `"a"`, "1000000000000") + `]},"messages":null}`),
		want: detector.Event{CallID: "c1", HasHistory: true, Count: 2, Messages: []detector.Message{
			withTools(msgNoID(detector.RoleToolCall, "", 0, 0, hashID([]byte("t"))), 0, 1),
			msgWithID(detector.RoleUser, "u1", 1, 1000000000000),
		}, Tools: []uint64{hashID([]byte("t"))}},
	},
	{
		// SPEC §1: only the fields that detection reads have a type to keep.
		name: "passed-through fields of any type",
		give: ev(`{"type":"conversation-update","call":{"id":"c1","phoneNumber":5},"assistant":{"model":{"provider":5,"model":"m"}},"phone":[],"customer":"x","analysis":null,"phoneNumber":true,` +
			`"messages":[{"messageId":"u1","role":"user","text":"a","timestamp":1000000000000,"metrics":"x","skippedAssistantMessages":5,"secondsFromStart":"x","duration":{},"source":1,"extra":[null,{}]}]}`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 1,
			Messages: []detector.Message{msgWithID(detector.RoleUser, "u1", 0, 1000000000000)}},
	},
	{
		name: "duplicate element keys: the last wins",
		give: withMessages(`[{"role":5,"role":"user","text":7,"text":"a","timestamp":"x","timestamp":null,"messageId":1,"messageId":"u\u0031","toolCalls":5,"toolCalls":null}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 1,
			Messages: []detector.Message{{Role: detector.RoleUser, ID: "u1", Key: hashID([]byte(`u\u0031`))}}},
	},
	{
		name: "a messageId that is empty is none",
		give: withMessages(`[{"role":"user","text":"a","messageId":""}]`),
		want: detector.Event{Type: detector.TypeConversationUpdate, CallID: "c1", HasHistory: true, Count: 1,
			Messages: []detector.Message{msgNoID(detector.RoleUser, "a", 0, 0)}},
	},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			var ev detector.Event
			if err := Decode(&ev, []byte(tt.give), DefaultLimits()); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertEvent(t, &ev, &tt.want)
			checkDecode(t, &ev, []byte(tt.give), DefaultLimits())
		})
	}
}

func nested(n int) string {
	return ev(`{"call":{"id":"c1","x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
}

// secret stands for a transcript: no error may quote it.
const secret = "SECRET"

// badInputTests are malformed events; they seed FuzzDecode too.
var badInputTests = []struct {
	name          string
	give          string
	wantRejection Rejection
	wantDetail    string
}{
	{name: "garbage", give: "hello", wantRejection: RejectNotJSON, wantDetail: "syntax error at offset 0"},
	{name: "empty", give: "", wantRejection: RejectNotJSON, wantDetail: "unexpected end of input"},
	{name: "white space", give: " \n", wantRejection: RejectNotJSON},
	{name: "truncated", give: `{"message":{"call":{"id":"c1"`, wantRejection: RejectNotJSON},
	{name: "truncated string", give: `{"message":{"call":{"id":"c1`, wantRejection: RejectNotJSON},
	{name: "trailing data", give: ev(`{"call":{"id":"c1"}}`) + " {}", wantRejection: RejectNotJSON},
	{name: "trailing comma", give: ev(`{"call":{"id":"c1"},}`), wantRejection: RejectNotJSON},
	{name: "bad escape", give: ev(`{"call":{"id":"c\x1"}}`), wantRejection: RejectNotJSON},
	{name: "bad unicode escape", give: ev(`{"call":{"id":"c\u12g4"}}`), wantRejection: RejectNotJSON},
	{name: "raw control character", give: ev("{\"call\":{\"id\":\"c\t1\"}}"), wantRejection: RejectNotJSON},
	{name: "leading zero", give: ev(`{"call":{"id":"c1","n":01}}`), wantRejection: RejectNotJSON},
	{name: "bare minus", give: ev(`{"call":{"id":"c1","n":-}}`), wantRejection: RejectNotJSON},
	{name: "bad fraction", give: ev(`{"call":{"id":"c1","n":1.}}`), wantRejection: RejectNotJSON},
	{name: "bad exponent", give: ev(`{"call":{"id":"c1","n":1e+}}`), wantRejection: RejectNotJSON},
	{name: "bad literal", give: ev(`{"call":{"id":"c1","n":nul}}`), wantRejection: RejectNotJSON},
	{name: "mismatched brackets", give: ev(`{"call":{"id":"c1","n":[}}}`), wantRejection: RejectNotJSON},
	{name: "invalid after a bad field", give: ev(`{"call":{"id":5,"n":[}}}`), wantRejection: RejectNotJSON},
	{name: "invalid in a skipped history", give: ev(`{"messages":[],"call":{"id":"c1","messages":[{"a":tru}]}}`), wantRejection: RejectNotJSON},
	{name: "invalid in assistant.model", give: ev(`{"call":{"id":"c1"},"assistant":{"model":{"provider":"x",}}}`), wantRejection: RejectNotJSON},
	{name: "null", give: "null", wantRejection: RejectNoMessage, wantDetail: "event is null"},
	{name: "array", give: "[]", wantRejection: RejectNoMessage, wantDetail: "event is an array"},
	{name: "no message", give: `{"msg":{"call":{"id":"c1"}}}`, wantRejection: RejectNoMessage, wantDetail: "message is missing or null"},
	{name: "null message", give: ev(`null`), wantRejection: RejectNoMessage},
	{name: "message not object", give: ev(`"hang"`), wantRejection: RejectWrongType, wantDetail: "message is a string"},
	{name: "message array", give: ev(`[{"call":{"id":"c1"}}]`), wantRejection: RejectWrongType, wantDetail: "message is an array"},
	{name: "type number", give: ev(`{"type":1,"call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.type is a number"},
	{name: "type before no call", give: ev(`{"type":true}`), wantRejection: RejectWrongType, wantDetail: "message.type is a boolean"},
	{name: "timestamp string", give: ev(`{"timestamp":"1772700001358","call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.timestamp is a string"},
	{name: "timestamp out of range", give: ev(`{"timestamp":1e999,"call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.timestamp is out of range"},
	{name: "status of a status-update", give: ev(`{"type":"status-update","status":{},"call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.status is an object"},
	{name: "status of a speech-update", give: ev(`{"status":1,"type":"speech-update","call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.status is a number"},
	{name: "role of a speech-update", give: ev(`{"type":"speech-update","role":["bot"],"call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.role is an array"},
	{name: "endedReason", give: ev(`{"endedReason":false,"call":{"id":"c1"}}`), wantRejection: RejectWrongType, wantDetail: "message.endedReason is a boolean"},
	{name: "no call", give: ev(`{"type":"status-update"}`), wantRejection: RejectNoCallID, wantDetail: "message.call is missing or null"},
	{name: "call null", give: ev(`{"call":null}`), wantRejection: RejectNoCallID},
	{name: "call string", give: ev(`{"call":"c1"}`), wantRejection: RejectWrongType, wantDetail: "message.call is a string"},
	{name: "call.id missing", give: ev(`{"call":{}}`), wantRejection: RejectNoCallID, wantDetail: "message.call.id is missing or null"},
	{name: "call.id number", give: ev(`{"call":{"id":42}}`), wantRejection: RejectWrongType, wantDetail: "message.call.id is a number"},
	{name: "call.id empty", give: ev(`{"call":{"id":""}}`), wantRejection: RejectNoCallID, wantDetail: "message.call.id is empty"},
	{name: "call.id null", give: ev(`{"call":{"id":null}}`), wantRejection: RejectNoCallID},
	{name: "call.status number", give: ev(`{"call":{"id":"c1","status":1}}`), wantRejection: RejectWrongType, wantDetail: "message.call.status is a number"},
	{name: "call.teamId object", give: ev(`{"call":{"id":"c1","teamId":{}}}`), wantRejection: RejectWrongType, wantDetail: "message.call.teamId is an object"},
	{name: "call.orgId number", give: ev(`{"call":{"id":"c1","teamId":"t","orgId":7}}`), wantRejection: RejectWrongType, wantDetail: "message.call.orgId is a number"},
	{name: "call.assistantId bool", give: ev(`{"call":{"id":"c1","assistantId":false}}`), wantRejection: RejectWrongType, wantDetail: "message.call.assistantId is a boolean"},
	{name: "call.endedReason array", give: ev(`{"call":{"id":"c1","endedReason":[]}}`), wantRejection: RejectWrongType, wantDetail: "message.call.endedReason is an array"},
	{name: "messages object", give: withMessages(`{}`), wantRejection: RejectMessagesNotArray, wantDetail: "message.messages is an object"},
	{name: "messages string", give: withMessages(`"[]"`), wantRejection: RejectMessagesNotArray, wantDetail: "message.messages is a string"},
	{name: "call.messages number", give: ev(`{"call":{"id":"c1","messages":1}}`), wantRejection: RejectMessagesNotArray, wantDetail: "message.call.messages is a number"},
	{name: "artifact string", give: ev(`{"artifact":"x","call":{"id":"c1","messages":[]}}`), wantRejection: RejectWrongType, wantDetail: "message.artifact is a string"},
	{name: "artifact.messages object", give: ev(`{"artifact":{"messages":{}},"call":{"id":"c1"}}`), wantRejection: RejectMessagesNotArray, wantDetail: "message.artifact.messages is an object"},
	{name: "element not object", give: withMessages(`[{},"hi"]`), wantRejection: RejectWrongType, wantDetail: "message.messages[1] is a string"},
	{name: "element null", give: withMessages(`[null]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0] is null"},
	{name: "role number", give: withMessages(`[{"role":1,"text":"a"}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].role is a number"},
	{name: "text number", give: withMessages(`[{"role":"user","text":1}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].text is a number"},
	{name: "text array", give: withMessages(`[{"role":"user","text":["a"]}]`), wantRejection: RejectWrongType},
	{name: "message object", give: withMessages(`[{"role":"user","message":{"a":1}}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].message is an object"},
	{name: "messageId number", give: withMessages(`[{"role":"user","text":"a","messageId":3}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].messageId is a number"},
	{name: "timestamp string", give: withMessages(`[{"role":"user","text":"a","timestamp":"1763647331687"}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].timestamp is a string"},
	{name: "timestamp out of range", give: withMessages(`[{"role":"user","text":"a","timestamp":1e400}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].timestamp is out of range"},
	{name: "time string", give: withMessages(`[{"role":"bot","message":"a","time":"x"}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].time is a string"},
	{name: "endTime bool", give: withMessages(`[{"role":"user","message":"a","endTime":true}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].endTime is a boolean"},
	{name: "toolCalls object", give: withMessages(`[{},{"role":"tool_calls","toolCalls":{"id":"x"}}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[1].toolCalls is an object"},
	{name: "toolCalls entry string", give: withMessages(`[{"role":"tool_calls","toolCalls":[{"id":"a"},"b"]}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].toolCalls[1] is a string"},
	{name: "toolCalls entry id number", give: withMessages(`[{"role":"tool_calls","toolCalls":[{"id":"a"},{"id":2},{"id":[]}]}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].toolCalls[1].id is a number"},
	{name: "tool_calls entry id object", give: withMessages(`[{"role":"assistant","content":"","tool_calls":[{"id":{}}]}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].tool_calls[0].id is an object"},
	{name: "toolCallId number", give: withMessages(`[{"role":"tool_call_result","toolCallId":1}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].toolCallId is a number"},
	{name: "tool_call_id bool", give: withMessages(`[{"role":"tool","tool_call_id":true}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].tool_call_id is a boolean"},
	{name: "wrong type in a system message", give: withMessages(`[{"role":"system","text":{"x":1}}]`), wantRejection: RejectWrongType},
	{name: "wrong type in artifact.messages", give: ev(`{"call":{"id":"c1"},"artifact":{"messages":[{"role":"bot","time":"x"}]}}`), wantRejection: RejectWrongType, wantDetail: "message.artifact.messages[0].time is a string"},
	{name: "first error is the first field", give: withMessages(`[{"timestamp":"x","role":1}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[0].role is a number"},
	{name: "first error is the first element", give: withMessages(`[{"role":"user"},{"text":1},{"role":2}]`), wantRejection: RejectWrongType, wantDetail: "message.messages[1].text is a number"},
	// SPEC §5: no value of the payload in the error; TestDecodeBadInput looks for secret.
	{name: "secret key", give: `{"` + secret + `":1}`, wantRejection: RejectNoMessage},
	{name: "secret type", give: ev(`{"type":["` + secret + `"],"call":{"id":"c1"}}`), wantRejection: RejectWrongType},
	{name: "secret call.id", give: ev(`{"call":{"id":{"` + secret + `":"` + secret + `"}}}`), wantRejection: RejectWrongType},
	{name: "secret text", give: withMessages(`[{"role":"user","text":["` + secret + `"]}]`), wantRejection: RejectWrongType},
	{name: "secret messageId", give: withMessages(`[{"role":"user","text":"` + secret + `","messageId":{"` + secret + `":1}}]`), wantRejection: RejectWrongType},
	{name: "secret timestamp", give: withMessages(`[{"role":"user","text":"` + secret + `","timestamp":"` + secret + `"}]`), wantRejection: RejectWrongType},
	{name: "secret tool id", give: withMessages(`[{"role":"tool_calls","toolCalls":[{"id":{"` + secret + `":1}}]}]`), wantRejection: RejectWrongType},
	{name: "syntax error in secret text", give: withMessages(`[{"role":"user","text":"` + secret + "\x01\"}]"), wantRejection: RejectNotJSON},
	{name: "deeply nested", give: nested(10000), wantRejection: RejectTooDeep},
	{name: "nested past the limit", give: nested(62), wantRejection: RejectTooDeep, wantDetail: "nesting deeper than 64 at offset 95"},
	{name: "nested in a tool call", give: withMessages(`[{"toolCalls":[{"x":` + strings.Repeat("[", 60) + strings.Repeat("]", 60) + `}]}]`), wantRejection: RejectTooDeep},
	{name: "too large", give: ev(`{"call":{"id":"c1","x":"` + strings.Repeat("a", 1<<20) + `"}}`), wantRejection: RejectTooLarge},
}

func TestDecodeBadInput(t *testing.T) {
	for _, tt := range badInputTests {
		t.Run(tt.name, func(t *testing.T) {
			ev := detector.Event{Messages: make([]detector.Message, 0, 4), Tools: make([]uint64, 0, 4)}
			err := Decode(&ev, []byte(tt.give), DefaultLimits())
			var bad *BadInputError
			if !errors.As(err, &bad) {
				t.Fatalf("Decode = %v, want a *BadInputError", err)
			}
			if bad.Rejection != tt.wantRejection {
				t.Errorf("rejection %v (%v), want %v", bad.Rejection, err, tt.wantRejection)
			}
			if tt.wantDetail != "" && bad.Detail != tt.wantDetail {
				t.Errorf("detail %q, want %q", bad.Detail, tt.wantDetail)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the payload", err)
			}
			if r, ok := RejectionOf(err); !ok || r != tt.wantRejection {
				t.Errorf("RejectionOf = %v, %v", r, ok)
			}
			if !errors.Is(err, ErrBadInput) {
				t.Errorf("errors.Is(%v, ErrBadInput) = false", err)
			}
			if ev.Payload != nil || ev.CallID != "" || len(ev.Messages) != 0 || cap(ev.Messages) != 4 || len(ev.Tools) != 0 || cap(ev.Tools) != 4 {
				t.Errorf("event not reset: %+v", ev)
			}
			if len(tt.give) <= DefaultLimits().MaxBytes {
				checkDecode(t, &ev, []byte(tt.give), DefaultLimits())
			}
		})
	}
}

func TestDecodeWithinLimits(t *testing.T) {
	tests := []struct {
		name string
		give string
		lim  Limits
		want Rejection
	}{
		{name: "at the depth limit", give: nested(61), lim: DefaultLimits()},
		{name: "over the depth limit", give: nested(62), lim: DefaultLimits(), want: RejectTooDeep},
		{name: "depth 2 allows message", give: ev(`{"call":"x"}`), lim: Limits{MaxDepth: 2}, want: RejectWrongType},
		{name: "depth 2 refuses call", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxDepth: 2}, want: RejectTooDeep},
		{name: "depth 1 refuses message", give: ev(`{}`), lim: Limits{MaxDepth: 1}, want: RejectTooDeep},
		{name: "depth 4 allows an element", give: withMessages(`[{"role":"user"}]`), lim: Limits{MaxDepth: 4}},
		{name: "depth 4 refuses a tool call list", give: withMessages(`[{"toolCalls":[]}]`), lim: Limits{MaxDepth: 4}, want: RejectTooDeep},
		{name: "depth 4 refuses assistant.model", give: ev(`{"call":{"id":"c1"},"assistant":{"model":{}}}`), lim: Limits{MaxDepth: 3}, want: RejectTooDeep},
		{name: "deep limit", give: nested(5000), lim: Limits{MaxDepth: 6000}},
		{name: "at the size limit", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxBytes: 32}},
		{name: "over the size limit", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxBytes: 31}, want: RejectTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev detector.Event
			err := Decode(&ev, []byte(tt.give), tt.lim)
			if got, _ := RejectionOf(err); got != tt.want {
				t.Fatalf("Decode = %v, want rejection %v", err, tt.want)
			}
			checkDecode(t, &ev, []byte(tt.give), tt.lim)
		})
	}
}

func TestDecodeReusesEvent(t *testing.T) {
	data := fixtures.Vapi("07-conversation-update-user-2.json")
	var ev detector.Event
	ev.Received, ev.Wall, ev.Stored = 1, 2, true
	if err := Decode(&ev, data, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if ev.Received != 0 || ev.Wall != 0 || ev.Stored {
		t.Errorf("Decode kept Received, Wall or Stored of the previous event")
	}
	first, tool := &ev.Messages[0], &ev.Tools[0]
	if err := Decode(&ev, fixtures.Vapi("06-conversation-update-reply-1.json"), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if &ev.Messages[0] != first || &ev.Tools[0] != tool {
		t.Errorf("Decode did not reuse the capacity of Messages and Tools")
	}
	for _, data := range [][]byte{data, fixtures.Webhook("07-conversation-update-reply-3.json")} {
		allocs := testing.AllocsPerRun(100, func() {
			if err := Decode(&ev, data, DefaultLimits()); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 1 {
			t.Errorf("Decode allocates %v times, want 1 (the payload)", allocs)
		}
	}
}

// TestKeysAreStable pins the keys: they name messages without a messageId in the
// Nats-Msg-Id of outputs, across versions and processes.
func TestKeysAreStable(t *testing.T) {
	tests := []struct {
		name string
		give uint64
		want uint64
	}{
		{"messageId", hashID([]byte("user-1")), 0xa173746b114c6be8},
		{"tool id", hashID([]byte(vpToolID)), 0x4453c2032dd7c54a},
		{"user turn", fallbackKey(detector.RoleUser, 1772700009618, []byte(vpUser1Txt), nil), 0x887816ed5cf0b207},
		{"tool call", fallbackKey(detector.RoleToolCall, 1772700010468, nil, []uint64{hashID([]byte(vpToolID))}), 0x58522b2f5c0022e6},
	}
	for _, tt := range tests {
		if tt.give != tt.want {
			t.Errorf("%s key %#016x, want %#016x", tt.name, tt.give, tt.want)
		}
	}
	if hashID(nil) == 0 || fallbackKey(detector.RoleUser, 0, nil, nil) == 0 {
		t.Errorf("a key is 0")
	}
}

func TestBadInputError(t *testing.T) {
	err := error(&BadInputError{Rejection: RejectWrongType, Detail: "message.call.id is a number"})
	if got, want := err.Error(), "decode event: wrong type: message.call.id is a number"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if r, ok := RejectionOf(errors.Join(errors.New("x"), err)); !ok || r != RejectWrongType {
		t.Errorf("RejectionOf a wrapped error = %v, %v", r, ok)
	}
	if _, ok := RejectionOf(errors.New("x")); ok {
		t.Errorf("RejectionOf another error = true")
	}
	if got := len(Rejections()); got != int(RejectWrongType) || NumRejections != got+1 {
		t.Errorf("Rejections() has %d rejections, want %d", got, RejectWrongType)
	}
	want := []string{"too-large", "not-json", "too-deep", "no-message", "no-call-id", "messages-not-array", "wrong-type"}
	for i, r := range Rejections() {
		if s := r.String(); s != want[i] {
			t.Errorf("Rejection(%d).String() = %q, want %q", r, s, want[i])
		}
	}
}
