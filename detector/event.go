package detector

// Type is the kind of an event, read from message.type.
type Type uint8

// The event types that detection distinguishes. Every other type only carries status.
const (
	TypeOther Type = iota
	TypeConversationUpdate
	TypeStatusUpdate
	TypeEndOfCallReport
	// TypeSpeechUpdate is Vapi's speech-update: with Event.Speech set, the assistant
	// started speaking, which ends the silence of an unanswered stretch.
	TypeSpeechUpdate
	// TypeOutput is a hang, hang-resolved or hang-unresolved: hangwatch's own output, or
	// a platform's hang event. It drives nothing but the end of a call, so that a
	// subscription wide enough to see hangwatch's output cannot feed the engine itself.
	TypeOutput
)

var typeNames = [...]string{"other", "conversation-update", "status-update", "end-of-call-report", "speech-update", "output"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "unknown"
}

// Types returns every Type, so that counters indexed by type can start at zero.
func Types() []Type {
	ts := make([]Type, len(typeNames))
	for i := range ts {
		ts[i] = Type(i)
	}
	return ts
}

// Status is the call status, read from call.status (or, on a Vapi status-update, from
// message.status).
type Status uint8

// The call statuses of both dialects. StatusUnknown stands for an absent or unrecognised
// value and changes nothing.
const (
	StatusUnknown Status = iota
	StatusQueued
	StatusOngoing // "ongoing", Vapi's "in-progress"
	StatusFinished
	StatusForwarded
	StatusEnded      // Vapi
	StatusForwarding // Vapi
)

var statusNames = [...]string{"unknown", "queued", "ongoing", "finished", "forwarded", "ended", "forwarding"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Ends reports whether the status ends the call: the assistant no longer speaks on it.
func (s Status) Ends() bool { return s >= StatusFinished }

// Role is what a message of the history is to detection. Only messages with one of
// these roles reach Event.Messages; every other message (a system note, an assistant
// message with empty text and no tool call, a user message with empty text) changes
// nothing.
type Role uint8

// The roles of SPEC §2.
const (
	// RoleUser is a user turn: a user message with text (after trimming white space).
	RoleUser Role = iota + 1
	// RoleReply is an assistant (or bot) message with text. It answers the user turns
	// before it.
	RoleReply
	// RoleToolCall is a tool call: role tool_calls, or an assistant message without text
	// that carries toolCalls. Its Tools are the ids of the calls it makes.
	RoleToolCall
	// RoleToolResult is a tool's result: role tool_call_result or tool. Its Tools hold
	// the id of the call it answers, if it names one.
	RoleToolResult
)

var roleNames = [...]string{"other", "user", "reply", "tool-call", "tool-result"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "unknown"
}

// Message is a message of the history that detection reads.
type Message struct {
	Role Role
	// Index is the position of the message in the messages array.
	Index int32
	// ID is the messageId, or "" without one. It may alias the received payload: the
	// detector copies the ids it keeps.
	ID string
	// Key is the identity of the message (SPEC §2): a hash of its messageId, or without
	// one of its role, its own timestamp and its text, so that a message keeps its
	// identity when earlier messages are dropped from a history. Never 0.
	Key uint64
	// Time is the message's own timestamp in Unix milliseconds, 0 when it has none. For
	// a user turn it is when the turn ended (Vapi: endTime, else time); for a reply when
	// it started (Vapi: time).
	Time int64
	// ToolLo and ToolHi are the range of Event.Tools that hold the ids this message
	// calls (a tool call) or answers (a tool result).
	ToolLo, ToolHi int32
}

// Payload is an event as the output will carry it. The detector never looks inside; it
// keeps the payload of the latest snapshot while a stretch is unanswered or hung and
// hands it back with the output. Len is the number of bytes it retains.
type Payload interface {
	Len() int
}

// Event is a decoded event: the fields that drive detection, and the payload.
type Event struct {
	Type   Type
	Status Status
	// CallID is call.id, never empty. TeamID is call.teamId (or call.orgId), AssistantID
	// call.assistantId: the engine reads them for limits and thresholds. They may alias
	// the received payload.
	CallID, TeamID, AssistantID string
	// EndedReason is message.endedReason, else call.endedReason; it may alias the payload.
	EndedReason string
	// Time is message.timestamp in Unix milliseconds, 0 when absent.
	Time int64
	// Speech says that a speech-update reports the assistant started speaking.
	Speech bool
	// HasHistory says the event carried a messages array; Count is its length, Messages
	// the elements of it that detection reads, in order, and Tools the tool call ids
	// they refer to (hashed like keys).
	HasHistory bool
	Count      int32
	Messages   []Message
	Tools      []uint64

	// Received is when the event reached the engine, in the engine's monotonic
	// nanoseconds; Wall is the wall clock at that moment, in Unix nanoseconds, which
	// message timestamps are read against. For an event read back from a JetStream
	// stream both are its stored time (never after the engine's clock).
	Received, Wall int64
	// Stored says that Received is the stored time of a stream that delivers in stored
	// order: everything stored before it has been applied, so that a deadline before it
	// may fire first, and a history's own timestamps may tell that a stretch never seen
	// unanswered was answered after its deadline.
	Stored bool
	// Held says that the engine holds every deadline (it rebuilds calls from stored
	// state): the event fires none, though it may still show that a stretch was
	// answered late.
	Held bool

	// Payload is kept while the call has an unanswered or hung stretch.
	Payload Payload
}

// IsSnapshot reports whether the event carries the history of the call that detection
// follows: a conversation-update.
func (e *Event) IsSnapshot() bool { return e.Type == TypeConversationUpdate }

// Ends reports whether the event ends the call.
func (e *Event) Ends() bool { return e.Type == TypeEndOfCallReport || e.Status.Ends() }

// Reset clears the event for reuse and keeps the capacity of Messages and Tools.
func (e *Event) Reset() {
	*e = Event{Messages: e.Messages[:0], Tools: e.Tools[:0]}
}

// ToolIDs returns the tool call ids of m.
func (e *Event) ToolIDs(m *Message) []uint64 { return e.Tools[m.ToolLo:m.ToolHi] }
