package baseline

import (
	"encoding/json"
	"strings"
	"unicode"
)

// Output is a hang or a hang-resolved, as encoding/json marshals it (SPEC §3).
type Output struct {
	Message OutputMessage `json:"message"`
}

// OutputMessage is the message of an Output: the call of the latest event, the rest of
// the latest snapshot, and the hang.
type OutputMessage struct {
	Timestamp int64           `json:"timestamp"`
	Type      string          `json:"type"`
	Call      json.RawMessage `json:"call"`
	Assistant json.RawMessage `json:"assistant"`
	Messages  []Msg           `json:"messages"`
	Phone     json.RawMessage `json:"phone"`
	Customer  json.RawMessage `json:"customer"`
	Analysis  json.RawMessage `json:"analysis"`
	Hang      Hang            `json:"hang"`
}

// Hang is the hang object of an output.
type Hang struct {
	Reason             string `json:"reason"`
	UserMessageID      string `json:"userMessageId"`
	FirstUserMessageID string `json:"firstUserMessageId"`
	ReplyMessageID     string `json:"replyMessageId,omitempty"`
	WaitMs             int64  `json:"waitMs"`
	ThresholdMs        int64  `json:"thresholdMs,omitempty"`
}

// newOutput fills the passed-through values of an output from the latest event and the
// latest snapshot, with {} and [] for what they lack.
func newOutput(typ string, at int64, latest, snapshot *Event, h Hang) Output {
	or := func(v json.RawMessage, absent string) json.RawMessage {
		if len(v) == 0 {
			return json.RawMessage(absent)
		}
		return v
	}
	m := OutputMessage{Timestamp: at, Type: typ, Hang: h, Call: json.RawMessage(`{}`),
		Assistant: json.RawMessage(`{}`), Messages: []Msg{}, Phone: json.RawMessage(`{}`),
		Customer: json.RawMessage(`{}`), Analysis: json.RawMessage(`{}`)}
	if latest != nil {
		m.Call = or(latest.Call, `{}`)
	}
	if snapshot != nil {
		m.Assistant = or(snapshot.Assistant, `{}`)
		if h := snapshot.History(); h != nil {
			m.Messages = h
		}
		m.Phone = or(snapshot.Phone, `{}`)
		m.Customer = or(snapshot.Customer, `{}`)
		m.Analysis = or(snapshot.Analysis, `{}`)
	}
	return Output{Message: m}
}

// subject renders a subject template: {callId}, {teamId} and {assistantId} are replaced
// by the call's values, each made a valid subject token.
func subject(template string, f *CallFields) string {
	r := strings.NewReplacer("{callId}", token(f.ID), "{teamId}", token(f.TeamID), "{assistantId}", token(f.AssistantID))
	return r.Replace(template)
}

// token makes s a valid subject token: _ when empty, and _ for every character a token
// cannot hold.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, s)
}
