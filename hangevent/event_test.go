package hangevent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseExamples(t *testing.T) {
	tests := []struct {
		give               string
		wantKind           string
		wantCall, wantTeam string
		wantAssistant      string
		wantHang           Hang
	}{
		{
			give: "hang.json", wantKind: KindHang, wantCall: "call-7f3a", wantTeam: "team-42", wantAssistant: "asst-9",
			wantHang: Hang{Reason: ReasonTurnTimeout, Stage: StageAwaitingAssistant, UserMessageID: "user-3", FirstUserMessageID: "user-2",
				WaitMs: 5003, ThresholdMs: 5000, Model: &Model{Provider: "openai", Model: "gpt-4o"}},
		},
		{
			give: "hang-resolved.json", wantKind: KindResolved, wantCall: "call-7f3a", wantTeam: "team-42", wantAssistant: "asst-9",
			wantHang: Hang{Reason: ReasonTurnTimeout, Stage: StageAwaitingAssistant, UserMessageID: "user-3", FirstUserMessageID: "user-2",
				ReplyMessageID: "user-3-WcIrvV6mE7-1772702492200", WaitMs: 12080},
		},
		{
			// A Vapi call: the team is call.orgId.
			give: "hang-unresolved.json", wantKind: KindUnresolved, wantCall: "vapi-call-1", wantTeam: "org-5", wantAssistant: "asst-2",
			wantHang: Hang{Reason: ReasonMaxWait, Stage: StageAwaitingTool, UserMessageID: "user-1772702511400-9c1d2e3f",
				FirstUserMessageID: "user-1772702511400-9c1d2e3f", EndedReason: "customer-ended-call", WaitMs: 19100,
				HistoryTruncated: true, OmittedMessages: 12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			ev, err := Parse(readTestdata(t, tt.give))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind() != tt.wantKind || ev.CallID() != tt.wantCall || ev.TeamID() != tt.wantTeam || ev.AssistantID() != tt.wantAssistant {
				t.Errorf("kind, call, team, assistant = %q %q %q %q, want %q %q %q %q",
					ev.Kind(), ev.CallID(), ev.TeamID(), ev.AssistantID(), tt.wantKind, tt.wantCall, tt.wantTeam, tt.wantAssistant)
			}
			if !reflect.DeepEqual(ev.Message.Hang, tt.wantHang) {
				t.Errorf("hang = %+v, want %+v", ev.Message.Hang, tt.wantHang)
			}
			var msgs []json.RawMessage
			if err := json.Unmarshal(ev.Message.Messages, &msgs); err != nil || len(msgs) < 2 {
				t.Errorf("messages: %d, %v", len(msgs), err)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, give    string
		wantNotOutput bool
	}{
		{name: "not JSON", give: `{"message":`},
		{name: "an array", give: `[1]`},
		{name: "an input event", give: `{"message":{"type":"conversation-update","call":{"id":"c1"}}}`, wantNotOutput: true},
		{name: "no type", give: `{"message":{"call":{"id":"c1"},"hang":{}}}`, wantNotOutput: true},
		{name: "no message", give: `{}`, wantNotOutput: true},
		{name: "no call", give: `{"message":{"type":"hang","hang":{"reason":"max-wait"}}}`, wantNotOutput: true},
		{name: "call id a number", give: `{"message":{"type":"hang","call":{"id":7}}}`, wantNotOutput: true},
		{name: "call not an object", give: `{"message":{"type":"hang","call":"c1"}}`, wantNotOutput: true},
		{name: "waitMs a string", give: `{"message":{"type":"hang","call":{"id":"c1"},"hang":{"waitMs":"5"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse([]byte(tt.give))
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", ev)
			}
			if errors.Is(err, ErrNotOutput) != tt.wantNotOutput {
				t.Errorf("Parse error %v: ErrNotOutput %v, want %v", err, !tt.wantNotOutput, tt.wantNotOutput)
			}
		})
	}
}

// An id of another type than a string reads as none: the call object is the pipeline's.
func TestParseLenientIDs(t *testing.T) {
	ev, err := Parse([]byte(`{"message":{"type":"hang","call":{"id":"c1","teamId":42,"orgId":"o1","assistantId":null},"hang":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.TeamID() != "o1" || ev.AssistantID() != "" {
		t.Errorf("team, assistant = %q %q, want o1 and none", ev.TeamID(), ev.AssistantID())
	}
}

// An Event decoded with encoding/json, not Parse, reads its ids from the call when asked.
func TestHelpersWithoutParse(t *testing.T) {
	var ev Event
	if err := json.Unmarshal(readTestdata(t, "hang.json"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.CallID() != "call-7f3a" || ev.TeamID() != "team-42" {
		t.Errorf("call, team = %q %q", ev.CallID(), ev.TeamID())
	}
}

// Marshalling a parsed event gives back the same JSON: nothing passed through is lost.
func TestRoundTrip(t *testing.T) {
	for _, name := range []string{"hang.json", "hang-resolved.json", "hang-unresolved.json"} {
		data := readTestdata(t, name)
		ev, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: round trip changed the event:\n%s\n%s", name, data, out)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"hang.json", "hang-resolved.json", "hang-unresolved.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{"message":{"type":"hang","call":{"id":"c"}}}`))
	f.Add([]byte(`{"message":{"type":"hang","call":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Parse(data)
		if err != nil {
			return
		}
		switch ev.Kind() {
		case KindHang, KindResolved, KindUnresolved:
		default:
			t.Fatalf("Parse accepted kind %q", ev.Kind())
		}
		if ev.CallID() == "" {
			t.Fatal("Parse accepted an output without a call id")
		}
		_ = ev.TeamID()
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("a parsed event does not marshal: %v", err)
		}
	})
}
