package baseline

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadInput is wrapped by the error of an event that Handle rejects whole (SPEC §5).
var ErrBadInput = errors.New("bad input")

// Event is a wire event (SPEC §1) unmarshalled with encoding/json. The values that the
// output passes through are kept as json.RawMessage; the history is decoded into Msg
// structs, whose metrics and skipped messages stay raw.
type Event struct {
	Type      string          `json:"type"`
	Timestamp float64         `json:"timestamp"`
	Call      json.RawMessage `json:"call"`
	Assistant json.RawMessage `json:"assistant"`
	Messages  []Msg           `json:"messages"`
	Phone     json.RawMessage `json:"phone"`
	Customer  json.RawMessage `json:"customer"`
	Analysis  json.RawMessage `json:"analysis"`

	// CallFields are the fields of Call that detection reads, unmarshalled a second time
	// from Call, so that the call itself passes through whole.
	CallFields CallFields `json:"-"`
}

// CallFields are the fields of message.call that detection reads. Older producers put
// the history at call.messages.
type CallFields struct {
	ID          string `json:"id"`
	TeamID      string `json:"teamId"`
	AssistantID string `json:"assistantId"`
	Status      string `json:"status"`
	Messages    []Msg  `json:"messages"`
}

// Msg is an element of the history.
type Msg struct {
	MessageID string          `json:"messageId"`
	Role      string          `json:"role"`
	Text      string          `json:"text"`
	Timestamp *float64        `json:"timestamp,omitempty"`
	Metrics   json.RawMessage `json:"metrics,omitempty"`
	Skipped   json.RawMessage `json:"skippedAssistantMessages,omitempty"`
}

type envelope struct {
	Message *Event `json:"message"`
}

// Decode unmarshals an event, and rejects what SPEC §5 calls bad input: not JSON, no
// message, no call.id, a wrong type in a field that is read, or more than maxBytes.
func Decode(data []byte, maxBytes int) (*Event, error) {
	if len(data) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadInput, len(data), maxBytes)
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	ev := env.Message
	if ev == nil {
		return nil, fmt.Errorf("%w: no message", ErrBadInput)
	}
	if len(ev.Call) == 0 || string(ev.Call) == "null" {
		return nil, fmt.Errorf("%w: no call", ErrBadInput)
	}
	if err := json.Unmarshal(ev.Call, &ev.CallFields); err != nil {
		return nil, fmt.Errorf("%w: call: %w", ErrBadInput, err)
	}
	if ev.CallFields.ID == "" {
		return nil, fmt.Errorf("%w: no call.id", ErrBadInput)
	}
	return ev, nil
}

// History returns the history: message.messages, or call.messages when it is absent.
func (ev *Event) History() []Msg {
	if ev.Messages != nil {
		return ev.Messages
	}
	return ev.CallFields.Messages
}

func (ev *Event) isSnapshot() bool { return ev.Type == "conversation-update" }

func (ev *Event) isOutput() bool { return ev.Type == "hang" || ev.Type == "hang-resolved" }

func (ev *Event) ends() bool {
	s := ev.CallFields.Status
	return ev.Type == "end-of-call-report" || s == "finished" || s == "forwarded"
}

// time returns the timestamp of a message, and false when it has none. A value below
// 1e11 is in seconds.
func (m *Msg) time() (time.Time, bool) {
	if m.Timestamp == nil {
		return time.Time{}, false
	}
	v := *m.Timestamp
	if v < 1e11 {
		v *= 1000
	}
	return time.UnixMilli(int64(v)), true
}

func (m *Msg) spoken() bool { return strings.TrimSpace(m.Text) != "" }

func (m *Msg) isUser() bool { return strings.EqualFold(m.Role, "user") }

func (m *Msg) isAssistant() bool {
	return strings.EqualFold(m.Role, "assistant") || strings.EqualFold(m.Role, "bot")
}

// stretch is a run of user turns and the reply that ended it, as message indexes.
type stretch struct {
	first, last, reply int
	answered           bool
}

// stretches walks the history: a user turn opens a stretch or extends the open one, a
// reply closes it, anything else (an empty message, a tool call) changes nothing.
func stretches(msgs []Msg) []stretch {
	var st []stretch
	for i := range msgs {
		m := &msgs[i]
		if !m.spoken() {
			continue
		}
		open := len(st) > 0 && !st[len(st)-1].answered
		switch {
		case m.isUser() && open:
			st[len(st)-1].last = i
		case m.isUser():
			st = append(st, stretch{first: i, last: i})
		case m.isAssistant() && open:
			st[len(st)-1].reply, st[len(st)-1].answered = i, true
		}
	}
	return st
}

// unanswered returns the stretch after the last reply, if there is one.
func unanswered(st []stretch) (stretch, bool) {
	if n := len(st); n > 0 && !st[n-1].answered {
		return st[n-1], true
	}
	return stretch{}, false
}

// answeredAfter returns the first stretch whose reply stands after message index i.
func answeredAfter(st []stretch, i int) (stretch, bool) {
	for _, s := range st {
		if s.answered && s.reply > i {
			return s, true
		}
	}
	return stretch{}, false
}

// messageID returns the messageId of a message, or "#<index>" when it has none.
func messageID(msgs []Msg, i int) string {
	if id := msgs[i].MessageID; id != "" {
		return id
	}
	return fmt.Sprintf("#%d", i)
}
