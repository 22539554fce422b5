package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

func decodeFixture(t testing.TB, name string) *detector.Event {
	t.Helper()
	ev := new(detector.Event)
	if err := Decode(ev, readFixture(t, name), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return ev
}

// testAt is 2025-11-20T14:02:32.631Z plus 123456 ns, in Unix nanoseconds.
const testAt = 1763647352631_123456

func TestAppendOutputSplicesSpans(t *testing.T) {
	snap := decodeFixture(t, "06-conversation-update-user-3.json")
	latest := decodeFixture(t, "01-status-update-ongoing.json")
	out := &detector.Output{
		Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout,
		UserMessageID: "user-3", FirstUserMessageID: "user-2",
		At: testAt, Wait: 5003 * time.Millisecond, Threshold: 5 * time.Second,
		Snapshot: snap.Payload, Latest: latest.Payload,
	}
	got := AppendOutput(nil, snap.CallID, out)
	if !json.Valid(got) {
		t.Fatalf("AppendOutput is not valid JSON:\n%s", got)
	}
	sp, lp := snap.Payload.(*Payload), latest.Payload.(*Payload)
	for name, span := range map[string][]byte{
		"messages": sp.Messages(), "assistant": sp.Assistant(), "phone": sp.Phone(),
		"customer": sp.Customer(), "analysis": sp.Analysis(), "call": lp.Call(),
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
	if back.Type != detector.TypeOutput || back.CallID != snap.CallID || back.Messages != snap.Messages {
		t.Errorf("decoded output: type %v call %q messages %d", back.Type, back.CallID, back.Messages)
	}
	assertStretches(t, back.Stretches, snap.Stretches)

	var doc struct {
		Message struct {
			Timestamp int64          `json:"timestamp"`
			Type      string         `json:"type"`
			Hang      map[string]any `json:"hang"`
		} `json:"message"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Message.Timestamp != 1763647352631 || doc.Message.Type != "hang" {
		t.Errorf("timestamp %d type %q", doc.Message.Timestamp, doc.Message.Type)
	}
	wantHang := map[string]any{"reason": "turn-timeout", "userMessageId": "user-3", "firstUserMessageId": "user-2", "waitMs": 5003.0, "thresholdMs": 5000.0}
	if !mapsEqual(doc.Message.Hang, wantHang) {
		t.Errorf("hang %v, want %v", doc.Message.Hang, wantHang)
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAppendOutput(t *testing.T) {
	var small detector.Event
	data := `{"message":{"type":"conversation-update","call":{"id":"c1","teamId":"t1"},"assistant":{},` +
		`"messages":[{"role":"user","text":"hi","messageId":"u1"}],"phone":{"p":1},"customer":null}}`
	if err := Decode(&small, []byte(data), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		callID string
		give   detector.Output
		want   string
	}{
		{
			name:   "hang",
			callID: "c1",
			give: detector.Output{Kind: detector.KindHang, Reason: detector.ReasonMaxWait, UserMessageID: "u1", FirstUserMessageID: "u1",
				At: testAt, Wait: 10_000_999 * time.Microsecond, Threshold: 10 * time.Second, Snapshot: small.Payload, Latest: small.Payload},
			want: `{"message":{"timestamp":1763647352631,"type":"hang","call":{"id":"c1","teamId":"t1"},"assistant":{},` +
				`"messages":[{"role":"user","text":"hi","messageId":"u1"}],"phone":{"p":1},"customer":null,"analysis":{},` +
				`"hang":{"reason":"max-wait","userMessageId":"u1","firstUserMessageId":"u1","waitMs":10000,"thresholdMs":10000}}}`,
		},
		{
			name:   "resolved",
			callID: "c1",
			give: detector.Output{Kind: detector.KindResolved, Reason: detector.ReasonTurnTimeout, UserMessageID: "u3", FirstUserMessageID: "u2",
				ReplyMessageID: "r3", At: testAt, Wait: 7100 * time.Millisecond, Snapshot: small.Payload, Latest: small.Payload},
			want: `{"message":{"timestamp":1763647352631,"type":"hang-resolved","call":{"id":"c1","teamId":"t1"},"assistant":{},` +
				`"messages":[{"role":"user","text":"hi","messageId":"u1"}],"phone":{"p":1},"customer":null,"analysis":{},` +
				`"hang":{"reason":"turn-timeout","userMessageId":"u3","firstUserMessageId":"u2","replyMessageId":"r3","waitMs":7100}}}`,
		},
		{
			name:   "no payloads, odd ids",
			callID: "c\"1\\\n\x01\u2028é\xff",
			give:   detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "</script>", FirstUserMessageID: "\t", At: testAt},
			want: `{"message":{"timestamp":1763647352631,"type":"hang","call":{"id":"c\"1\\\n\u0001\u2028é\ufffd"},"assistant":{},` +
				`"messages":[],"phone":{},"customer":{},"analysis":{},` +
				`"hang":{"reason":"turn-timeout","userMessageId":"</script>","firstUserMessageId":"\t","waitMs":0,"thresholdMs":0}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendOutput([]byte("prefix"), tt.callID, &tt.give)
			if string(got) != "prefix"+tt.want {
				t.Errorf("AppendOutput =\n%s\nwant\n%s", got[6:], tt.want)
			}
			if !json.Valid(got[6:]) {
				t.Errorf("not valid JSON")
			}
		})
	}
}

func TestAppendOutputLatestWithoutCall(t *testing.T) {
	snap := decodeFixture(t, "05-conversation-update-user-2.json")
	out := &detector.Output{Kind: detector.KindHang, Snapshot: snap.Payload, Latest: &Payload{}}
	got := AppendOutput(nil, "other", out)
	if !bytes.Contains(got, append([]byte(`"call":`), snap.Payload.(*Payload).Call()...)) {
		t.Errorf("the snapshot's call is not used when the latest has none")
	}
}

func TestAppendOutputAllocs(t *testing.T) {
	snap := decodeFixture(t, "06-conversation-update-user-3.json")
	out := &detector.Output{Kind: detector.KindResolved, UserMessageID: "user-3", FirstUserMessageID: "user-2", ReplyMessageID: "r\n", Snapshot: snap.Payload, Latest: snap.Payload}
	dst := make([]byte, 0, 16<<10)
	allocs := testing.AllocsPerRun(100, func() { dst = AppendOutput(dst[:0], "c\x01", out) })
	if allocs != 0 {
		t.Errorf("AppendOutput allocates %v times", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendOutput(dst[:0], "c1", &detector.Output{}) }); allocs != 0 {
		t.Errorf("AppendOutput without payloads allocates %v times", allocs)
	}
}

func TestMsgID(t *testing.T) {
	tests := []struct {
		give detector.Output
		want string
	}{
		{give: detector.Output{Kind: detector.KindHang, FirstUserMessageID: "user-2"}, want: "call-1:user-2:hang"},
		{give: detector.Output{Kind: detector.KindResolved, FirstUserMessageID: "user-2"}, want: "call-1:user-2:resolved"},
	}
	for _, tt := range tests {
		if got := MsgID("call-1", &tt.give); got != tt.want {
			t.Errorf("MsgID = %q, want %q", got, tt.want)
		}
	}
}

// FuzzAppendOutput checks that the output of any decodable event and any ids is valid
// JSON that reads back as the same output.
func FuzzAppendOutput(f *testing.F) {
	f.Add(readFixture(f, "06-conversation-update-user-3.json"), readFixture(f, "01-status-update-ongoing.json"), "c1", "user-3", "user-2", "r", false)
	f.Add([]byte(ev(`{"call":{"id":"a\u2028"},"assistant":5,"phone":null}`)), []byte("x"), "\x00\"", "\xff", "\\", "\u2029", true)
	f.Fuzz(func(t *testing.T, snapData, latestData []byte, callID, user, first, reply string, resolved bool) {
		out := detector.Output{Kind: detector.KindHang, Reason: detector.ReasonMaxWait, UserMessageID: user, FirstUserMessageID: first,
			ReplyMessageID: reply, At: testAt, Wait: time.Second, Threshold: time.Second}
		if resolved {
			out.Kind = detector.KindResolved
		}
		var snap, latest detector.Event
		if Decode(&snap, snapData, DefaultLimits()) == nil {
			out.Snapshot = snap.Payload
		}
		if Decode(&latest, latestData, DefaultLimits()) == nil {
			out.Latest = latest.Payload
		}
		got := AppendOutput(nil, callID, &out)
		if !json.Valid(got) {
			t.Fatalf("AppendOutput is not valid JSON:\n%s", got)
		}
		var back detector.Event
		if err := Decode(&back, got, DefaultLimits()); err != nil {
			if r, _ := BadInputReason(err); r == ReasonTooDeep || (r == ReasonNoCallID && callID == "" && out.Latest == nil && out.Snapshot == nil) {
				return // spliced values keep their depth, one level deeper
			}
			t.Fatalf("output does not decode: %v\n%s", err, got)
		}
		if back.Type != detector.TypeOutput {
			t.Errorf("decoded type %v", back.Type)
		}
		var doc struct {
			Message struct {
				Call map[string]any    `json:"call"`
				Hang map[string]string `json:"hang"`
			} `json:"message"`
		}
		dec := json.NewDecoder(bytes.NewReader(got))
		if err := dec.Decode(&doc); err != nil && !strings.Contains(err.Error(), "cannot unmarshal number") {
			t.Fatal(err)
		}
		want := map[string]string{"reason": "max-wait", "userMessageId": validUTF8(user), "firstUserMessageId": validUTF8(first)}
		if resolved {
			want["replyMessageId"] = validUTF8(reply)
		}
		for k, v := range want {
			if doc.Message.Hang[k] != v {
				t.Errorf("hang.%s = %q, want %q", k, doc.Message.Hang[k], v)
			}
		}
		if out.Latest == nil && out.Snapshot == nil && doc.Message.Call["id"] != validUTF8(callID) {
			t.Errorf("call.id = %q, want %q", doc.Message.Call["id"], validUTF8(callID))
		}
	})
}

// validUTF8 replaces each byte of invalid UTF-8 by U+FFFD, as encoding/json does.
func validUTF8(s string) string { return string([]rune(s)) }

// TestAppendJSONString compares the escaper with encoding/json (HTML escaping off).
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
			var back string
			if err := json.Unmarshal(got[1:], &back); err != nil {
				t.Fatalf("not a JSON string: %v", err)
			}
		})
	}
}
