package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// readFixture returns an event of the webhook fixture call.
func readFixture(_ testing.TB, name string) []byte { return fixtures.Webhook(name) }

const fixtureCallID = "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"

// The turns of the fixture call.
var (
	fxUser1  = detector.Turn{ID: "user-1", Index: 1, HasTime: true, Time: 1763647336507}
	fxReply1 = detector.Turn{ID: "user-1-Qx81LmZp2a-1763647338957", Index: 2, HasTime: true, Time: 1763647339307}
	fxUser2  = detector.Turn{ID: "user-2", Index: 3, HasTime: true, Time: 1763647343707}
	fxUser3  = detector.Turn{ID: "user-3", Index: 4, HasTime: true, Time: 1763647347507}
	fxReply3 = detector.Turn{ID: "user-3-Qx81LmZp2a-1763647350457", Index: 5, HasTime: true, Time: 1763647350807}
)

func TestDecodeFixtures(t *testing.T) {
	tests := []struct {
		give          string
		wantType      detector.Type
		wantStatus    detector.Status
		wantMessages  int32
		wantStretches []detector.Stretch
		wantAssistant string // the assistant span, or "" to skip the check
	}{
		{
			give:       "01-status-update-ongoing.json",
			wantType:   detector.TypeStatusUpdate,
			wantStatus: detector.StatusOngoing,
		},
		{
			give:          "02-conversation-update-welcome.json",
			wantType:      detector.TypeConversationUpdate,
			wantStatus:    detector.StatusOngoing,
			wantMessages:  1,
			wantAssistant: "{}",
		},
		{
			give:          "03-conversation-update-user-1.json",
			wantType:      detector.TypeConversationUpdate,
			wantStatus:    detector.StatusOngoing,
			wantMessages:  2,
			wantStretches: []detector.Stretch{{First: fxUser1, Last: fxUser1}},
		},
		{
			give:          "04-conversation-update-reply-1.json",
			wantType:      detector.TypeConversationUpdate,
			wantStatus:    detector.StatusOngoing,
			wantMessages:  3,
			wantStretches: []detector.Stretch{{First: fxUser1, Last: fxUser1, Reply: fxReply1, Answered: true}},
		},
		{
			give:         "05-conversation-update-user-2.json",
			wantType:     detector.TypeConversationUpdate,
			wantStatus:   detector.StatusOngoing,
			wantMessages: 4,
			wantStretches: []detector.Stretch{
				{First: fxUser1, Last: fxUser1, Reply: fxReply1, Answered: true},
				{First: fxUser2, Last: fxUser2},
			},
		},
		{
			give:         "06-conversation-update-user-3.json",
			wantType:     detector.TypeConversationUpdate,
			wantStatus:   detector.StatusOngoing,
			wantMessages: 5,
			wantStretches: []detector.Stretch{
				{First: fxUser1, Last: fxUser1, Reply: fxReply1, Answered: true},
				{First: fxUser2, Last: fxUser3},
			},
		},
		{
			give:         "07-conversation-update-reply-3.json",
			wantType:     detector.TypeConversationUpdate,
			wantStatus:   detector.StatusOngoing,
			wantMessages: 6,
			wantStretches: []detector.Stretch{
				{First: fxUser1, Last: fxUser1, Reply: fxReply1, Answered: true},
				{First: fxUser2, Last: fxUser3, Reply: fxReply3, Answered: true},
			},
		},
		{
			give:          "08-end-of-call-report.json",
			wantType:      detector.TypeEndOfCallReport,
			wantStatus:    detector.StatusFinished,
			wantAssistant: "{}",
		},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			data := readFixture(t, tt.give)
			var ev detector.Event
			if err := Decode(&ev, data, DefaultLimits()); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Type != tt.wantType || ev.Status != tt.wantStatus || ev.CallID != fixtureCallID || ev.Messages != tt.wantMessages {
				t.Errorf("got type %v status %v call %q messages %d, want %v %v %q %d",
					ev.Type, ev.Status, ev.CallID, ev.Messages, tt.wantType, tt.wantStatus, fixtureCallID, tt.wantMessages)
			}
			assertStretches(t, ev.Stretches, tt.wantStretches)
			p := ev.Payload.(*Payload)
			if p.TeamID() != "team-7a31c9" || p.AssistantID() != "asst-42e1b0" {
				t.Errorf("team %q assistant %q", p.TeamID(), p.AssistantID())
			}
			if tt.wantAssistant != "" && string(p.Assistant()) != tt.wantAssistant {
				t.Errorf("assistant span %q, want %q", p.Assistant(), tt.wantAssistant)
			}
			// Each span is the corresponding value of the tree, byte for byte valid.
			checkDecode(t, &ev, data, DefaultLimits())
		})
	}
}

func assertStretches(t *testing.T, got, want []detector.Stretch) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("stretches\n%+v\nwant\n%+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stretch %d\n%+v\nwant\n%+v", i, got[i], want[i])
		}
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

func turn(id string, index int32, ms int64) detector.Turn {
	return detector.Turn{ID: id, Index: index, HasTime: true, Time: ms}
}

// decodeTests are valid events beyond the fixtures; they seed FuzzDecode too.
var decodeTests = []struct {
	name          string
	give          string
	wantType      detector.Type
	wantStatus    detector.Status
	wantCallID    string
	wantMessages  int32
	wantStretches []detector.Stretch
}{
	{
		name:       "minimal",
		give:       ev(`{"call":{"id":"c1"}}`),
		wantCallID: "c1",
	},
	{
		name:       "null type and status, other type",
		give:       ev(`{"type":null,"call":{"id":"c1","status":null,"teamId":null,"assistantId":null},"messages":null}`),
		wantCallID: "c1",
	},
	{
		name:       "unknown type",
		give:       ev(`{"type":"error","call":{"id":"c1","status":"ringing"}}`),
		wantCallID: "c1",
	},
	{
		name:       "own output",
		give:       ev(`{"type":"hang-resolved","call":{"id":"c1"}}`),
		wantType:   detector.TypeOutput,
		wantCallID: "c1",
	},
	{
		name:       "status case-insensitive",
		give:       ev(`{"type":"status-update","call":{"id":"c1","status":"FORWARDED"}}`),
		wantType:   detector.TypeStatusUpdate,
		wantStatus: detector.StatusForwarded,
		wantCallID: "c1",
	},
	{
		name:       "duplicate keys: the last wins",
		give:       `{"message":5,"message":{"type":7,"type":"end-of-call-report","call":{"id":5,"id":"c1","status":"queued","status":"finished"},"call":{"id":"c2","status":9,"status":"Queued"}}}`,
		wantType:   detector.TypeEndOfCallReport,
		wantStatus: detector.StatusQueued,
		wantCallID: "c2",
	},
	{
		name:       "escaped keys and values",
		give:       `{"mess\u0061ge":{"typ\u0065":"st\u0061tus-update","c\u0061ll":{"\u0069d":"c\u00e9\"1","st\u0061tus":"\u006fngoing"}}}`,
		wantType:   detector.TypeStatusUpdate,
		wantStatus: detector.StatusOngoing,
		wantCallID: "cé\"1",
	},
	{
		name:       "invalid UTF-8 and lone surrogates become U+FFFD",
		give:       "{\"message\":{\"call\":{\"id\":\"a\xffb\\ud800c\"}}}",
		wantCallID: "a\uFFFDb\uFFFDc",
	},
	{
		name:       "white space everywhere",
		give:       " \n{ \"message\" :\t{ \"call\" : { \"id\" : \"c1\" } , \"messages\" : [ ] } }\r\n",
		wantCallID: "c1",
	},
	{
		name:         "white-space text is no turn",
		give:         withMessages(`[` + user("u1", `"\u00a0\n"`, "1") + `,` + user("u2", "\" \\t\u3000\\u2003\"", "2") + `,` + user("u3", `""`, "3") + `]`),
		wantType:     detector.TypeConversationUpdate,
		wantCallID:   "c1",
		wantMessages: 3,
	},
	{
		name:          "escaped text is a turn",
		give:          withMessages(`[` + user("u1", `"\u00a0\u0041"`, "1763647331") + `]`),
		wantType:      detector.TypeConversationUpdate,
		wantCallID:    "c1",
		wantMessages:  1,
		wantStretches: []detector.Stretch{{First: turn("u1", 0, 1763647331000), Last: turn("u1", 0, 1763647331000)}},
	},
	{
		name:          "seconds and float timestamps",
		give:          withMessages(`[` + user("u1", `"a"`, "1763647331.5") + `,` + user("u2", `"b"`, "1763647332687.9") + `,` + user("u3", `"c"`, "-2") + `,` + user("u4", `"d"`, "1e300") + `]`),
		wantType:      detector.TypeConversationUpdate,
		wantCallID:    "c1",
		wantMessages:  4,
		wantStretches: []detector.Stretch{{First: turn("u1", 0, 1763647331500), Last: turn("u4", 3, 1<<53)}},
	},
	{
		name:         "stretches: greeting, bot reply, tool call, empty reply, second reply",
		give:         withMessages(`[{"role":"assistant","text":"Hi","messageId":"w1"},` + user("u1", `"a"`, "1000000000000") + `,{"role":"tool","text":"x","messageId":"t1"},{"role":"assistant","text":" ","messageId":"e1"},{"role":"BOT","text":"ok","messageId":"r1","timestamp":1000000000500},{"role":"assistant","text":"more","messageId":"r2"},{"role":"user","text":"b"},{"role":"user","text":"c","messageId":"u3"}]`),
		wantType:     detector.TypeConversationUpdate,
		wantCallID:   "c1",
		wantMessages: 8,
		wantStretches: []detector.Stretch{
			{First: turn("u1", 1, 1000000000000), Last: turn("u1", 1, 1000000000000), Reply: turn("r1", 4, 1000000000500), Answered: true},
			{First: detector.Turn{Index: 6}, Last: detector.Turn{ID: "u3", Index: 7}},
		},
	},
	{
		name:          "history under call.messages",
		give:          ev(`{"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		wantCallID:    "c1",
		wantMessages:  1,
		wantStretches: []detector.Stretch{{First: turn("u1", 0, 1000000000000), Last: turn("u1", 0, 1000000000000)}},
	},
	{
		name:          "null message.messages falls back to call.messages",
		give:          ev(`{"messages":null,"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		wantCallID:    "c1",
		wantMessages:  1,
		wantStretches: []detector.Stretch{{First: turn("u1", 0, 1000000000000), Last: turn("u1", 0, 1000000000000)}},
	},
	{
		name:          "message.messages wins over call.messages",
		give:          ev(`{"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `,5]},"messages":[{"role":"x"},` + user("u2", `"b"`, "1000000000001") + `]}`),
		wantCallID:    "c1",
		wantMessages:  2,
		wantStretches: []detector.Stretch{{First: turn("u2", 1, 1000000000001), Last: turn("u2", 1, 1000000000001)}},
	},
	{
		name:          "message.messages before call.messages",
		give:          ev(`{"messages":[` + user("u2", `"b"`, "1000000000001") + `],"call":{"id":"c1","messages":[` + user("u1", `"a"`, "1000000000000") + `]}}`),
		wantCallID:    "c1",
		wantMessages:  1,
		wantStretches: []detector.Stretch{{First: turn("u2", 0, 1000000000001), Last: turn("u2", 0, 1000000000001)}},
	},
	{
		// SPEC §1: a timestamp below 1e11 is in seconds; as integer and as float.
		name:         "timestamps just below 1e11 are seconds",
		give:         withMessages(`[` + user("u1", `"a"`, "99999999999") + `,` + user("u2", `"b"`, "99999999999.5") + `]`),
		wantType:     detector.TypeConversationUpdate,
		wantCallID:   "c1",
		wantMessages: 2,
		wantStretches: []detector.Stretch{
			{First: turn("u1", 0, 99999999999000), Last: turn("u2", 1, 99999999999500)},
		},
	},
	{
		name:         "timestamps of 1e11 are milliseconds",
		give:         withMessages(`[` + user("u1", `"a"`, "100000000000.0") + `,` + user("u2", `"b"`, "100000000000") + `]`),
		wantType:     detector.TypeConversationUpdate,
		wantCallID:   "c1",
		wantMessages: 2,
		wantStretches: []detector.Stretch{
			{First: turn("u1", 0, 100000000000), Last: turn("u2", 1, 100000000000)},
		},
	},
	{
		// SPEC §1: only the fields that detection reads have a type to keep.
		name:          "passed-through element fields of any type",
		give:          withMessages(`[{"messageId":"u1","role":"user","text":"a","timestamp":1000000000000,"metrics":"x","skippedAssistantMessages":5,"extra":[null,{}]}]`),
		wantType:      detector.TypeConversationUpdate,
		wantCallID:    "c1",
		wantMessages:  1,
		wantStretches: []detector.Stretch{{First: turn("u1", 0, 1000000000000), Last: turn("u1", 0, 1000000000000)}},
	},
	{
		name:         "duplicate element keys: the last wins",
		give:         withMessages(`[{"role":5,"role":"user","text":7,"text":"a","timestamp":"x","timestamp":null,"messageId":1,"messageId":"u\u0031"}]`),
		wantType:     detector.TypeConversationUpdate,
		wantCallID:   "c1",
		wantMessages: 1,
		wantStretches: []detector.Stretch{
			{First: detector.Turn{ID: "u1"}, Last: detector.Turn{ID: "u1"}},
		},
	},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			var ev detector.Event
			if err := Decode(&ev, []byte(tt.give), DefaultLimits()); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Type != tt.wantType || ev.Status != tt.wantStatus || ev.CallID != tt.wantCallID || ev.Messages != tt.wantMessages {
				t.Errorf("got type %v status %v call %q messages %d, want %v %v %q %d",
					ev.Type, ev.Status, ev.CallID, ev.Messages, tt.wantType, tt.wantStatus, tt.wantCallID, tt.wantMessages)
			}
			assertStretches(t, ev.Stretches, tt.wantStretches)
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
	name       string
	give       string
	wantReason Reason
	wantDetail string
}{
	{name: "garbage", give: "hello", wantReason: ReasonNotJSON, wantDetail: "syntax error at offset 0"},
	{name: "empty", give: "", wantReason: ReasonNotJSON, wantDetail: "unexpected end of input"},
	{name: "white space", give: " \n", wantReason: ReasonNotJSON},
	{name: "truncated", give: `{"message":{"call":{"id":"c1"`, wantReason: ReasonNotJSON},
	{name: "truncated string", give: `{"message":{"call":{"id":"c1`, wantReason: ReasonNotJSON},
	{name: "trailing data", give: ev(`{"call":{"id":"c1"}}`) + " {}", wantReason: ReasonNotJSON},
	{name: "trailing comma", give: ev(`{"call":{"id":"c1"},}`), wantReason: ReasonNotJSON},
	{name: "bad escape", give: ev(`{"call":{"id":"c\x1"}}`), wantReason: ReasonNotJSON},
	{name: "bad unicode escape", give: ev(`{"call":{"id":"c\u12g4"}}`), wantReason: ReasonNotJSON},
	{name: "raw control character", give: ev("{\"call\":{\"id\":\"c\t1\"}}"), wantReason: ReasonNotJSON},
	{name: "leading zero", give: ev(`{"call":{"id":"c1","n":01}}`), wantReason: ReasonNotJSON},
	{name: "bare minus", give: ev(`{"call":{"id":"c1","n":-}}`), wantReason: ReasonNotJSON},
	{name: "bad literal", give: ev(`{"call":{"id":"c1","n":nul}}`), wantReason: ReasonNotJSON},
	{name: "mismatched brackets", give: ev(`{"call":{"id":"c1","n":[}}}`), wantReason: ReasonNotJSON},
	{name: "invalid after a bad field", give: ev(`{"call":{"id":5,"n":[}}}`), wantReason: ReasonNotJSON},
	{name: "null", give: "null", wantReason: ReasonNoMessage, wantDetail: "event is null"},
	{name: "array", give: "[]", wantReason: ReasonNoMessage, wantDetail: "event is an array"},
	{name: "no message", give: `{"msg":{"call":{"id":"c1"}}}`, wantReason: ReasonNoMessage},
	{name: "null message", give: ev(`null`), wantReason: ReasonNoMessage},
	{name: "message not object", give: ev(`"hang"`), wantReason: ReasonWrongType, wantDetail: "message is a string"},
	{name: "message array", give: ev(`[{"call":{"id":"c1"}}]`), wantReason: ReasonWrongType},
	{name: "type number", give: ev(`{"type":1,"call":{"id":"c1"}}`), wantReason: ReasonWrongType, wantDetail: "message.type is a number"},
	{name: "type before no call", give: ev(`{"type":true}`), wantReason: ReasonWrongType},
	{name: "no call", give: ev(`{"type":"status-update"}`), wantReason: ReasonNoCallID, wantDetail: "message.call is missing or null"},
	{name: "call null", give: ev(`{"call":null}`), wantReason: ReasonNoCallID},
	{name: "call string", give: ev(`{"call":"c1"}`), wantReason: ReasonWrongType},
	{name: "call.id missing", give: ev(`{"call":{}}`), wantReason: ReasonNoCallID},
	{name: "call.id number", give: ev(`{"call":{"id":42}}`), wantReason: ReasonWrongType, wantDetail: "message.call.id is a number"},
	{name: "call.id empty", give: ev(`{"call":{"id":""}}`), wantReason: ReasonNoCallID, wantDetail: "message.call.id is empty"},
	{name: "call.id null", give: ev(`{"call":{"id":null}}`), wantReason: ReasonNoCallID},
	{name: "call.status number", give: ev(`{"call":{"id":"c1","status":1}}`), wantReason: ReasonWrongType},
	{name: "call.teamId object", give: ev(`{"call":{"id":"c1","teamId":{}}}`), wantReason: ReasonWrongType},
	{name: "call.assistantId bool", give: ev(`{"call":{"id":"c1","assistantId":false}}`), wantReason: ReasonWrongType},
	{name: "messages object", give: withMessages(`{}`), wantReason: ReasonMessagesNotArray, wantDetail: "message.messages is an object"},
	{name: "messages string", give: withMessages(`"[]"`), wantReason: ReasonMessagesNotArray},
	{name: "call.messages number", give: ev(`{"call":{"id":"c1","messages":1}}`), wantReason: ReasonMessagesNotArray, wantDetail: "message.call.messages is a number"},
	{name: "element not object", give: withMessages(`[{},"hi"]`), wantReason: ReasonWrongType, wantDetail: "message.messages[1] is a string"},
	{name: "role number", give: withMessages(`[{"role":1,"text":"a"}]`), wantReason: ReasonWrongType, wantDetail: "message.messages[0].role is a number"},
	{name: "text number", give: withMessages(`[{"role":"user","text":1}]`), wantReason: ReasonWrongType},
	{name: "text array", give: withMessages(`[{"role":"user","text":["a"]}]`), wantReason: ReasonWrongType},
	{name: "messageId number", give: withMessages(`[{"role":"user","text":"a","messageId":3}]`), wantReason: ReasonWrongType},
	{name: "timestamp string", give: withMessages(`[{"role":"user","text":"a","timestamp":"1763647331687"}]`), wantReason: ReasonWrongType},
	{name: "timestamp out of range", give: withMessages(`[{"role":"user","text":"a","timestamp":1e400}]`), wantReason: ReasonWrongType, wantDetail: "message.messages[0].timestamp is out of range"},
	{name: "wrong type in a tool message", give: withMessages(`[{"role":"tool","text":{"x":1}}]`), wantReason: ReasonWrongType},
	{name: "first error is the first field", give: withMessages(`[{"timestamp":"x","role":1}]`), wantReason: ReasonWrongType, wantDetail: "message.messages[0].role is a number"},
	// SPEC §5: no value of the payload in the error; TestDecodeBadInput looks for secret.
	{name: "secret key", give: `{"` + secret + `":1}`, wantReason: ReasonNoMessage},
	{name: "secret type", give: ev(`{"type":["` + secret + `"],"call":{"id":"c1"}}`), wantReason: ReasonWrongType},
	{name: "secret call.id", give: ev(`{"call":{"id":{"` + secret + `":"` + secret + `"}}}`), wantReason: ReasonWrongType},
	{name: "secret text", give: withMessages(`[{"role":"user","text":["` + secret + `"]}]`), wantReason: ReasonWrongType},
	{name: "secret messageId", give: withMessages(`[{"role":"user","text":"` + secret + `","messageId":{"` + secret + `":1}}]`), wantReason: ReasonWrongType},
	{name: "secret timestamp", give: withMessages(`[{"role":"user","text":"` + secret + `","timestamp":"` + secret + `"}]`), wantReason: ReasonWrongType},
	{name: "syntax error in secret text", give: withMessages(`[{"role":"user","text":"` + secret + "\x01\"}]"), wantReason: ReasonNotJSON},
	{name: "deeply nested", give: nested(10000), wantReason: ReasonTooDeep},
	{name: "nested past the limit", give: nested(62), wantReason: ReasonTooDeep, wantDetail: "nesting deeper than 64 at offset 95"},
	{name: "too large", give: ev(`{"call":{"id":"c1","x":"` + strings.Repeat("a", 1<<20) + `"}}`), wantReason: ReasonTooLarge},
}

func TestDecodeBadInput(t *testing.T) {
	for _, tt := range badInputTests {
		t.Run(tt.name, func(t *testing.T) {
			ev := detector.Event{Stretches: make([]detector.Stretch, 0, 4)}
			err := Decode(&ev, []byte(tt.give), DefaultLimits())
			var bad *BadInputError
			if !errors.As(err, &bad) {
				t.Fatalf("Decode = %v, want a *BadInputError", err)
			}
			if bad.Reason != tt.wantReason {
				t.Errorf("reason %v (%v), want %v", bad.Reason, err, tt.wantReason)
			}
			if tt.wantDetail != "" && bad.Detail != tt.wantDetail {
				t.Errorf("detail %q, want %q", bad.Detail, tt.wantDetail)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the payload", err)
			}
			if r, ok := BadInputReason(err); !ok || r != tt.wantReason {
				t.Errorf("BadInputReason = %v, %v", r, ok)
			}
			if !errors.Is(err, ErrBadInput) {
				t.Errorf("errors.Is(%v, ErrBadInput) = false", err)
			}
			if ev.Payload != nil || ev.CallID != "" || len(ev.Stretches) != 0 || cap(ev.Stretches) != 4 {
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
		want Reason
	}{
		{name: "at the depth limit", give: nested(61), lim: DefaultLimits()},
		{name: "over the depth limit", give: nested(62), lim: DefaultLimits(), want: ReasonTooDeep},
		{name: "depth 2 allows message", give: ev(`{"call":"x"}`), lim: Limits{MaxDepth: 2}, want: ReasonWrongType},
		{name: "depth 2 refuses call", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxDepth: 2}, want: ReasonTooDeep},
		{name: "depth 1 refuses message", give: ev(`{}`), lim: Limits{MaxDepth: 1}, want: ReasonTooDeep},
		{name: "deep limit", give: nested(5000), lim: Limits{MaxDepth: 6000}},
		{name: "at the size limit", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxBytes: 32}},
		{name: "over the size limit", give: ev(`{"call":{"id":"c1"}}`), lim: Limits{MaxBytes: 31}, want: ReasonTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev detector.Event
			err := Decode(&ev, []byte(tt.give), tt.lim)
			if got, _ := BadInputReason(err); got != tt.want {
				t.Fatalf("Decode = %v, want reason %v", err, tt.want)
			}
			checkDecode(t, &ev, []byte(tt.give), tt.lim)
		})
	}
}

func TestDecodeReusesEvent(t *testing.T) {
	data := readFixture(t, "07-conversation-update-reply-3.json")
	var ev detector.Event
	ev.Received, ev.Done = 1, func() {}
	if err := Decode(&ev, data, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if ev.Received != 0 || ev.Done != nil {
		t.Errorf("Decode kept Received or Done of the previous event")
	}
	first := &ev.Stretches[0]
	if err := Decode(&ev, readFixture(t, "06-conversation-update-user-3.json"), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if &ev.Stretches[0] != first {
		t.Errorf("Decode did not reuse the capacity of Stretches")
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(&ev, data, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("Decode allocates %v times, want 1 (the payload)", allocs)
	}
}

func TestBadInputError(t *testing.T) {
	err := error(&BadInputError{Reason: ReasonWrongType, Detail: "message.call.id is a number"})
	if got, want := err.Error(), "decode event: wrong type: message.call.id is a number"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if r, ok := BadInputReason(errors.Join(errors.New("x"), err)); !ok || r != ReasonWrongType {
		t.Errorf("BadInputReason of a wrapped error = %v, %v", r, ok)
	}
	if _, ok := BadInputReason(errors.New("x")); ok {
		t.Errorf("BadInputReason of another error = true")
	}
	if got := len(Reasons()); got != int(ReasonWrongType) {
		t.Errorf("Reasons() has %d reasons, want %d", got, ReasonWrongType)
	}
	for _, r := range Reasons() {
		if s := r.String(); s == "unknown" || strings.ContainsAny(s, " _") {
			t.Errorf("Reason(%d).String() = %q", r, s)
		}
	}
}
