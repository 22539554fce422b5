package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// testWall is 2025-11-20T14:02:32.631Z plus 123456 ns, in Unix nanoseconds.
const testWall = 1763647352631_123456

// decodeString decodes an event made in a test.
func decodeString(t testing.TB, data string) *detector.Event {
	t.Helper()
	ev := new(detector.Event)
	if err := Decode(ev, []byte(data), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return ev
}

// outputDoc is an output as encoding/json reads it.
type outputDoc struct {
	Message struct {
		Timestamp   int64             `json:"timestamp"`
		Type        string            `json:"type"`
		Call        map[string]any    `json:"call"`
		Assistant   json.RawMessage   `json:"assistant"`
		Messages    []json.RawMessage `json:"messages"`
		Phone       json.RawMessage   `json:"phone"`
		Customer    json.RawMessage   `json:"customer"`
		Analysis    json.RawMessage   `json:"analysis"`
		PhoneNumber json.RawMessage   `json:"phoneNumber"`
		Hang        map[string]any    `json:"hang"`
	} `json:"message"`
}

func parseOutput(t testing.TB, data []byte) *outputDoc {
	t.Helper()
	var doc outputDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, trim(data))
	}
	return &doc
}

func TestAppendOutputSplicesSpans(t *testing.T) {
	snap := decodeFixture(t, "webhook", "06-conversation-update-user-3.json")
	latest := decodeFixture(t, "webhook", "01-status-update-ongoing.json")
	out := &detector.Output{
		Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout,
		UserMessageID: "user-3", FirstUserMessageID: "user-2",
		Wall: testWall, Wait: 5003 * time.Millisecond, Threshold: 5 * time.Second,
		Snapshot: snap.Payload, Latest: latest.Payload,
	}
	got := AppendOutput(nil, snap.CallID, out, 0)
	if !json.Valid(got) {
		t.Fatalf("AppendOutput is not valid JSON:\n%s", got)
	}
	sp, lp := snap.Payload.(*Payload), latest.Payload.(*Payload)
	for name, span := range map[string][]byte{
		"messages": sp.value(sp.messages), "assistant": sp.value(sp.assistant), "phone": sp.value(sp.phone),
		"customer": sp.value(sp.customer), "analysis": sp.value(sp.analysis), "call": lp.value(lp.call),
	} {
		if !bytes.Contains(got, append([]byte(`"`+name+`":`), span...)) {
			t.Errorf("output does not carry %s byte for byte", name)
		}
	}
	// The latest event's call, not the snapshot's (the status-update has the full one).
	if !bytes.Contains(got, []byte(`"phoneCallStatusReason": "Call is in progress"`)) {
		t.Errorf("output lacks the call object")
	}

	// The output decodes as hangwatch's own output of the same call, with its history.
	var back detector.Event
	if err := Decode(&back, got, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if back.Type != detector.TypeOutput || back.CallID != snap.CallID || back.Count != snap.Count || back.Time != 1763647352631 {
		t.Errorf("decoded output: type %v call %q count %d time %d", back.Type, back.CallID, back.Count, back.Time)
	}
	if !eventsEqual(&detector.Event{Messages: back.Messages}, &detector.Event{Messages: snap.Messages}) {
		t.Errorf("decoded output messages\n%+v\nwant\n%+v", back.Messages, snap.Messages)
	}
	doc := parseOutput(t, got)
	if doc.Message.Timestamp != 1763647352631 || doc.Message.Type != "hang" {
		t.Errorf("timestamp %d type %q", doc.Message.Timestamp, doc.Message.Type)
	}
	wantHang := map[string]any{"reason": "turn-timeout", "stage": "awaiting-assistant", "userMessageId": "user-3", "firstUserMessageId": "user-2",
		"waitMs": 5003.0, "thresholdMs": 5000.0}
	if !mapsEqual(doc.Message.Hang, wantHang) {
		t.Errorf("hang %v, want %v", doc.Message.Hang, wantHang)
	}
}

func mapsEqual(a, b map[string]any) bool {
	return fmt.Sprint(a) == fmt.Sprint(b) // fmt sorts map keys
}

func TestAppendOutput(t *testing.T) {
	small := decodeString(t, `{"message":{"type":"conversation-update","call":{"id":"c1","teamId":"t1"},"assistant":{"model":{"provider":"openai","model":"gpt-4o"}},`+
		`"messages":[{"role":"user","text":"hi","messageId":"u1"}],"phone":{"p":1},"customer":null}}`)
	vapi := decodeString(t, `{"message":{"call":{"id":"c2","messages":[{"role":"user","message":"hi"}],"orgId":"o"},"phoneNumber":{"number":"+1"},"analysis":{"a":1}}}`)
	const small1 = `{"message":{"timestamp":1763647352631,"type":"`
	const smallBody = `","call":{"id":"c1","teamId":"t1"},"assistant":{"model":{"provider":"openai","model":"gpt-4o"}},` +
		`"messages":[{"role":"user","text":"hi","messageId":"u1"}],"phone":{"p":1},"customer":null,"analysis":{},"hang":`
	tests := []struct {
		name   string
		callID string
		give   detector.Output
		want   string
	}{
		{
			name:   "hang",
			callID: "c1",
			give: detector.Output{Kind: detector.KindHang, Reason: detector.ReasonMaxWait, Stage: detector.StageAwaitingTool, UserMessageID: "u1", FirstUserMessageID: "u1",
				Wall: testWall, Wait: 10_000_999 * time.Microsecond, Threshold: 10 * time.Second, InputGap: 1500 * time.Millisecond,
				Snapshot: small.Payload, Latest: small.Payload},
			want: small1 + "hang" + smallBody + `{"reason":"max-wait","stage":"awaiting-tool","userMessageId":"u1","firstUserMessageId":"u1","waitMs":10000,"thresholdMs":10000,` +
				`"inputGapMs":1500,"model":{"provider":"openai","model":"gpt-4o"}}}}`,
		},
		{
			name:   "resolved",
			callID: "c1",
			give: detector.Output{Kind: detector.KindResolved, Reason: detector.ReasonTurnTimeout, Stage: detector.StageAfterTool, UserMessageID: "u3", FirstUserMessageID: "u2",
				ReplyMessageID: "r3", Wall: testWall, Wait: 7100 * time.Millisecond, Threshold: time.Second, InputGap: time.Second,
				Snapshot: small.Payload, Latest: small.Payload},
			want: small1 + "hang-resolved" + smallBody + `{"reason":"turn-timeout","stage":"after-tool","userMessageId":"u3","firstUserMessageId":"u2","replyMessageId":"r3",` +
				`"waitMs":7100,"model":{"provider":"openai","model":"gpt-4o"}}}}`,
		},
		{
			name:   "resolved by a speech-update: no replyMessageId",
			callID: "c1",
			give: detector.Output{Kind: detector.KindResolved, Reason: detector.ReasonTurnTimeout, UserMessageID: "u3", FirstUserMessageID: "u2",
				Wall: testWall, Wait: 7100 * time.Millisecond, Snapshot: small.Payload, Latest: small.Payload},
			want: small1 + "hang-resolved" + smallBody + `{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"u3","firstUserMessageId":"u2",` +
				`"waitMs":7100,"model":{"provider":"openai","model":"gpt-4o"}}}}`,
		},
		{
			name:   "unresolved, history from call.messages, Vapi's phoneNumber",
			callID: "c2",
			give: detector.Output{Kind: detector.KindUnresolved, Reason: detector.ReasonTurnTimeout, UserMessageID: "u3", FirstUserMessageID: "u2",
				EndedReason: "customer-ended-call", Wall: testWall, Wait: 9 * time.Second, Snapshot: vapi.Payload, Latest: vapi.Payload},
			want: small1 + `hang-unresolved","call":{"id":"c2","orgId":"o"},"assistant":{},"messages":[{"role":"user","message":"hi"}],"phone":{},"customer":{},"analysis":{"a":1},` +
				`"phoneNumber":{"number":"+1"},"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"u3","firstUserMessageId":"u2","waitMs":9000,"endedReason":"customer-ended-call"}}}`,
		},
		{
			name:   "unresolved without an ended reason",
			callID: "c1",
			give:   detector.Output{Kind: detector.KindUnresolved, Reason: detector.ReasonMaxWait, Wall: testWall},
			want: small1 + `hang-unresolved","call":{"id":"c1"},"assistant":{},"messages":[],"phone":{},"customer":{},"analysis":{},` +
				`"hang":{"reason":"max-wait","stage":"awaiting-assistant","userMessageId":"","firstUserMessageId":"","waitMs":0,"endedReason":""}}}`,
		},
		{
			name:   "no payloads, odd ids",
			callID: "c\"1\\\n\x01\u2028é\xff",
			give:   detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "</script>", FirstUserMessageID: "\t", Wall: testWall},
			want: small1 + `hang","call":{"id":"c\"1\\\n\u0001\u2028é\ufffd"},"assistant":{},"messages":[],"phone":{},"customer":{},"analysis":{},` +
				`"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"</script>","firstUserMessageId":"\t","waitMs":0,"thresholdMs":0}}}`,
		},
		{
			name:   "a retained tail says so",
			callID: "c1",
			give: detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "u1", FirstUserMessageID: "u1",
				Wall: testWall, Snapshot: small.Payload.(*Payload).Retain(1), Latest: small.Payload.(*Payload).RetainCall()},
			want: small1 + `hang","call":{"id":"c1","teamId":"t1"},"assistant":{"model":{"provider":"openai","model":"gpt-4o"}},` +
				`"messages":[],"phone":{"p":1},"customer":null,"analysis":{},"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"u1","firstUserMessageId":"u1",` +
				`"waitMs":0,"thresholdMs":0,"model":{"provider":"openai","model":"gpt-4o"},"historyTruncated":true,"omittedMessages":1}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendOutput([]byte("prefix"), tt.callID, &tt.give, 0)
			if string(got) != "prefix"+tt.want {
				t.Errorf("AppendOutput =\n%s\nwant\n%s", got[6:], tt.want)
			}
			if !json.Valid(got[6:]) {
				t.Errorf("not valid JSON")
			}
			if o := AppendOutput(nil, tt.callID, &tt.give, len(got)-6); string(o) != tt.want {
				t.Errorf("AppendOutput with room to spare =\n%s\nwant\n%s", o, tt.want)
			}
		})
	}
}

// TestAppendOutputVapi is a hang of the Vapi fixture call: the call of the latest
// status, the history and the passed-through values of the latest snapshot, the model.
func TestAppendOutputVapi(t *testing.T) {
	snap := decodeFixture(t, "vapi", "04-conversation-update-tool-call.json")
	out := &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, Stage: detector.StageAwaitingTool,
		UserMessageID: "user-1772700009618-x", FirstUserMessageID: "user-1772700009618-x", Wall: testWall,
		Wait: 5 * time.Second, Threshold: 5 * time.Second, Snapshot: snap.Payload, Latest: snap.Payload}
	got := AppendOutput(nil, snap.CallID, out, 1<<20)
	doc := parseOutput(t, got)
	if len(doc.Message.Messages) != 4 || doc.Message.PhoneNumber == nil || doc.Message.Call["orgId"] != vpOrgID {
		t.Errorf("messages %d, phoneNumber %s, call %v", len(doc.Message.Messages), doc.Message.PhoneNumber, doc.Message.Call)
	}
	if m, _ := doc.Message.Hang["model"].(map[string]any); m["provider"] != "openai" || m["model"] != "gpt-4o-mini" || doc.Message.Hang["stage"] != "awaiting-tool" {
		t.Errorf("hang %v", doc.Message.Hang)
	}
}

// TestHistoryCarriedOnce: a history that arrived in call.messages is written to
// message.messages and left out of call (SPEC §3), wherever the member stands.
func TestHistoryCarriedOnce(t *testing.T) {
	big := bigHistory(600<<10, "user")
	tests := []struct {
		name string
		give string
		want string // the call object of the output
	}{
		{"first member", `{"message":{"call":{"messages":` + big + `,"id":"c1","status":"ongoing"}}}`, `{"id":"c1","status":"ongoing"}`},
		{"last member", `{"message":{"call":{"id":"c1", "status":"ongoing" , "messages" : ` + big + ` }}}`, `{"id":"c1", "status":"ongoing" }`},
		{"middle member", `{"message":{"call":{"id":"c1",` + "\n" + `"messages":` + big + `,"status":"ongoing"}}}`, `{"id":"c1","status":"ongoing"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := decodeString(t, tt.give)
			out := &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, Snapshot: snap.Payload, Latest: snap.Payload}
			got := AppendOutput(nil, "c1", out, 1<<20)
			if n := bytes.Count(got, []byte(`"text":"turn 1 `)); n != 1 {
				t.Errorf("the history is written %d times, %d bytes", n, len(got))
			}
			if !bytes.Contains(got, []byte(`"call":`+tt.want+`,"assistant"`)) {
				t.Errorf("call object is not %s:\n%s", tt.want, trim(got))
			}
			if !bytes.Contains(got, []byte(`"messages":`+big+`,"phone"`)) {
				t.Errorf("the history is not in message.messages")
			}
			if !json.Valid(got) || len(got) > 1<<20 {
				t.Errorf("output of %d bytes, valid %v", len(got), json.Valid(got))
			}
		})
	}
}

// bigHistory returns a history array of about n bytes of alternating turns of role
// user and assistant, whose texts start "turn <i> ".
func bigHistory(n int, first string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; b.Len() < n; i++ {
		role := first
		if i%2 == 1 {
			role = "assistant"
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"messageId":"m-%d","role":%q,"text":"turn %d %s","timestamp":%d}`, i, role, i, strings.Repeat("x", 900), 1763647331000+int64(i)*1000)
	}
	b.WriteByte(']')
	return b.String()
}

// TestFitsMaxPayload: a 900 KB snapshot and a latest event with a 500 KB call object
// make an output that fits 1 MiB by leaving out the oldest messages (SPEC §3).
func TestFitsMaxPayload(t *testing.T) {
	const maxPayload = 1 << 20
	hist := bigHistory(880<<10, "user")
	snap := decodeString(t, `{"message":{"type":"conversation-update","call":{"id":"c1"},"assistant":{"model":{"provider":"openai","model":"gpt-4o"}},"messages":`+hist+`}}`)
	latest := decodeString(t, `{"message":{"type":"status-update","call":{"id":"c1","status":"ongoing","metadata":"`+strings.Repeat("m", 500<<10)+`"}}}`)
	out := &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "m-900", FirstUserMessageID: "m-900",
		Wall: testWall, Snapshot: snap.Payload, Latest: latest.Payload}
	got := AppendOutput(nil, "c1", out, maxPayload)
	if len(got) > maxPayload || !json.Valid(got) {
		t.Fatalf("output of %d bytes (max %d), valid %v", len(got), maxPayload, json.Valid(got))
	}
	doc := parseOutput(t, got)
	omitted, _ := doc.Message.Hang["omittedMessages"].(float64)
	if doc.Message.Hang["historyTruncated"] != true || omitted < 1 {
		t.Fatalf("hang %v, want historyTruncated", doc.Message.Hang)
	}
	var all []json.RawMessage
	if err := json.Unmarshal([]byte(hist), &all); err != nil {
		t.Fatal(err)
	}
	// The newest messages are kept, as many as fit, byte for byte.
	kept := doc.Message.Messages
	if int(omitted)+len(kept) != len(all) || string(kept[len(kept)-1]) != string(all[len(all)-1]) || string(kept[0]) != string(all[int(omitted)]) {
		t.Errorf("kept %d of %d messages, omitted %v", len(kept), len(all), omitted)
	}
	if len(got)+1000 < maxPayload {
		t.Errorf("left out more than needed: %d bytes of %d", len(got), maxPayload)
	}
	if len(doc.Message.Call) != 3 || string(doc.Message.Assistant) == "{}" {
		t.Errorf("the call or the assistant was cut before the history")
	}
}

// TestFitOrder checks the order in which an output gives way: the oldest messages,
// then the assistant, then the other passed-through values and the call.
func TestFitOrder(t *testing.T) {
	snap := decodeString(t, `{"message":{"call":{"id":"c1","x":"`+strings.Repeat("c", 400)+`"},"assistant":{"a":"`+strings.Repeat("a", 300)+`"},`+
		`"messages":[{"text":"`+strings.Repeat("1", 100)+`"},{"text":"`+strings.Repeat("2", 100)+`"},{"text":"`+strings.Repeat("3", 100)+`"}],`+
		`"phone":{"p":"`+strings.Repeat("p", 100)+`"},"customer":{},"analysis":{},"phoneNumber":{}}}`)
	out := &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "u", FirstUserMessageID: "u", Snapshot: snap.Payload, Latest: snap.Payload}
	full := len(AppendOutput(nil, "c1", out, 0))
	tests := []struct {
		give          int
		wantMessages  int
		wantAssistant bool
		wantCall      bool
	}{
		{give: full, wantMessages: 3, wantAssistant: true, wantCall: true},
		{give: full - 1, wantMessages: 2, wantAssistant: true, wantCall: true},
		{give: full - 100, wantMessages: 1, wantAssistant: true, wantCall: true},
		{give: full - 200, wantMessages: 0, wantAssistant: true, wantCall: true},
		{give: full - 400, wantMessages: 0, wantAssistant: false, wantCall: true},
		{give: full - 800, wantMessages: 0, wantAssistant: false, wantCall: false},
		{give: 1, wantMessages: 0, wantAssistant: false, wantCall: false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.give), func(t *testing.T) {
			got, cut := AppendOutputFit(nil, "c1", out, tt.give)
			if len(got) > tt.give && tt.give > 1 {
				t.Errorf("%d bytes, max %d", len(got), tt.give)
			}
			if want := tt.give < full; cut != want {
				t.Errorf("AppendOutputFit says cut %v, want %v", cut, want)
			}
			if again := AppendOutput(nil, "c1", out, tt.give); string(again) != string(got) {
				t.Errorf("AppendOutput and AppendOutputFit differ")
			}
			doc := parseOutput(t, got)
			if len(doc.Message.Messages) != tt.wantMessages || (string(doc.Message.Assistant) != "{}") != tt.wantAssistant || (len(doc.Message.Call) > 1) != tt.wantCall {
				t.Errorf("messages %d assistant %s call %v", len(doc.Message.Messages), trim(doc.Message.Assistant), doc.Message.Call)
			}
			if omitted := 3 - tt.wantMessages; omitted > 0 && doc.Message.Hang["omittedMessages"] != float64(omitted) {
				t.Errorf("hang %v, want %d omitted", doc.Message.Hang, omitted)
			}
			if !tt.wantCall && (doc.Message.Call["id"] != "c1" || string(doc.Message.Phone) != "{}" || doc.Message.PhoneNumber != nil) {
				t.Errorf("last resort: call %v phone %s phoneNumber %s", doc.Message.Call, doc.Message.Phone, doc.Message.PhoneNumber)
			}
		})
	}
}

func TestRetain(t *testing.T) {
	for _, name := range []string{"vapi/07-conversation-update-user-2.json", "webhook/06-conversation-update-user-3.json", "vapi/09-end-of-call-report.json"} {
		dialect, file, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			data := bytes.Clone(fixtureData(dialect, file))
			var ev detector.Event
			if err := Decode(&ev, data, DefaultLimits()); err != nil {
				t.Fatal(err)
			}
			p := ev.Payload.(*Payload)
			out := detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "u", FirstUserMessageID: "u", Wall: testWall, Snapshot: p, Latest: p}
			whole := AppendOutput(nil, ev.CallID, &out, 0)
			all := parseOutput(t, whole).Message.Messages

			keep := p.Retain(0).(*Payload)
			tail := p.Retain(3).(*Payload)
			again := tail.Retain(4).(*Payload)
			none := p.Retain(100).(*Payload)
			call := p.RetainCall().(*Payload)
			teamID, assistantID := strings.Clone(p.TeamID()), strings.Clone(p.AssistantID())
			provider, model := p.Model()
			provider, model = strings.Clone(provider), strings.Clone(model)
			for i := range data {
				data[i] = 'X' // the received buffer is reused: the copies must not alias it
			}
			if keep.TeamID() != teamID || tail.AssistantID() != assistantID || call.TeamID() != teamID {
				t.Errorf("ids of the copies: %q %q %q", keep.TeamID(), tail.AssistantID(), call.TeamID())
			}
			out.Snapshot, out.Latest = keep, call
			if got := AppendOutput(nil, ev.CallID, &out, 0); string(got) != string(whole) {
				t.Errorf("output of the retained copy differs:\n%s\nwant\n%s", trim(got), trim(whole))
			}
			if keep.Len()-payloadSize >= len(data) || keep.Len()-payloadSize != len(keep.packed)+len(keep.data) || call.Len() >= keep.Len() || tail.Len() >= keep.Len() {
				t.Errorf("Len: data %d, whole %d, tail %d, call %d", len(data), keep.Len(), tail.Len(), call.Len())
			}
			for _, tt := range []struct {
				give        *Payload
				wantOmitted int
			}{{keep, 0}, {tail, 3}, {again, 4}, {none, len(all)}} {
				out.Snapshot = tt.give
				doc := parseOutput(t, AppendOutput(nil, ev.CallID, &out, 0))
				if tt.give.Omitted() != tt.wantOmitted || len(doc.Message.Messages) != len(all)-tt.wantOmitted {
					t.Errorf("omitted %d, %d messages; want %d", tt.give.Omitted(), len(doc.Message.Messages), tt.wantOmitted)
					continue
				}
				for i, m := range doc.Message.Messages {
					if string(m) != string(all[tt.wantOmitted+i]) {
						t.Errorf("message %d differs", i)
					}
				}
				if tt.wantOmitted > 0 && doc.Message.Hang["omittedMessages"] != float64(tt.wantOmitted) {
					t.Errorf("hang %v", doc.Message.Hang)
				}
				if prov, m := tt.give.Model(); prov != provider || m != model {
					t.Errorf("model %q %q, want %q %q", prov, m, provider, model)
				}
			}
		})
	}
}

// TestRetainWithoutHistory: a history that is empty or absent stays so.
func TestRetainWithoutHistory(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{give: ev(`{"call":{"id":"c1"},"messages":[ ]}`), want: `"messages":[ ]`},
		{give: ev(`{"call":{"id":"c1"}}`), want: `"messages":[]`},
	}
	for _, tt := range tests {
		p := decodeString(t, tt.give).Payload.(*Payload)
		for _, from := range []int32{0, 1, 5} {
			q := p.Retain(from).(*Payload)
			got := AppendOutput(nil, "c1", &detector.Output{Kind: detector.KindHang, Snapshot: q}, 0)
			if !bytes.Contains(got, []byte(tt.want+`,"phone"`)) || q.Omitted() != 0 || bytes.Contains(got, []byte("historyTruncated")) {
				t.Errorf("Retain(%d) of %s: %s", from, tt.give, got)
			}
		}
	}
}

func TestAppendOutputAllocs(t *testing.T) {
	snap := decodeFixture(t, "vapi", "07-conversation-update-user-2.json")
	out := &detector.Output{Kind: detector.KindResolved, UserMessageID: "user-3", FirstUserMessageID: "user-2", ReplyMessageID: "r\n", Snapshot: snap.Payload, Latest: snap.Payload}
	dst := make([]byte, 0, 32<<10)
	for _, limit := range []int{0, 1 << 20, 8000, 100} {
		allocs := testing.AllocsPerRun(100, func() { dst = AppendOutput(dst[:0], "c\x01", out, limit) })
		if allocs != 0 {
			t.Errorf("AppendOutput with max %d allocates %v times", limit, allocs)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendOutput(dst[:0], "c1", &detector.Output{}, 0) }); allocs != 0 {
		t.Errorf("AppendOutput without payloads allocates %v times", allocs)
	}
}

func TestMsgID(t *testing.T) {
	tests := []struct {
		name        string
		call, first string
		kind        detector.Kind
		want        string
	}{
		{"hang", "call-1", "user-2", detector.KindHang, "call-1:user-2:hang"},
		{"resolved", "call-1", "user-2", detector.KindResolved, "call-1:user-2:resolved"},
		{"unresolved", "call-1", "user-2", detector.KindUnresolved, "call-1:user-2:unresolved"},
		{"uuid and a fallback id", "c4a7e2d9-5b1f-4c3e-9a8d-7e6f5a4b3c2d", "user-1772700009618-887816ed", detector.KindHang,
			"c4a7e2d9-5b1f-4c3e-9a8d-7e6f5a4b3c2d:user-1772700009618-887816ed:hang"},
		{"inner spaces, non-ascii and punctuation kept", "José's call #1", "turn 1/2;x=y", detector.KindHang, "José's call #1:turn 1/2;x=y:hang"},
		{"empty ids", "", "", detector.KindHang, "::hang"},
		{"newline", "call\nE", "user-1", detector.KindHang, "call%0AE:user-1:hang"},
		{"control characters", "\r\t\x00\x1f\x7f", "a\x01", detector.KindHang, "%0D%09%00%1F%7F:a%01:hang"},
		{"percent", "50%", "%0A", detector.KindHang, "50%25:%250A:hang"},
		{"colon", "a:b", "c:", detector.KindResolved, "a%3Ab:c%3A:resolved"},
		{"a space that begins the value", " call", " user", detector.KindHang, "%20call: user:hang"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MsgID(tt.call, &detector.Output{Kind: tt.kind, FirstUserMessageID: tt.first})
			if got != tt.want {
				t.Errorf("MsgID(%q, %q) = %q, want %q", tt.call, tt.first, got, tt.want)
			}
			checkMsgID(t, got, tt.call, tt.first, tt.kind)
		})
	}
}

// TestMsgIDInjective: ids that a careless encoding would merge (NATS turns a newline
// into a space; a colon in an id shifts the split) give different Nats-Msg-Ids, or the
// hang stream's dedupe would drop one call's output as the other's duplicate.
func TestMsgIDInjective(t *testing.T) {
	tests := [][2]string{
		{"call\nE", "u"}, {"call E", "u"}, {"call%0AE", "u"}, {"call%250AE", "u"}, {"call\rE", "u"},
		{"a:b", "c"}, {"a", "b:c"}, {"a%3Ab", "c"}, {"a", "b%3Ac"},
		{" call", "u"}, {"call", "u"}, {"%20call", "u"}, {"\tcall", "u"},
		{"", ":"}, {":", ""}, {"", "%3A"},
	}
	seen := map[string][2]string{}
	for _, tt := range tests {
		id := MsgID(tt[0], &detector.Output{Kind: detector.KindHang, FirstUserMessageID: tt[1]})
		if prev, ok := seen[id]; ok {
			t.Errorf("MsgID(%q, %q) = MsgID(%q, %q) = %q", tt[0], tt[1], prev[0], prev[1], id)
		}
		seen[id] = tt
	}
}

// FuzzMsgID checks that any ids give a Nats-Msg-Id that is a header value NATS and
// net/http carry unchanged, and from which the ids and the kind can be read back: no two
// outputs share one.
func FuzzMsgID(f *testing.F) {
	f.Add("call-1", "user-2", uint8(0))
	f.Add("call\nE", "u\r", uint8(1))
	f.Add(" %3A:", "\x7f\t ", uint8(2))
	f.Add("José\xff", "", uint8(0))
	f.Fuzz(func(t *testing.T, callID, first string, kind uint8) {
		k := detector.Kind(kind%3 + 1)
		checkMsgID(t, MsgID(callID, &detector.Output{Kind: k, FirstUserMessageID: first}), callID, first, k)
	})
}

// checkMsgID checks that id is a valid header value, which NATS and net/http neither
// change nor refuse, and that it reads back as callID, first and kind.
func checkMsgID(t *testing.T, id, callID, first string, kind detector.Kind) {
	t.Helper()
	for i := 0; i < len(id); i++ {
		// Stricter than net/http's httpguts.ValidHeaderFieldValue, which lets a tab
		// through: NATS would trim one at the edge.
		if c := id[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("MsgID(%q, %q) = %q: byte %#x at %d is no header value's", callID, first, id, c, i)
		}
	}
	if textproto.TrimString(id) != id {
		t.Fatalf("MsgID(%q, %q) = %q: NATS and net/http would trim it", callID, first, id)
	}
	parts := strings.Split(id, ":")
	if len(parts) != 3 {
		t.Fatalf("MsgID(%q, %q) = %q: want 3 parts", callID, first, id)
	}
	gotCall, err1 := url.PathUnescape(parts[0])
	gotFirst, err2 := url.PathUnescape(parts[1])
	if err1 != nil || err2 != nil || gotCall != callID || gotFirst != first || parts[2] != kind.Suffix() {
		t.Fatalf("MsgID(%q, %q) = %q reads back as %q, %q, %q (%v, %v)", callID, first, id, gotCall, gotFirst, parts[2], err1, err2)
	}
}

// FuzzAppendOutput checks that the output of any decodable events, ids and max payload
// is valid JSON, fits the max payload when that is above the smallest output, and reads
// back as the same output: the hang fields, the newest messages of the snapshot, and
// how many were left out.
func FuzzAppendOutput(f *testing.F) {
	f.Add(fixtures.Webhook("06-conversation-update-user-3.json"), fixtures.Webhook("01-status-update-ongoing.json"), "c1", "user-3", "user-2", "r", uint8(0), 0, int32(0))
	f.Add(fixtures.Vapi("07-conversation-update-user-2.json"), fixtures.Vapi("01-status-update-in-progress.json"), "c1", "u", "u", "", uint8(2), 9000, int32(3))
	f.Add(fixtures.Vapi("09-end-of-call-report.json"), fixtures.Vapi("08-status-update-ended.json"), "c1", "u", "u", "", uint8(2), 2000, int32(0))
	f.Add([]byte(ev(`{"call":{"id":"a\u2028","messages":[{},1,"x"]},"assistant":5,"phone":null}`)), []byte("x"), "\x00\"", "\xff", "\\", "\u2029", uint8(1), 100, int32(1))
	f.Fuzz(func(t *testing.T, snapData, latestData []byte, callID, user, first, reply string, kind uint8, maxBytes int, from int32) {
		out := detector.Output{Kind: detector.Kind(kind%3 + 1), Reason: detector.ReasonMaxWait, Stage: detector.Stage(kind % 3), UserMessageID: user,
			FirstUserMessageID: first, ReplyMessageID: reply, EndedReason: reply, Wall: testWall, Wait: time.Second, Threshold: time.Second,
			InputGap: time.Duration(kind) * time.Millisecond}
		var snap, latest detector.Event
		var sp *Payload
		if Decode(&snap, snapData, DefaultLimits()) == nil {
			sp = snap.Payload.(*Payload)
			if from != 0 {
				sp = sp.Retain(from).(*Payload)
				if q := sp.Pack(); q != nil && from%2 != 0 {
					sp = q.(*Payload) // a packed copy, which outputs unpack
				}
			}
			out.Snapshot = sp
		}
		if Decode(&latest, latestData, DefaultLimits()) == nil {
			out.Latest = latest.Payload
		}
		got := AppendOutput(nil, callID, &out, maxBytes)
		if !json.Valid(got) {
			t.Fatalf("AppendOutput is not valid JSON:\n%s", got)
		}
		if sp != nil && from == 0 {
			// The engine keeps a decoded payload while its bytes last, then its packed (or
			// compact) copy: the output is the same from either.
			packed := out
			packed.Snapshot = sp.Pack()
			if again := AppendOutput(nil, callID, &packed, maxBytes); !bytes.Equal(again, got) {
				t.Fatalf("output from the packed copy of a decoded payload:\n%s\nfrom the payload:\n%s", again, got)
			}
		}
		floor := len(AppendOutput(nil, callID, &out, 1))
		if maxBytes >= floor && len(got) > maxBytes {
			t.Fatalf("output of %d bytes, max %d (floor %d)", len(got), maxBytes, floor)
		}
		var doc struct {
			Message struct {
				Type     string            `json:"type"`
				Call     json.RawMessage   `json:"call"`
				Messages []json.RawMessage `json:"messages"`
				Hang     map[string]any    `json:"hang"`
			} `json:"message"`
		}
		if err := json.Unmarshal(got, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Message.Type != out.Kind.String() {
			t.Errorf("type %q", doc.Message.Type)
		}
		want := map[string]any{"reason": "max-wait", "stage": out.Stage.String(), "userMessageId": validUTF8(user), "firstUserMessageId": validUTF8(first)}
		switch out.Kind {
		case detector.KindResolved:
			if reply != "" {
				want["replyMessageId"] = validUTF8(reply)
			}
		case detector.KindUnresolved:
			want["endedReason"] = validUTF8(reply)
		}
		for k, v := range want {
			if doc.Message.Hang[k] != v {
				t.Errorf("hang.%s = %q, want %q", k, doc.Message.Hang[k], v)
			}
		}
		// The messages are the newest of the snapshot's, as many as the output says.
		var all []json.RawMessage
		if sp != nil && sp.messages.end != 0 {
			if err := json.Unmarshal(unpacked(t, sp).value(sp.messages), &all); err != nil {
				t.Fatal(err)
			}
		}
		omitted, _ := doc.Message.Hang["omittedMessages"].(float64)
		dropped := int(omitted)
		if sp != nil {
			dropped -= sp.Omitted()
		}
		if (omitted > 0) != (doc.Message.Hang["historyTruncated"] == true) || dropped < 0 || dropped+len(doc.Message.Messages) != len(all) {
			t.Fatalf("%d messages, %v omitted (retained %d), of %d", len(doc.Message.Messages), omitted, sp.Omitted(), len(all))
		}
		for i, m := range doc.Message.Messages {
			if !bytes.Equal(m, all[dropped+i]) {
				t.Fatalf("message %d differs", i)
			}
		}
		// The call of the latest event, else the snapshot's, without its messages
		// member; as a last resort only the call id.
		var head, tail []byte
		if lp, ok := out.Latest.(*Payload); ok {
			head, tail = lp.callParts()
		}
		if head == nil && sp != nil {
			head, tail = unpacked(t, sp).callParts()
		}
		lastResort := `{"id":` + string(AppendJSONString(nil, callID)) + `}`
		if wantCall := append(head[:len(head):len(head)], tail...); !bytes.Equal(doc.Message.Call, wantCall) && string(doc.Message.Call) != lastResort {
			t.Errorf("call %s, want %s", trim(doc.Message.Call), trim(wantCall))
		}
	})
}

// validUTF8 replaces each byte of invalid UTF-8 by U+FFFD, as encoding/json does.
func validUTF8(s string) string { return string([]rune(s)) }

// TestAppendJSONString compares the escaper with encoding/json (HTML escaping off), and
// jsonStringLen with the escaper.
func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"empty", ""},
		{"ascii", "Thursday afternoon if possible."},
		{"quotes and backslash", `it says "overdue", path C:\x`},
		{"controls", "a\nb\rc\td\x00e\x1ff\x7f"},
		{"backspace and form feed", "a\bb\fc\x0bd"},
		{"non-ascii", "José Müller, €120, 日本"},
		{"line separators", "a\u2028b\u2029c"},
		{"invalid utf-8", "a\xffb\xc3"},
		{"html is kept", "<b>&</b>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(tt.give); err != nil {
				t.Fatal(err)
			}
			got := AppendJSONString([]byte("x"), tt.give)
			if string(got[1:]) != string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
				t.Errorf("AppendJSONString(%q) = %s, want %s", tt.give, got[1:], want.Bytes())
			}
			if n := jsonStringLen(tt.give); n != len(got)-1 {
				t.Errorf("jsonStringLen(%q) = %d, want %d", tt.give, n, len(got)-1)
			}
			var back string
			if err := json.Unmarshal(got[1:], &back); err != nil {
				t.Fatalf("not a JSON string: %v", err)
			}
		})
	}
}

func FuzzJSONStringLen(f *testing.F) {
	f.Add("a\u2028\xff\x01\"")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := jsonStringLen(s), len(AppendJSONString(nil, s)); got != want {
			t.Fatalf("jsonStringLen(%q) = %d, want %d", s, got, want)
		}
	})
}

// TestLegacyMsgID: the id earlier versions gave an output, from MsgID's: its ids undone.
func TestLegacyMsgID(t *testing.T) {
	for _, tt := range []struct{ call, first, want string }{
		{"plain-call", "user-1", "plain-call:user-1:hang"},
		{"x:y", "user-2", "x:y:user-2:hang"},
		{"call\nE", "u%1", "call\nE:u%1:hang"},
		{" lead", "u", " lead:u:hang"},
	} {
		id := MsgID(tt.call, &detector.Output{Kind: detector.KindHang, FirstUserMessageID: tt.first})
		if got := LegacyMsgID(id); got != tt.want {
			t.Errorf("LegacyMsgID(%q) = %q, want %q", id, got, tt.want)
		}
	}
}
