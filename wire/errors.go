package wire

import (
	"errors"
	"strings"
)

// Rejection says why an event was refused as bad input (SPEC §5). Its String is short
// and stable, so that it can serve as a metric label and as the reason header of a dead
// letter.
type Rejection uint8

// The rejections of SPEC §5.
const (
	// RejectNone is the zero value, the rejection of no error.
	RejectNone Rejection = iota
	// RejectTooLarge: the payload is longer than Limits.MaxBytes.
	RejectTooLarge
	// RejectNotJSON: the payload is not one valid JSON value.
	RejectNotJSON
	// RejectTooDeep: objects and arrays nest deeper than Limits.MaxDepth.
	RejectTooDeep
	// RejectNoMessage: the payload is not an object with a message, or message is null.
	RejectNoMessage
	// RejectNoCallID: message.call, or call.id, is missing, null or empty.
	RejectNoCallID
	// RejectMessagesNotArray: the history is present but is not an array.
	RejectMessagesNotArray
	// RejectWrongType: a field that detection reads has the wrong JSON type.
	RejectWrongType
)

var rejectionNames = [...]string{"none", "too-large", "not-json", "too-deep", "no-message", "no-call-id", "messages-not-array", "wrong-type"}

// NumRejections is one more than the largest Rejection, so that counters indexed by
// rejection can be arrays.
const NumRejections = len(rejectionNames)

// String returns the rejection as a metric label: too-large, not-json, too-deep,
// no-message, no-call-id, messages-not-array or wrong-type.
func (r Rejection) String() string {
	if int(r) < len(rejectionNames) {
		return rejectionNames[r]
	}
	return "unknown"
}

// Rejections returns every rejection of bad input, so that counters can start at zero.
func Rejections() []Rejection {
	rs := make([]Rejection, 0, NumRejections-1)
	for r := RejectNone + 1; int(r) < NumRejections; r++ {
		rs = append(rs, r)
	}
	return rs
}

// ErrBadInput matches every *BadInputError with errors.Is.
var ErrBadInput = errors.New("bad input")

// BadInputError is the error of an event that cannot be decoded. Detail names the
// offending field or the byte offset, never a value: transcripts are personal data.
type BadInputError struct {
	Rejection Rejection
	Detail    string
}

// Error reads like "decode event: wrong type: message.call.id is a number".
func (e *BadInputError) Error() string {
	msg := "decode event: " + strings.ReplaceAll(e.Rejection.String(), "-", " ")
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is reports whether target is ErrBadInput.
func (e *BadInputError) Is(target error) bool { return target == ErrBadInput }

// RejectionOf returns the rejection of a *BadInputError in err's chain.
func RejectionOf(err error) (Rejection, bool) {
	var bad *BadInputError
	if errors.As(err, &bad) {
		return bad.Rejection, true
	}
	return RejectNone, false
}

// wrong returns the error of a field at path whose value starts with the byte kind.
func wrong(r Rejection, path string, kind byte) error {
	return &BadInputError{Rejection: r, Detail: path + " is " + kindName(kind)}
}

// kindRange stands for the kind of a number out of the float64 range.
const kindRange = 'R'

// kindName names the JSON type of a value from its first byte.
func kindName(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case kindRange:
		return "out of range"
	}
	return "a number"
}
