package wire

import "github.com/hangwatch/hangwatch/detector"

// span is the byte range [start, end) of a JSON value in a payload; the zero span stands
// for an absent value (no JSON value is empty).
type span struct{ start, end uint32 }

// Payload is a decoded event as its output will carry it: the received bytes and the
// spans of the values passed through untouched. Decode makes it; it is read-only and
// safe for concurrent readers.
type Payload struct {
	data []byte

	// The values of message.call, message.assistant, the history that was decoded,
	// message.phone, message.customer and message.analysis.
	call, assistant, messages span
	phone, customer, analysis span

	// call.teamId and call.assistantId, for output subjects.
	teamID, assistantID string
}

var _ detector.Payload = (*Payload)(nil)

// Len is the number of bytes the payload retains.
func (p *Payload) Len() int { return len(p.data) }

func (p *Payload) value(s span) []byte {
	if s.end == 0 {
		return nil
	}
	return p.data[s.start:s.end:s.end]
}

// Call returns the raw value of message.call (an object in every decoded event), or nil.
func (p *Payload) Call() []byte { return p.value(p.call) }

// Assistant returns the raw value of message.assistant, or nil when absent. Like
// phone, customer and analysis, it can be any JSON value, null included.
func (p *Payload) Assistant() []byte { return p.value(p.assistant) }

// Messages returns the raw history array that was decoded (message.messages, or
// call.messages from older producers), or nil when the event carries none.
func (p *Payload) Messages() []byte { return p.value(p.messages) }

// Phone returns the raw value of message.phone, or nil when absent.
func (p *Payload) Phone() []byte { return p.value(p.phone) }

// Customer returns the raw value of message.customer, or nil when absent.
func (p *Payload) Customer() []byte { return p.value(p.customer) }

// Analysis returns the raw value of message.analysis, or nil when absent.
func (p *Payload) Analysis() []byte { return p.value(p.analysis) }

// TeamID returns call.teamId, or "" when absent. It may alias the payload.
func (p *Payload) TeamID() string { return p.teamID }

// AssistantID returns call.assistantId, or "" when absent. It may alias the payload.
func (p *Payload) AssistantID() string { return p.assistantID }
