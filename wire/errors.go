package wire

import (
	"errors"
	"strings"
)

// Reason says why an event was refused as bad input. Its String is short and stable, so
// that it can serve as a metric label and as the reason header of a dead letter.
type Reason uint8

// The reasons of SPEC §5.
const (
	// ReasonNone is the zero value, the reason of no error.
	ReasonNone Reason = iota
	// ReasonTooLarge: the payload is longer than Limits.MaxBytes.
	ReasonTooLarge
	// ReasonNotJSON: the payload is not one valid JSON value.
	ReasonNotJSON
	// ReasonTooDeep: objects and arrays nest deeper than Limits.MaxDepth.
	ReasonTooDeep
	// ReasonNoMessage: the payload is not an object with a message, or message is null.
	ReasonNoMessage
	// ReasonNoCallID: message.call, or call.id, is missing, null or empty.
	ReasonNoCallID
	// ReasonMessagesNotArray: the history is present but is not an array.
	ReasonMessagesNotArray
	// ReasonWrongType: a field that detection reads has the wrong JSON type.
	ReasonWrongType
)

var reasonNames = [...]string{"none", "too-large", "not-json", "too-deep", "no-message", "no-call-id", "messages-not-array", "wrong-type"}

// String returns the reason as a metric label: too-large, not-json, too-deep,
// no-message, no-call-id, messages-not-array or wrong-type.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons returns every reason of bad input, so that counters can start at zero. It
// walks the names, so that a new reason needs no third list.
func Reasons() []Reason {
	rs := make([]Reason, 0, len(reasonNames)-1)
	for r := ReasonNone + 1; int(r) < len(reasonNames); r++ {
		rs = append(rs, r)
	}
	return rs
}

// ErrBadInput matches every *BadInputError with errors.Is.
var ErrBadInput = errors.New("bad input")

// BadInputError is the error of an event that cannot be decoded. Detail names the
// offending field or the byte offset, never a value: transcripts are personal data.
type BadInputError struct {
	Reason Reason
	Detail string
}

// Error reads like "decode event: wrong type: message.call.id is a number".
func (e *BadInputError) Error() string {
	msg := "decode event: " + strings.ReplaceAll(e.Reason.String(), "-", " ")
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is reports whether target is ErrBadInput.
func (e *BadInputError) Is(target error) bool { return target == ErrBadInput }

// BadInputReason returns the reason of a *BadInputError in err's chain.
func BadInputReason(err error) (Reason, bool) {
	var bad *BadInputError
	if errors.As(err, &bad) {
		return bad.Reason, true
	}
	return ReasonNone, false
}

// NumReasons is one more than the largest Reason, so that counters indexed by reason
// can be arrays.
const NumReasons = len(reasonNames)
