package hangevent

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The kinds of event hangwatch publishes: Message.Type.
const (
	// KindHang: a user turn went unanswered past a threshold.
	KindHang = "hang"
	// KindResolved: the assistant finally answered a stretch that hung.
	KindResolved = "hang-resolved"
	// KindUnresolved: the call ended while its latest stretch was hung.
	KindUnresolved = "hang-unresolved"
)

// Kinds returns the three kinds, in the order hang, hang-resolved, hang-unresolved.
func Kinds() []string { return []string{KindHang, KindResolved, KindUnresolved} }

// The reasons of a hang: Hang.Reason.
const (
	// ReasonTurnTimeout: the latest user turn went unanswered for the turn timeout (or,
	// while a tool runs, the tool timeout).
	ReasonTurnTimeout = "turn-timeout"
	// ReasonMaxWait: the first user turn of the stretch went unanswered for the max
	// wait, however often the caller spoke again.
	ReasonMaxWait = "max-wait"
)

// The stages of a hang, what the caller was waiting for: Hang.Stage.
const (
	// StageAwaitingAssistant: no tool was involved; the model did not answer.
	StageAwaitingAssistant = "awaiting-assistant"
	// StageAwaitingTool: a tool call had no result yet.
	StageAwaitingTool = "awaiting-tool"
	// StageAfterTool: every tool call had its result, but no reply came.
	StageAfterTool = "after-tool"
)

// Event is one output of hangwatch, as published on NATS and POSTed to webhooks.
type Event struct {
	Message Message `json:"message"`

	ids *callIDs // the ids of Message.Call, as Parse read them
}

// Message is the envelope of an output. Call, Assistant, Messages, Phone, Customer and
// Analysis are passed through from the pipeline's events as they were received, so they
// are kept as raw JSON: decode what you need of them.
type Message struct {
	// Timestamp is when hangwatch detected the hang (or its resolution, or the end of
	// the call), in Unix milliseconds.
	Timestamp int64 `json:"timestamp"`
	// Type is one of KindHang, KindResolved, KindUnresolved.
	Type string `json:"type"`
	// Call is the call object of the latest event of the call.
	Call json.RawMessage `json:"call,omitempty"`
	// Assistant is the assistant object of the latest snapshot; {} when the pipeline
	// sent none or truncated it.
	Assistant json.RawMessage `json:"assistant,omitempty"`
	// Messages is the conversation history of the latest snapshot, byte for byte (a hang:
	// up to the stall; a hang-resolved: with the reply).
	Messages json.RawMessage `json:"messages,omitempty"`
	Phone    json.RawMessage `json:"phone,omitempty"`
	Customer json.RawMessage `json:"customer,omitempty"`
	Analysis json.RawMessage `json:"analysis,omitempty"`
	// Hang says what hung and for how long.
	Hang Hang `json:"hang"`
}

// Hang is the hang object of an output. Which fields are set depends on the kind (SPEC
// §3): ReplyMessageID only on hang-resolved, EndedReason only on hang-unresolved,
// ThresholdMs and the optional fields on hang.
type Hang struct {
	// Reason is ReasonTurnTimeout or ReasonMaxWait (a resolved or unresolved event
	// carries the reason of the hang it follows).
	Reason string `json:"reason"`
	// Stage is StageAwaitingAssistant, StageAwaitingTool or StageAfterTool.
	Stage string `json:"stage,omitempty"`
	// UserMessageID is the latest user turn of the stretch (on hang-resolved: the last
	// before the reply), FirstUserMessageID its first. Ids are the pipeline's
	// messageId, or a fallback unique within the call for messages without one.
	UserMessageID      string `json:"userMessageId"`
	FirstUserMessageID string `json:"firstUserMessageId"`
	// ReplyMessageID is the reply that ended the stretch (hang-resolved); empty when
	// the reply was known only from the assistant starting to speak.
	ReplyMessageID string `json:"replyMessageId,omitempty"`
	// EndedReason is the call's ended reason (hang-unresolved), empty when unknown.
	EndedReason string `json:"endedReason,omitempty"`
	// WaitMs is how long the caller waited: on hang, from the turn the deadline ran
	// from to detection; on hang-resolved, from the first user turn to the reply; on
	// hang-unresolved, from the first user turn to the end of the call.
	WaitMs int64 `json:"waitMs"`
	// ThresholdMs is the threshold that fired (hang).
	ThresholdMs int64 `json:"thresholdMs,omitempty"`
	// InputGapMs, when set, says hangwatch missed input for that long while the
	// stretch was armed (core NATS only): the hang may be one that a lost reply would
	// have prevented.
	InputGapMs int64 `json:"inputGapMs,omitempty"`
	// Model is the assistant's model, when the assistant object names one.
	Model *Model `json:"model,omitempty"`
	// HistoryTruncated says that OmittedMessages older messages were left out of
	// Messages (a memory budget, or the server's max payload).
	HistoryTruncated bool `json:"historyTruncated,omitempty"`
	OmittedMessages  int  `json:"omittedMessages,omitempty"`
}

// Model is the model of the assistant that hung.
type Model struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
}

// ErrNotOutput is wrapped by the error of Parse for JSON that is not one of hangwatch's
// outputs.
var ErrNotOutput = errors.New("not a hangwatch output")

// Parse reads one output. It fails, wrapping ErrNotOutput, when the type is not one of
// the three kinds or when the call has no id, and with encoding/json's error for data
// that is not JSON of that shape.
func Parse(data []byte) (*Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("parse hang event: %w", err)
	}
	switch ev.Message.Type {
	case KindHang, KindResolved, KindUnresolved:
	default:
		return nil, fmt.Errorf("parse hang event: %w: type %q", ErrNotOutput, ev.Message.Type)
	}
	ids, err := readCall(ev.Message.Call)
	if err != nil {
		return nil, fmt.Errorf("parse hang event: %w", err)
	}
	if ids.ID == "" {
		return nil, fmt.Errorf("parse hang event: %w: no call.id", ErrNotOutput)
	}
	ev.ids = &ids
	return &ev, nil
}

// callIDs are the ids of a call object that the helpers return.
type callIDs struct {
	ID, TeamID, OrgID, AssistantID string
}

// readCall reads the ids of a call object. An id of another JSON type than a string
// reads as none: the call is passed through from the pipeline, and only call.id is
// required to be a string.
func readCall(call json.RawMessage) (callIDs, error) {
	var ids callIDs
	if len(call) == 0 || string(call) == "null" {
		return ids, nil
	}
	var raw struct {
		ID          json.RawMessage `json:"id"`
		TeamID      json.RawMessage `json:"teamId"`
		OrgID       json.RawMessage `json:"orgId"`
		AssistantID json.RawMessage `json:"assistantId"`
	}
	if err := json.Unmarshal(call, &raw); err != nil {
		return ids, fmt.Errorf("%w: call: %w", ErrNotOutput, err)
	}
	if err := json.Unmarshal(raw.ID, &ids.ID); len(raw.ID) > 0 && err != nil {
		return ids, fmt.Errorf("%w: call.id is not a string", ErrNotOutput)
	}
	_ = json.Unmarshal(raw.TeamID, &ids.TeamID) // another type reads as none
	_ = json.Unmarshal(raw.OrgID, &ids.OrgID)
	_ = json.Unmarshal(raw.AssistantID, &ids.AssistantID)
	return ids, nil
}

// call returns the ids of the call: those Parse read (a change to Message.Call after
// Parse is not seen), else read now, for an Event decoded by other means (a call object
// that is not valid then gives none).
func (e *Event) call() callIDs {
	if e.ids != nil {
		return *e.ids
	}
	ids, _ := readCall(e.Message.Call)
	return ids
}

// CallID returns call.id.
func (e *Event) CallID() string { return e.call().ID }

// TeamID returns call.teamId, or call.orgId (Vapi) when it has none.
func (e *Event) TeamID() string {
	ids := e.call()
	if ids.TeamID != "" {
		return ids.TeamID
	}
	return ids.OrgID
}

// AssistantID returns call.assistantId.
func (e *Event) AssistantID() string { return e.call().AssistantID }

// Kind returns Message.Type: KindHang, KindResolved or KindUnresolved.
func (e *Event) Kind() string { return e.Message.Type }
