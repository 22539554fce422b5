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
// rules of Decode (SPEC §1, both dialects) applied to a tree of maps, with the string
// fields kept as json.RawMessage where a key is made of their raw bytes. FuzzDecode
// checks that both agree.

// refResult is what the reference decoder makes of an event.
type refResult struct {
	rejection Rejection
	// alsoOK is a second rejection that Decode may give where the rules do not choose
	// one (an input both nested too deep and invalid further on).
	alsoOK Rejection

	ev detector.Event // the fields Decode fills, but Payload

	provider, model string
	// spans holds, for each passed-through value, the tree's value, and whether present;
	// "call" is the call object without its messages member.
	spans map[string]refValue
	// dupCallMessages says call has more than one messages member: only the last is left
	// out of the call an output carries.
	dupCallMessages bool
}

type refValue struct {
	v       any
	present bool
}

func refReject(r Rejection) refResult { return refResult{rejection: r} }

// jsonTree decodes a valid JSON text, numbers as json.Number.
func jsonTree(data []byte) any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		panic("valid JSON does not decode: " + err.Error())
	}
	return tree
}

// refString reads a string-or-null field: ok says it is a string, bad that it is
// neither.
func refString(v any, present bool) (s string, ok, bad bool) {
	if !present || v == nil {
		return "", false, false
	}
	s, ok = v.(string)
	return s, ok, !ok
}

// refTime reads a timestamp-or-null field (SPEC §1): Unix ms, seconds below 1e11.
func refTime(v any, present bool) (t int64, bad bool) {
	if !present || v == nil {
		return 0, false
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, true
	}
	if f < 1e11 {
		f *= 1000
	}
	switch {
	case f >= 1<<53:
		return 1 << 53, false
	case f <= -(1 << 53):
		return -(1 << 53), false
	}
	return int64(f), false
}

func refStatus(s string) detector.Status {
	for name, st := range map[string]detector.Status{
		"queued": detector.StatusQueued, "ongoing": detector.StatusOngoing, "in-progress": detector.StatusOngoing,
		"finished": detector.StatusFinished, "forwarded": detector.StatusForwarded, "ended": detector.StatusEnded,
		"forwarding": detector.StatusForwarding,
	} {
		if strings.EqualFold(s, name) {
			return st
		}
	}
	return detector.StatusUnknown
}

func refDecode(data []byte, lim Limits) refResult {
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return refReject(RejectTooLarge)
	}
	if !json.Valid(data) {
		r := refReject(RejectNotJSON)
		if bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > lim.MaxDepth {
			r.alsoOK = RejectTooDeep
		}
		return r
	}
	tree := jsonTree(data)
	if tokenDepth(data) > lim.MaxDepth {
		return refReject(RejectTooDeep)
	}
	top, ok := tree.(map[string]any)
	if !ok {
		return refReject(RejectNoMessage)
	}
	m, present := top["message"]
	if !present || m == nil {
		return refReject(RejectNoMessage)
	}
	msg, ok := m.(map[string]any)
	if !ok {
		return refReject(RejectWrongType)
	}
	var r refResult
	ev := &r.ev
	field := func(obj map[string]any, key string) (any, bool) { v, ok := obj[key]; return v, ok }

	typ, _, bad := refString(field(msg, "type"))
	if bad {
		return refReject(RejectWrongType)
	}
	switch typ {
	case "conversation-update":
		ev.Type = detector.TypeConversationUpdate
	case "status-update":
		ev.Type = detector.TypeStatusUpdate
	case "end-of-call-report":
		ev.Type = detector.TypeEndOfCallReport
	case "speech-update":
		ev.Type = detector.TypeSpeechUpdate
	case "hang", "hang-resolved", "hang-unresolved":
		ev.Type = detector.TypeOutput
	}
	if ev.Time, bad = refTime(field(msg, "timestamp")); bad {
		return refReject(RejectWrongType)
	}
	status, hasStatus, bad := refString(field(msg, "status"))
	if bad && (ev.Type == detector.TypeStatusUpdate || ev.Type == detector.TypeSpeechUpdate) {
		return refReject(RejectWrongType)
	}
	role, _, bad := refString(field(msg, "role"))
	if bad && ev.Type == detector.TypeSpeechUpdate {
		return refReject(RejectWrongType)
	}
	ended, _, bad := refString(field(msg, "endedReason"))
	if bad {
		return refReject(RejectWrongType)
	}
	if msg["call"] == nil {
		return refReject(RejectNoCallID)
	}
	call, ok := msg["call"].(map[string]any)
	if !ok {
		return refReject(RejectWrongType)
	}
	switch id := call["id"].(type) {
	case nil:
		return refReject(RejectNoCallID)
	case string:
		if id == "" {
			return refReject(RejectNoCallID)
		}
		ev.CallID = id
	default:
		return refReject(RejectWrongType)
	}
	var strs [5]string
	for k, key := range []string{"status", "teamId", "orgId", "assistantId", "endedReason"} {
		if strs[k], _, bad = refString(field(call, key)); bad {
			return refReject(RejectWrongType)
		}
	}
	ev.Status = refStatus(strs[0])
	if st := refStatus(status); ev.Type == detector.TypeStatusUpdate && hasStatus && st != detector.StatusUnknown && !ev.Status.Ends() {
		ev.Status = st
	}
	ev.Speech = ev.Type == detector.TypeSpeechUpdate && strings.EqualFold(status, "started") &&
		(strings.EqualFold(role, "assistant") || strings.EqualFold(role, "bot"))
	ev.TeamID = strs[1]
	if ev.TeamID == "" {
		ev.TeamID = strs[2]
	}
	ev.AssistantID = strs[3]
	ev.EndedReason = ended
	if ev.EndedReason == "" {
		ev.EndedReason = strs[4]
	}

	var history any
	switch {
	case msg["messages"] != nil:
		history = msg["messages"]
	case msg["artifact"] != nil:
		art, ok := msg["artifact"].(map[string]any)
		if !ok {
			return refReject(RejectWrongType)
		}
		history = art["messages"]
	}
	if history == nil {
		history = call["messages"]
	}
	if history != nil {
		elems, ok := history.([]any)
		if !ok {
			return refReject(RejectMessagesNotArray)
		}
		ev.HasHistory, ev.Count = true, int32(len(elems))
		if !refHistory(data, ev) {
			return refReject(RejectWrongType)
		}
	}

	if a, ok := msg["assistant"].(map[string]any); ok {
		var p, m bool
		if model, ok := a["model"].(map[string]any); ok {
			r.provider, p = model["provider"].(string)
			r.model, m = model["model"].(string)
		}
		if !p && !m {
			r.provider, _ = a["assistantProvider"].(string)
			r.model, _ = a["assistantModel"].(string)
		}
	}
	r.spans = map[string]refValue{}
	for _, k := range []string{"assistant", "phone", "customer", "analysis", "phoneNumber"} {
		v, ok := msg[k]
		r.spans[k] = refValue{v, ok}
	}
	c := make(map[string]any, len(call))
	for k, v := range call {
		if k != "messages" {
			c[k] = v
		}
	}
	r.spans["call"] = refValue{c, true}
	r.spans["messages"] = refValue{history, history != nil}
	r.dupCallMessages = countCallMessages(data) > 1
	return r
}

// refHistory applies the rules of history.go to the history the tree chose, which it
// reads again from data as raw elements, so that keys are made of the raw bytes. It
// reports false for a wrong type.
func refHistory(data []byte, ev *detector.Event) bool {
	var top struct {
		Message map[string]json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		panic(err)
	}
	sub := func(obj json.RawMessage, key string) json.RawMessage {
		var m map[string]json.RawMessage
		if json.Unmarshal(obj, &m) != nil {
			return nil
		}
		return m[key]
	}
	raw := top.Message["messages"]
	if rawKind(raw) == 0 {
		raw = sub(top.Message["artifact"], "messages")
	}
	if rawKind(raw) == 0 {
		raw = sub(top.Message["call"], "messages")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		panic("history not found again: " + err.Error())
	}
	for idx, e := range elems {
		var el map[string]json.RawMessage
		if !isObject(e) || json.Unmarshal(e, &el) != nil {
			return false // not an object
		}
		m, tools, ok := refMessage(el)
		if !ok {
			return false
		}
		if m.Role != 0 {
			m.Index = int32(idx)
			if m.Role == detector.RoleToolCall || m.Role == detector.RoleToolResult {
				m.ToolLo, m.ToolHi = int32(len(ev.Tools)), int32(len(ev.Tools)+len(tools))
			}
			ev.Tools = append(ev.Tools, tools...)
			ev.Messages = append(ev.Messages, m)
		}
	}
	return true
}

// rawKind returns the JSON kind of a raw value: 's'tring, 'n'umber, null 0, or 'x'.
func rawKind(v json.RawMessage) byte {
	switch c := bytes.TrimSpace(v); {
	case len(c) == 0 || string(c) == "null":
		return 0
	case c[0] == '"':
		return 's'
	case c[0] == '-' || c[0] >= '0' && c[0] <= '9':
		return 'n'
	}
	return 'x'
}

func isObject(v json.RawMessage) bool {
	c := bytes.TrimSpace(v)
	return len(c) > 0 && c[0] == '{'
}

// body returns the raw body of a JSON string.
func body(v json.RawMessage) []byte {
	c := bytes.TrimSpace(v)
	return c[1 : len(c)-1]
}

// refMessage reads one element: its message (Role 0 for none) and tool ids; false for
// a wrong type.
func refMessage(el map[string]json.RawMessage) (detector.Message, []uint64, bool) {
	str := func(key string) (raw []byte, present, ok bool) {
		v, has := el[key]
		switch rawKind(v) {
		case 0:
			return nil, false, true
		case 's':
			return body(v), has, true
		}
		return nil, false, false
	}
	num := func(key string) (int64, bool) {
		v, has := el[key]
		if !has {
			return 0, true
		}
		switch rawKind(v) {
		case 0:
			return 0, true
		case 'n':
			t, bad := refTime(json.Number(bytes.TrimSpace(v)), true)
			return t, !bad
		}
		return 0, false
	}
	calls := func(key string) (ids []uint64, n int, present, ok bool) {
		v, has := el[key]
		if !has || rawKind(v) == 0 {
			return nil, 0, false, true
		}
		var entries []json.RawMessage
		if json.Unmarshal(v, &entries) != nil {
			return nil, 0, false, false
		}
		for _, e := range entries {
			var entry map[string]json.RawMessage
			if !isObject(e) || json.Unmarshal(e, &entry) != nil {
				return nil, 0, false, false
			}
			switch id := entry["id"]; rawKind(id) {
			case 0:
			case 's':
				if b := body(id); len(b) > 0 {
					ids = append(ids, hashID(b))
				}
			default:
				return nil, 0, false, false
			}
		}
		return ids, len(entries), true, true
	}

	id, hasID, ok1 := str("messageId")
	roleRaw, _, ok2 := str("role")
	text, hasText, ok3 := str("text")
	message, hasMessage, ok4 := str("message")
	ts, ok5 := num("timestamp")
	tm, ok6 := num("time")
	end, ok7 := num("endTime")
	vapiCalls, vapiN, hasVapi, ok8 := calls("toolCalls")
	oaiCalls, oaiN, hasOAI, ok9 := calls("tool_calls")
	resID, hasResID, ok10 := str("toolCallId")
	resOAI, _, ok11 := str("tool_call_id")
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9 && ok10 && ok11) {
		return detector.Message{}, nil, false
	}
	if !hasText {
		text = message
		if !hasMessage {
			text = nil
			if c, ok := el["content"]; ok && rawKind(c) == 's' {
				text = body(c)
			}
		}
	}
	var decoded string
	if text != nil {
		if err := json.Unmarshal(append(append([]byte{'"'}, text...), '"'), &decoded); err != nil {
			panic(err)
		}
	}
	nonEmpty := strings.TrimSpace(decoded) != ""
	var roleStr string
	if roleRaw != nil {
		_ = json.Unmarshal(append(append([]byte{'"'}, roleRaw...), '"'), &roleStr)
	}
	ids, n := vapiCalls, vapiN
	if !hasVapi {
		ids, n = oaiCalls, oaiN
		if !hasOAI {
			ids, n = nil, 0
		}
	}
	var m detector.Message
	var tools []uint64
	switch {
	case strings.EqualFold(roleStr, "user"):
		if nonEmpty {
			m.Role = detector.RoleUser
		}
	case strings.EqualFold(roleStr, "assistant") || strings.EqualFold(roleStr, "bot"):
		if nonEmpty {
			m.Role = detector.RoleReply
		} else if n > 0 {
			m.Role, tools = detector.RoleToolCall, ids
		}
	case strings.EqualFold(roleStr, "tool_calls"):
		m.Role, tools = detector.RoleToolCall, ids
	case strings.EqualFold(roleStr, "tool_call_result") || strings.EqualFold(roleStr, "tool"):
		m.Role = detector.RoleToolResult
		if !hasResID {
			resID = resOAI
		}
		if len(resID) > 0 {
			tools = []uint64{hashID(resID)}
		}
	}
	if m.Role == 0 {
		return m, nil, true
	}
	m.Time = ts
	if m.Time == 0 {
		m.Time = tm
		if m.Role == detector.RoleUser && end != 0 {
			m.Time = end
		}
	}
	if hasID && len(id) > 0 {
		_ = json.Unmarshal(append(append([]byte{'"'}, id...), '"'), &m.ID)
		m.Key = hashID(id)
	} else {
		m.Key = fallbackKey(m.Role, m.Time, text, tools)
	}
	return m, tools, true
}

// tokenDepth is the nesting depth of objects and arrays of a valid JSON text. It reads
// tokens rather than the tree, where a duplicate key can hide a deeper value.
func tokenDepth(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number out of float64's range (1E700) is valid JSON, not the end
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

// countCallMessages counts the messages members of the last message.call object of a
// valid JSON text, by tokens.
func countCallMessages(data []byte) int {
	var top struct {
		Message map[string]json.RawMessage `json:"message"`
	}
	if json.Unmarshal(data, &top) != nil || top.Message == nil {
		return 0
	}
	call := top.Message["call"]
	dec := json.NewDecoder(bytes.NewReader(call))
	dec.UseNumber() // see tokenDepth
	depth, n := 0, 0
	key := true
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			if depth == 2 {
				key = true
			}
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			if depth == 1 {
				key = true
			}
			continue
		}
		if depth == 1 {
			if key && tok == "messages" {
				n++
			}
			key = !key
		}
	}
}

// checkDecode decodes data with Decode and with the reference and fails t where they
// disagree.
func checkDecode(t *testing.T, ev *detector.Event, data []byte, lim Limits) {
	t.Helper()
	want := refDecode(data, lim)
	err := Decode(ev, data, lim)
	if want.rejection != RejectNone {
		got, ok := RejectionOf(err)
		if !ok || (got != want.rejection && got != want.alsoOK) {
			t.Fatalf("Decode(%q) = %v, want rejection %v", trim(data), err, want.rejection)
		}
		if ev.Payload != nil || ev.CallID != "" || len(ev.Messages) != 0 || len(ev.Tools) != 0 {
			t.Fatalf("Decode(%q) failed but left a half-decoded event: %+v", trim(data), ev)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode(%q) = %v, want success", trim(data), err)
	}
	got := *ev
	got.Payload = nil
	w := want.ev
	if len(got.Messages) == 0 && len(w.Messages) == 0 {
		got.Messages, w.Messages = nil, nil
	}
	if len(got.Tools) == 0 && len(w.Tools) == 0 {
		got.Tools, w.Tools = nil, nil
	}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("Decode(%q):\n got %+v\nwant %+v", trim(data), got, w)
	}
	p, ok := ev.Payload.(*Payload)
	if !ok {
		t.Fatalf("Decode(%q): payload %T, want *Payload", trim(data), ev.Payload)
	}
	if p.Len() != len(data)+payloadSize {
		t.Fatalf("Decode(%q): payload Len %d, want %d", trim(data), p.Len(), len(data)+payloadSize)
	}
	if p.TeamID() != w.TeamID || p.AssistantID() != w.AssistantID {
		t.Fatalf("Decode(%q): payload team %q assistant %q, want %q %q", trim(data), p.TeamID(), p.AssistantID(), w.TeamID, w.AssistantID)
	}
	if prov, model := p.Model(); prov != want.provider || model != want.model {
		t.Fatalf("Decode(%q): model %q %q, want %q %q", trim(data), prov, model, want.provider, want.model)
	}
	head, tail := p.callParts()
	for name, raw := range map[string][]byte{
		"call": append(head[:len(head):len(head)], tail...), "assistant": p.value(p.assistant), "messages": p.value(p.messages),
		"phone": p.value(p.phone), "customer": p.value(p.customer), "analysis": p.value(p.analysis),
		"phoneNumber": p.value(p.phoneNumber),
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
		if name == "call" && want.dupCallMessages {
			continue // an earlier duplicate messages member stays
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
