package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEventsAreValidAndComplete(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"default", nil},
		{"stormy", stormy},
		{"natural size", func(c *Config) { stormy(c); c.PayloadBytes = 0 }},
		{"large", func(c *Config) { stormy(c); c.PayloadBytes = 200_000 }},
		{"no max-wait", func(c *Config) { stormy(c); c.MaxWait = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.change)
			for i := range uint64(25) {
				checkEvents(t, s.Script(i, t0.Add(time.Duration(i)*time.Second)))
			}
		})
	}
}

// checkEvents checks every event of a call against SPEC §1 and the fixtures.
func checkEvents(t *testing.T, sc Script) {
	t.Helper()
	var (
		prevHistory []byte
		prevAt      time.Duration = -1
		n           int
		users       int
		toolCall    string // the id of the latest tool call
		last        wireEvent
	)
	for ev := range sc.Events() {
		if !json.Valid(ev.Data) {
			t.Fatalf("event %d is not valid JSON: %s", n, ev.Data)
		}
		var generic map[string]any
		if err := json.Unmarshal(ev.Data, &generic); err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
		w, msgs := decode(t, ev.Data)
		m := w.Message
		if m.Type != ev.Type || m.Call.ID != sc.CallID() || m.Call.TeamID == "" || m.Call.AssistantID == "" {
			t.Fatalf("event %d: type %q call %q, want %q %q", n, m.Type, m.Call.ID, ev.Type, sc.CallID())
		}
		if want := sc.Start().Add(ev.At).UnixMilli(); m.Timestamp != want {
			t.Errorf("event %d: timestamp %d, want start+At %d", n, m.Timestamp, want)
		}
		if ev.At <= prevAt {
			t.Errorf("event %d at %v, not after the previous one at %v", n, ev.At, prevAt)
		}
		if want := "voice.events." + sc.CallID() + "." + ev.Type; ev.Subject != want {
			t.Errorf("subject %q, want %q", ev.Subject, want)
		}
		prevAt = ev.At
		switch {
		case n == 0:
			if ev.Type != TypeStatusUpdate || m.Call.Status != "ongoing" || m.Assistant["_id"] != m.Call.AssistantID || m.Messages != nil {
				t.Errorf("first event: %s", ev.Data)
			}
		case ev.Type == TypeConversationUpdate:
			if m.Call.Status != "ongoing" || len(m.Assistant) != 0 {
				t.Errorf("update %d: status %q assistant %v, want ongoing and {}", n, m.Call.Status, m.Assistant)
			}
			if len(msgs) != ev.Messages || len(msgs) != n {
				t.Fatalf("update %d carries %d messages, Messages %d", n, len(msgs), ev.Messages)
			}
			// The history so far, byte for byte, then one new message.
			h := bytes.TrimSuffix(m.Messages, []byte("]"))
			if !bytes.HasPrefix(h, prevHistory) {
				t.Fatalf("update %d does not repeat the previous history:\n%s\n%s", n, prevHistory, h)
			}
			prevHistory = append(h[:len(h):len(h)], ',')
			newest := msgs[len(msgs)-1]
			if newest.Timestamp == nil || *newest.Timestamp != m.Timestamp {
				t.Errorf("update %d: newest message at %v, event at %d", n, newest.Timestamp, m.Timestamp)
			}
			checkMessageID(t, newest, n, &users, &toolCall)
		case ev.Type == TypeEndOfCallReport:
			if m.Call.Status != "finished" || string(m.Messages) != "[]" {
				t.Errorf("end: status %q messages %s", m.Call.Status, m.Messages)
			}
			if m.EndedReason != EndedByCustomer && m.EndedReason != EndedByAssistant {
				t.Errorf("end: endedReason %q", m.EndedReason)
			}
		default:
			t.Fatalf("event %d: unexpected type %q", n, ev.Type)
		}
		last = w
		n++
	}
	if last.Message.Type != TypeEndOfCallReport {
		t.Errorf("last event is %q, want end-of-call-report", last.Message.Type)
	}
}

// checkMessageID checks the id of the n-th message: welcome-1 first, then user-N in
// order, assistant messages named after the latest user turn, and tool calls and their
// results named after their position, each result naming the latest tool call.
func checkMessageID(t *testing.T, m wireMessage, n int, users *int, toolCall *string) {
	t.Helper()
	switch {
	case n == 1:
		if m.MessageID != "welcome-1" || m.Role != "assistant" {
			t.Errorf("first message %+v, want the welcome", m)
		}
	case m.Role == "user":
		*users++
		if want := fmt.Sprintf("user-%d", *users); m.MessageID != want {
			t.Errorf("user message %q, want %q", m.MessageID, want)
		}
	case m.Role == "assistant":
		if !strings.HasPrefix(m.MessageID, fmt.Sprintf("user-%d-", *users)) {
			t.Errorf("assistant message %q does not answer user-%d", m.MessageID, *users)
		}
	case m.Role == "tool_calls":
		if want := fmt.Sprintf("tool-call-%d", n-1); m.MessageID != want || m.Text != "" || len(m.ToolCalls) != 1 ||
			!strings.HasPrefix(m.ToolCalls[0].ID, "call_") {
			t.Errorf("tool call %+v, want %s with one call", m, want)
		}
		*toolCall = m.ToolCalls[0].ID
	case m.Role == "tool_call_result":
		if want := fmt.Sprintf("tool-result-%d", n-1); m.MessageID != want || m.ToolCallID == "" || m.ToolCallID != *toolCall {
			t.Errorf("tool result %+v, want %s naming %s", m, want, *toolCall)
		}
	default:
		t.Errorf("message %+v has role %q", m, m.Role)
	}
}

func TestEventsAreDeterministic(t *testing.T) {
	s := newSim(t, stormy)
	collect := func(sc Script) []string {
		var out []string
		for ev := range sc.Events() {
			out = append(out, ev.Subject+" "+string(ev.Data))
		}
		return out
	}
	a, b := collect(s.Script(7, t0)), collect(s.Script(7, t0))
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Error("the same script gave different events")
	}
	other := newSim(t, func(c *Config) { stormy(c); c.Seed = 2 })
	if other.CallID(7) == s.CallID(7) {
		t.Error("another seed gave the same call id")
	}
}

func TestPayloadBytes(t *testing.T) {
	tests := []struct {
		give int // PayloadBytes
	}{{25_000}, {30_000}, {60_000}, {200_000}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("bytes=%d", tt.give), func(t *testing.T) {
			s := newSim(t, func(c *Config) {
				c.TurnsMin, c.TurnsMax = 60, 60
				c.StallShare, c.HelloShare = 0, 0
				c.PayloadBytes, c.PayloadTurns = tt.give, 60
			})
			total, calls := 0, 20
			for i := range uint64(calls) {
				var last int
				for ev := range s.Script(i, t0).Events() {
					if ev.Type == TypeConversationUpdate {
						last = len(ev.Data)
					}
				}
				total += last
			}
			got := total / calls
			if diff := float64(got-tt.give) / float64(tt.give); diff < -0.1 || diff > 0.1 {
				t.Errorf("60-turn payloads average %d bytes, want %d ±10%% (layout %+v)", got, tt.give, s.lay)
			}
		})
	}
}

// TestTextBytes checks that TextBytes sets the length of the texts of user turns and
// replies, on average.
func TestTextBytes(t *testing.T) {
	for _, give := range []int{200, 600, 2000} {
		s := newSim(t, func(c *Config) { c.TextBytes = give })
		var total, n int
		for i := range uint64(20) {
			var last []byte
			for ev := range s.Script(i, t0).Events() {
				if ev.Type == TypeConversationUpdate {
					last = slices.Clone(ev.Data)
				}
			}
			_, msgs := decode(t, last)
			for _, m := range msgs[1:] { // the welcome is a phrase of its own
				if m.Role == "user" && !strings.HasSuffix(m.Text, "?") || m.Role == "assistant" && m.Text != "" {
					total += len(m.Text)
					n++
				}
			}
		}
		if mean := float64(total) / float64(n); mean < float64(give)*0.8 || mean > float64(give)*1.1 {
			t.Errorf("TextBytes %d: texts of %.0f bytes on average", give, mean)
		}
	}
}

func TestSubjectLayout(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{"voice.events.{callId}.{type}", "voice.events.ID.status-update"},
		{"calls.{type}", "calls.status-update"},
		{"x.{callId}.{other}", "x.ID.{other}"},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			s := newSim(t, func(c *Config) { c.Subject = tt.give })
			sc := s.Script(3, t0)
			for ev := range sc.Events() {
				if want := strings.ReplaceAll(tt.want, "ID", sc.CallID()); ev.Subject != want {
					t.Errorf("subject %q, want %q", ev.Subject, want)
				}
				break
			}
		})
	}
}

func TestParseCallID(t *testing.T) {
	s := newSim(t, nil)
	other := newSim(t, func(c *Config) { c.Seed = 99 })
	tests := []struct {
		name   string
		give   string
		want   uint64
		wantOK bool
	}{
		{"first", s.CallID(0), 0, true},
		{"large", s.CallID(123_456_789), 123_456_789, true},
		{"largest", s.CallID(maxIndex), maxIndex, true},
		{"other seed", other.CallID(5), 0, false},
		{"fixture", "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10", 0, false},
		{"empty", "", 0, false},
		{"upper case", strings.ToUpper(s.CallID(10)), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := s.ParseCallID(tt.give)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseCallID(%q) = %d, %v, want %d, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
