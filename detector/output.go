package detector

import "time"

// Kind says which event an Output is.
type Kind uint8

// The three outputs of detection.
const (
	KindHang Kind = iota + 1
	KindResolved
	KindUnresolved
)

var kindNames = [...]string{"none", "hang", "hang-resolved", "hang-unresolved"}

// String returns the output's message.type.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "none"
}

// Suffix returns the last part of the output's Nats-Msg-Id: hang, resolved or
// unresolved.
func (k Kind) Suffix() string {
	switch k {
	case KindResolved:
		return "resolved"
	case KindUnresolved:
		return "unresolved"
	}
	return "hang"
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

// Stage says what the caller was waiting for when the stretch hung (SPEC §2).
type Stage uint8

// The stages of SPEC §2. The zero value is awaiting-assistant.
const (
	StageAwaitingAssistant Stage = iota
	StageAwaitingTool
	StageAfterTool
)

var stageNames = [...]string{"awaiting-assistant", "awaiting-tool", "after-tool"}

func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "unknown"
}

// Stages returns every Stage, so that counters indexed by stage can start at zero.
func Stages() []Stage { return []Stage{StageAwaitingAssistant, StageAwaitingTool, StageAfterTool} }

// Output is a hang, a hang-resolved or a hang-unresolved, with everything its event
// carries.
type Output struct {
	Kind   Kind
	Reason Reason // the hang's, also on the resolved and unresolved that follow it
	Stage  Stage  // likewise
	// UserMessageID is the latest user turn of the stretch (for a resolved, the last user
	// turn before the reply); FirstUserMessageID the first turn of the stretch, which
	// names the stretch in Nats-Msg-Id. Ids of messages without a messageId are made by
	// FallbackID.
	UserMessageID      string
	FirstUserMessageID string
	// ReplyMessageID is the reply that resolved the stretch (resolved only; empty when a
	// speech-update resolved it).
	ReplyMessageID string
	// EndedReason is the call's endedReason (unresolved only).
	EndedReason string
	// At is when the output was produced, in engine nanoseconds; Wall the wall clock then,
	// in Unix nanoseconds (message.timestamp), which the engine sets.
	At, Wall int64
	// Deadline is the deadline that fired, in engine nanoseconds (hang only). At minus
	// Deadline is the detection lag.
	Deadline int64
	// Armed is the anchor of the first user turn of the stretch, in engine nanoseconds:
	// input gaps after it make a hang uncertain (Output.InputGap).
	Armed int64
	// Wait is, for a hang, the time from the anchor that the fired deadline is measured
	// from until At; for a resolved, from the first user turn to the reply; for an
	// unresolved, from the first user turn to the end of the call. Never below zero.
	Wait time.Duration
	// Threshold is the threshold that fired (hang only).
	Threshold time.Duration
	// InputGap is the total length of the input gaps between Armed and At (hang only):
	// events published then may have been lost, so the hang may be false. The engine sets
	// it.
	InputGap time.Duration
	// Late says that the stretch was seen only once answered, and its own timestamps show
	// the reply came after its deadline: the hang is published late, with its resolved.
	Late bool
	// Rebuilt says that the call was rebuilt from stored state (a replay, a partition
	// taken over), so that the output may have gone out before, from another instance
	// or before a restart: the sink checks. The engine sets it.
	Rebuilt bool
	// Snapshot is the payload of the latest snapshot (for a resolved, the one that holds
	// the reply; for an unresolved, the ending event when it carries a history): its
	// assistant, messages, phone, customer and analysis are passed through.
	Snapshot Payload
	// Latest is the payload of the latest event: its call object is passed through.
	Latest Payload
}
