package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
)

// This file holds a reference decoder written plainly on top of encoding/json: the
// rules of Decode applied to a map[string]any tree. FuzzDecode checks that both agree.

// refResult is what the reference decoder makes of an event.
type refResult struct {
	reason Reason
	// alsoOK is a second reason that Decode may give where the rules do not choose one
	// (an input both nested too deep and invalid further on).
	alsoOK Reason

	typ       detector.Type
	status    detector.Status
	callID    string
	messages  int32
	stretches []detector.Stretch
	teamID    string
	assistant string
	// spans holds, for each passed-through value, the tree's value, and whether present.
	spans map[string]refValue
}

type refValue struct {
	v       any
	present bool
}

func refDecode(data []byte, lim Limits) refResult {
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return refResult{reason: ReasonTooLarge}
	}
	if !json.Valid(data) {
		r := refResult{reason: ReasonNotJSON}
		if bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > lim.MaxDepth {
			r.alsoOK = ReasonTooDeep
		}
		return r
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		panic("valid JSON does not decode: " + err.Error())
	}
	if tokenDepth(data) > lim.MaxDepth {
		return refResult{reason: ReasonTooDeep}
	}
	top, ok := tree.(map[string]any)
	if !ok {
		return refResult{reason: ReasonNoMessage}
	}
	m, present := top["message"]
	if !present || m == nil {
		return refResult{reason: ReasonNoMessage}
	}
	msg, ok := m.(map[string]any)
	if !ok {
		return refResult{reason: ReasonWrongType}
	}
	var r refResult
	switch t := msg["type"].(type) {
	case nil:
	case string:
		switch t {
		case "conversation-update":
			r.typ = detector.TypeConversationUpdate
		case "status-update":
			r.typ = detector.TypeStatusUpdate
		case "end-of-call-report":
			r.typ = detector.TypeEndOfCallReport
		case "hang", "hang-resolved":
			r.typ = detector.TypeOutput
		}
	default:
		return refResult{reason: ReasonWrongType}
	}
	if msg["call"] == nil {
		return refResult{reason: ReasonNoCallID}
	}
	call, ok := msg["call"].(map[string]any)
	if !ok {
		return refResult{reason: ReasonWrongType}
	}
	switch id := call["id"].(type) {
	case nil:
		return refResult{reason: ReasonNoCallID}
	case string:
		if id == "" {
			return refResult{reason: ReasonNoCallID}
		}
		r.callID = id
	default:
		return refResult{reason: ReasonWrongType}
	}
	switch s := call["status"].(type) {
	case nil:
	case string:
		for _, st := range []detector.Status{detector.StatusQueued, detector.StatusOngoing, detector.StatusFinished, detector.StatusForwarded} {
			if strings.EqualFold(s, st.String()) {
				r.status = st
			}
		}
	default:
		return refResult{reason: ReasonWrongType}
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"teamId", &r.teamID}, {"assistantId", &r.assistant}} {
		switch s := call[f.key].(type) {
		case nil:
		case string:
			*f.dst = s
		default:
			return refResult{reason: ReasonWrongType}
		}
	}

	var history any
	if v := msg["messages"]; v != nil {
		history = v
	} else if v := call["messages"]; v != nil {
		history = v
	}
	if history != nil {
		elems, ok := history.([]any)
		if !ok {
			return refResult{reason: ReasonMessagesNotArray}
		}
		stretches, ok := refStretches(elems)
		if !ok {
			return refResult{reason: ReasonWrongType}
		}
		r.messages = int32(len(elems))
		r.stretches = stretches
	}
	r.spans = map[string]refValue{}
	for _, k := range []string{"call", "assistant", "phone", "customer", "analysis"} {
		v, ok := msg[k]
		r.spans[k] = refValue{v, ok}
	}
	r.spans["messages"] = refValue{history, history != nil}
	return r
}

// refStretches applies the stretch rules to the elements of a history.
func refStretches(elems []any) ([]detector.Stretch, bool) {
	var (
		out  []detector.Stretch
		cur  detector.Stretch
		open bool
	)
	for i, e := range elems {
		el, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		turn := detector.Turn{Index: int32(i)}
		var role, text string
		for k, dst := range map[string]*string{"messageId": &turn.ID, "role": &role, "text": &text} {
			switch s := el[k].(type) {
			case nil:
			case string:
				*dst = s
			default:
				return nil, false
			}
		}
		switch ts := el["timestamp"].(type) {
		case nil:
		case json.Number:
			v, err := strconv.ParseFloat(string(ts), 64)
			if err != nil {
				return nil, false
			}
			if v < 1e11 {
				v *= 1000
			}
			turn.HasTime = true
			switch {
			case v >= 1<<53:
				turn.Time = 1 << 53
			case v <= -(1 << 53):
				turn.Time = -(1 << 53)
			default:
				turn.Time = int64(v)
			}
		default:
			return nil, false
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		switch {
		case strings.EqualFold(role, "user"):
			if open {
				cur.Last = turn
			} else {
				cur = detector.Stretch{First: turn, Last: turn}
				open = true
			}
		case (strings.EqualFold(role, "assistant") || strings.EqualFold(role, "bot")) && open:
			cur.Reply = turn
			cur.Answered = true
			out = append(out, cur)
			open = false
		}
	}
	if open {
		out = append(out, cur)
	}
	return out, true
}

// tokenDepth is the nesting depth of objects and arrays of a valid JSON text. It reads
// tokens rather than the tree, where a duplicate key can hide a deeper value.
func tokenDepth(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// checkDecode decodes data with Decode and with the reference and fails t where they
// disagree.
func checkDecode(t *testing.T, ev *detector.Event, data []byte, lim Limits) {
	t.Helper()
	want := refDecode(data, lim)
	err := Decode(ev, data, lim)
	if want.reason != ReasonNone {
		got, ok := BadInputReason(err)
		if !ok || (got != want.reason && got != want.alsoOK) {
			t.Fatalf("Decode(%q) = %v, want reason %v", trim(data), err, want.reason)
		}
		if ev.Payload != nil || ev.CallID != "" || len(ev.Stretches) != 0 {
			t.Fatalf("Decode(%q) failed but left a half-decoded event: %+v", trim(data), ev)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode(%q) = %v, want success", trim(data), err)
	}
	if ev.Type != want.typ || ev.Status != want.status || ev.CallID != want.callID || ev.Messages != want.messages {
		t.Fatalf("Decode(%q): type %v status %v call %q messages %d, want %v %v %q %d", trim(data),
			ev.Type, ev.Status, ev.CallID, ev.Messages, want.typ, want.status, want.callID, want.messages)
	}
	if len(ev.Stretches) != len(want.stretches) || (len(want.stretches) > 0 && !reflect.DeepEqual(ev.Stretches, want.stretches)) {
		t.Fatalf("Decode(%q): stretches\n%+v\nwant\n%+v", trim(data), ev.Stretches, want.stretches)
	}
	p, ok := ev.Payload.(*Payload)
	if !ok {
		t.Fatalf("Decode(%q): payload %T, want *Payload", trim(data), ev.Payload)
	}
	if p.Len() != len(data) {
		t.Fatalf("Decode(%q): payload Len %d, want %d", trim(data), p.Len(), len(data))
	}
	if p.TeamID() != want.teamID || p.AssistantID() != want.assistant {
		t.Fatalf("Decode(%q): team %q assistant %q, want %q %q", trim(data), p.TeamID(), p.AssistantID(), want.teamID, want.assistant)
	}
	for name, raw := range map[string][]byte{
		"call": p.Call(), "assistant": p.Assistant(), "messages": p.Messages(),
		"phone": p.Phone(), "customer": p.Customer(), "analysis": p.Analysis(),
	} {
		w := want.spans[name]
		if !w.present {
			if raw != nil {
				t.Fatalf("Decode(%q): span %s = %q, want none", trim(data), name, raw)
			}
			continue
		}
		if raw == nil {
			t.Fatalf("Decode(%q): no span %s, want %v", trim(data), name, w.v)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var got any
		if err := dec.Decode(&got); err != nil || dec.InputOffset() != int64(len(raw)) {
			t.Fatalf("Decode(%q): span %s = %q is not one JSON value (%v)", trim(data), name, raw, err)
		}
		if !reflect.DeepEqual(got, w.v) {
			t.Fatalf("Decode(%q): span %s = %q, want %v", trim(data), name, raw, w.v)
		}
	}
}

func trim(data []byte) []byte {
	if len(data) > 300 {
		return append(data[:300:300], "..."...)
	}
	return data
}
