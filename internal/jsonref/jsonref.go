// Package jsonref holds the structs that encoding/json must decode to get what
// wire.Decode gets: the fields that detection reads, and the values an output
// passes through kept raw. The decoder's benchmarks and the load report compare with
// encoding/json on these, so that both measure the same work.
package jsonref

import "encoding/json"

// Event is an event of SPEC §1 as encoding/json decodes it for detection.
type Event struct {
	Message struct {
		Type      string  `json:"type"`
		Timestamp float64 `json:"timestamp"`
		Call      struct {
			ID          string    `json:"id"`
			Status      string    `json:"status"`
			TeamID      string    `json:"teamId"`
			AssistantID string    `json:"assistantId"`
			Messages    []Message `json:"messages"`
		} `json:"call"`
		Assistant json.RawMessage `json:"assistant"`
		Messages  []Message       `json:"messages"`
		Phone     json.RawMessage `json:"phone"`
		Customer  json.RawMessage `json:"customer"`
		Analysis  json.RawMessage `json:"analysis"`
	} `json:"message"`
}

// Message is one element of a history.
type Message struct {
	MessageID string   `json:"messageId"`
	Role      string   `json:"role"`
	Text      string   `json:"text"`
	Timestamp *float64 `json:"timestamp"`
}

// Raw is an event as encoding/json decodes it to get what wire.Decode gets by
// another route: the call and the history are kept raw, to be passed through, and
// decoded a second time, into a Call and a []Message, for the fields detection reads.
type Raw struct {
	Message struct {
		Type      string          `json:"type"`
		Call      json.RawMessage `json:"call"`
		Assistant json.RawMessage `json:"assistant"`
		Messages  json.RawMessage `json:"messages"`
		Phone     json.RawMessage `json:"phone"`
		Customer  json.RawMessage `json:"customer"`
		Analysis  json.RawMessage `json:"analysis"`
	} `json:"message"`
}

// Call is what detection reads of the raw call of a Raw.
type Call struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	TeamID      string `json:"teamId"`
	AssistantID string `json:"assistantId"`
}
