package detector

import "time"

// Kind says which event an Output is.
type Kind uint8

// The two outputs of detection.
const (
	KindHang Kind = iota + 1
	KindResolved
)

func (k Kind) String() string {
	switch k {
	case KindHang:
		return "hang"
	case KindResolved:
		return "hang-resolved"
	}
	return "none"
}

// Reason says which deadline made a stretch hang.
type Reason uint8

// The deadlines of SPEC §2.
const (
	ReasonTurnTimeout Reason = iota + 1
	ReasonMaxWait
)

func (r Reason) String() string {
	switch r {
	case ReasonTurnTimeout:
		return "turn-timeout"
	case ReasonMaxWait:
		return "max-wait"
	}
	return "none"
}

// Output is a hang or a hang-resolved, with everything its event carries.
type Output struct {
	Kind   Kind
	Reason Reason
	// UserMessageID is the latest user turn of the stretch (for a resolved, the last
	// user turn before the reply); FirstUserMessageID the first turn of the stretch.
	UserMessageID      string
	FirstUserMessageID string
	// ReplyMessageID is the reply that resolved the stretch (resolved only).
	ReplyMessageID string
	// At is when the output was produced, in Unix nanoseconds.
	At int64
	// Deadline is the deadline that fired, in Unix nanoseconds (hang only). At minus
	// Deadline is the detection lag.
	Deadline int64
	// Wait is, for a hang, the time from the anchor that the fired deadline is measured
	// from until At; for a resolved, the time from the first user turn's anchor to the
	// reply's anchor, never below zero.
	Wait time.Duration
	// Threshold is the threshold that fired (hang only).
	Threshold time.Duration
	// Snapshot is the payload of the latest snapshot: its assistant, messages, phone,
	// customer and analysis are passed through.
	Snapshot Payload
	// Latest is the payload of the latest event: its call object is passed through.
	Latest Payload
}
