package sim

import (
	"encoding/json"
	"testing"
	"time"
)

// t0 is the start of the test calls: 2025-11-20T14:02:11Z, as in the fixtures.
var t0 = time.UnixMilli(sampleStart)

// newSim returns a simulation of the default configuration changed by change.
func newSim(t testing.TB, change func(*Config)) *Sim {
	t.Helper()
	cfg := DefaultConfig()
	if change != nil {
		change(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stormy makes calls with many stalls of every kind, so that few calls cover them all.
func stormy(c *Config) {
	c.StallShare, c.HelloShare, c.SilentShare, c.HangUpShare = 0.25, 0.15, 0.5, 0.2
	c.ToolShare, c.ToolStallShare, c.AfterToolShare = 0.3, 0.1, 0.1
}

// wireEvent is an event decoded with encoding/json: the fields that detection reads, and
// the history as raw bytes.
type wireEvent struct {
	Message struct {
		Type        string `json:"type"`
		Timestamp   int64  `json:"timestamp"`
		EndedReason string `json:"endedReason"`
		Call        struct {
			ID          string `json:"id"`
			Status      string `json:"status"`
			TeamID      string `json:"teamId"`
			AssistantID string `json:"assistantId"`
		} `json:"call"`
		Assistant map[string]any  `json:"assistant"`
		Messages  json.RawMessage `json:"messages"`
	} `json:"message"`
}

// wireMessage is an element of messages.
type wireMessage struct {
	MessageID string `json:"messageId"`
	Role      string `json:"role"`
	Text      string `json:"text"`
	Timestamp *int64 `json:"timestamp"`
	ToolCalls []struct {
		ID string `json:"id"`
	} `json:"toolCalls"`
	ToolCallID string `json:"toolCallId"`
}

func decode(t testing.TB, data []byte) (wireEvent, []wireMessage) {
	t.Helper()
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	var msgs []wireMessage
	if w.Message.Messages != nil {
		if err := json.Unmarshal(w.Message.Messages, &msgs); err != nil {
			t.Fatalf("decode messages: %v", err)
		}
	}
	return w, msgs
}

// recorded is a published event.
type recorded struct {
	subject string
	data    []byte
	at      time.Time // the clock's time when it was published
}
