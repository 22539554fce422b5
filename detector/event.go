package detector

// Type is the kind of an event, read from message.type.
type Type uint8

// The event types that detection distinguishes. Every other type only carries status.
const (
	TypeOther Type = iota
	TypeConversationUpdate
	TypeStatusUpdate
	TypeEndOfCallReport
	// TypeOutput is hangwatch's own output (hang, hang-resolved). It is ignored, so that
	// a subscription wide enough to see it cannot feed the engine its own events.
	TypeOutput
)

var typeNames = [...]string{"other", "conversation-update", "status-update", "end-of-call-report", "output"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "unknown"
}

// Status is the call status, read from call.status.
type Status uint8

// The call statuses of the wire format. StatusUnknown stands for an absent or
// unrecognised value and changes nothing.
const (
	StatusUnknown Status = iota
	StatusQueued
	StatusOngoing
	StatusFinished
	StatusForwarded
)

var statusNames = [...]string{"unknown", "queued", "ongoing", "finished", "forwarded"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Ends reports whether the status ends the call.
func (s Status) Ends() bool { return s == StatusFinished || s == StatusForwarded }

// Turn is a user turn or a reply: a message of the history that detection reads.
type Turn struct {
	// ID is the messageId. It may alias the received payload: the detector copies the
	// IDs it keeps.
	ID string
	// Index is the position of the message in the messages array.
	Index int32
	// HasTime reports whether the message carried a timestamp. A message without one is
	// anchored at the time its event was received.
	HasTime bool
	// Time is the message timestamp in Unix milliseconds (a wire value in seconds is
	// already converted).
	Time int64
}

// Stretch is a run of user turns and the reply that ended it.
type Stretch struct {
	// First and Last are the first and the latest user turn of the run.
	First, Last Turn
	// Reply is the reply that ended the run; it is meaningful only when Answered.
	Reply    Turn
	Answered bool
}

// Payload is an event as the output will carry it: its bytes, with the spans of the
// fields that are passed through untouched. The detector never looks inside; it keeps the
// payload of the latest snapshot while a stretch is unanswered and hands it back with the
// output. Len is the number of bytes it retains.
type Payload interface {
	Len() int
}

// Event is a decoded event: the few fields that drive detection, and the payload.
type Event struct {
	Type   Type
	Status Status
	// CallID is call.id, never empty. It may alias the received payload.
	CallID string
	// Messages is the length of the messages array. It orders snapshots: a
	// conversation-update with fewer messages than one already applied is stale.
	Messages int32
	// Stretches are the stretches of the history, in order. Every stretch but the last
	// is answered. Empty when the history has no user turn.
	Stretches []Stretch
	// Received is when the event reached the engine, in Unix nanoseconds: the arrival
	// time, or the stored time of a message read back from a JetStream stream.
	Received int64
	// Payload is kept while the call has an unanswered stretch.
	Payload Payload
	// Done, when set, is called once the engine is finished with the event (applied or
	// refused). The event is not used after; its strings, which alias the payload, may
	// be, while the payload is kept.
	Done func()
}

// IsSnapshot reports whether the event carries the whole history of the call.
func (e *Event) IsSnapshot() bool { return e.Type == TypeConversationUpdate }

// Ends reports whether the event ends the call.
func (e *Event) Ends() bool { return e.Type == TypeEndOfCallReport || e.Status.Ends() }

// Reset clears the event for reuse and keeps the capacity of Stretches.
func (e *Event) Reset() {
	*e = Event{Stretches: e.Stretches[:0]}
}
