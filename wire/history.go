package wire

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/hangwatch/hangwatch/detector"
)

// This file reads a history, the messages array of either dialect (SPEC §1), into the
// detector.Message values of the event: per message, by which fields are present.
//
//   - role: user; assistant or bot; tool_calls; tool_call_result or tool; any other
//     role (system, ...) is none of these. Case-insensitive.
//   - text: text (webhook), else message (Vapi), else content when it is a string
//     (OpenAI).
//   - own time: timestamp (webhook), else for a user turn endTime, else time (Vapi: the
//     caller's turn ends at endTime, a reply starts at time), for any other message time.
//   - tool calls: the ids of toolCalls (Vapi), else of tool_calls (OpenAI), on a message
//     of role tool_calls or an assistant message; a result names its call in toolCallId,
//     else tool_call_id.

// Element fields, in the order the error of an element names them.
const (
	fID = iota
	fRole
	fText
	fMessage
	fTimestamp
	fTime
	fEndTime
	fToolCalls    // Vapi
	fToolCallsOAI // OpenAI
	fToolCallID
	fToolCallIDOAI
	fSelf    // the element itself is not an object
	fContent // never wrong: content is read only when it is a string
	numFields
)

var fieldNames = [...]string{"messageId", "role", "text", "message", "timestamp", "time", "endTime", "toolCalls", "tool_calls", "toolCallId", "tool_call_id"}

// roleClass is the role field of a message.
type roleClass uint8

const (
	roleOther roleClass = iota
	roleUser
	roleAssistant
	roleToolCalls
	roleToolResult
)

var roleNames = [...]struct {
	name string
	role roleClass
}{
	{"user", roleUser},
	{"assistant", roleAssistant},
	{"bot", roleAssistant},
	{"tool_calls", roleToolCalls},
	{"tool_call_result", roleToolResult},
	{"tool", roleToolResult},
}

// roleOf reads a role, case-insensitively. The exact spellings, the rule, are matched
// by a switch, which compares the length first.
func roleOf(s string) roleClass {
	switch s {
	case "user":
		return roleUser
	case "assistant", "bot":
		return roleAssistant
	case "tool_calls":
		return roleToolCalls
	case "tool_call_result", "tool":
		return roleToolResult
	}
	for _, r := range roleNames {
		if strings.EqualFold(s, r.name) {
			return r.role
		}
	}
	return roleOther
}

// history is one of the places a history can come from.
type history struct {
	field
	span  span
	depth int // the containers around it
	// decoded says that its messages are ev.Messages[lo:hi] and their tool ids
	// ev.Tools[tlo:thi]; a history skipped while a preferred one was present is not.
	decoded  bool
	count    int32
	lo, hi   int
	tlo, thi int
	bad      elementError // of the first element with a wrong type
}

// elementError is what makes an element bad input: the fields with a wrong type, as
// bits, and the kind of each.
type elementError struct {
	index  int32
	fields uint16
	kinds  [numFields]byte
	// For toolCalls and tool_calls: the entry with a wrong type (-1: the array itself),
	// and whether it is the entry's id.
	entry   [2]int32
	entryID [2]bool
}

func (e *elementError) err(path string) error {
	k := bits.TrailingZeros16(e.fields)
	p := fmt.Sprintf("%s[%d]", path, e.index)
	if k != fSelf {
		p += "." + fieldNames[k]
	}
	if t := k - fToolCalls; (t == 0 || t == 1) && e.entry[t] >= 0 {
		p += fmt.Sprintf("[%d]", e.entry[t])
		if e.entryID[t] {
			p += ".id"
		}
	}
	return wrong(RejectWrongType, p, e.kinds[k])
}

// element is what detection reads of one history element. Raw string bodies alias the
// payload; nil stands for absent.
type element struct {
	has  uint16 // the fields present with the right type
	e    elementError
	role roleClass

	id, text, msg, content []byte
	resID, resIDOAI        []byte
	idEsc                  bool
	ts, time, end          int64
	calls                  [2]toolList
}

// toolList is the ids of a toolCalls or tool_calls array, ev.Tools[lo:hi], and its
// length (an entry without an id is a call all the same).
type toolList struct {
	lo, hi int
	n      int32
}

// set records the state of field k: a later duplicate key replaces an earlier one.
func (el *element) set(k int, f field) {
	bit := uint16(1) << k
	el.has &^= bit
	el.e.fields &^= bit
	switch f.st {
	case stOK:
		el.has |= bit
	case stBad:
		el.e.fields |= bit
		el.e.kinds[k] = f.kind
	}
}

func (el *element) present(k int) bool { return el.has>>k&1 != 0 }

// history decodes a messages array at i, from src, inside depth containers.
func (d *decoder) history(i, depth, src int) int {
	h := &d.hist[src]
	*h = history{depth: depth}
	j, ok := d.open(i, depth, '[', &h.field)
	if !ok {
		return j
	}
	for p := range src {
		if d.hist[p].st == stOK {
			// A preferred history is present: this one is only validated, and decoded
			// by finish if a later duplicate key takes the preferred one back.
			j = d.skipValue(i, depth)
			h.span = span{uint32(i), uint32(max(j, 0))}
			return j
		}
	}
	return d.decodeHistory(i, depth, h)
}

// decodeHistory decodes the array at i, entered already, into h.
func (d *decoder) decodeHistory(i, depth int, h *history) int {
	ev := d.ev
	data := d.data
	h.decoded = true
	h.lo, h.tlo = len(ev.Messages), len(ev.Tools)
	start := i
	var idx int32
	i, more := d.first(i, ']')
	for ; more; idx++ {
		if at(data, i) == '{' {
			i = d.decodeElement(i, depth+1, idx, h)
		} else {
			if h.bad.fields == 0 {
				h.bad = elementError{index: idx, fields: 1 << fSelf}
				h.bad.kinds[fSelf] = at(data, i)
			}
			i = d.skipValue(i, depth+1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, ']'); i < 0 {
			return i
		}
	}
	h.count = idx
	h.hi, h.thi = len(ev.Messages), len(ev.Tools)
	h.span = span{uint32(start), uint32(i)}
	return i
}

// decodeElement decodes the history element (an object) at i, the idx-th of h, and
// appends its message, if it is one that detection reads.
func (d *decoder) decodeElement(i, depth int, idx int32, h *history) int {
	if h.bad.fields != 0 {
		return d.skipValue(i, depth) // an earlier element makes the event bad already
	}
	if !d.enter(i, depth) {
		return -1
	}
	var el element
	el.e.entry = [2]int32{-1, -1}
	tlo := len(d.ev.Tools)
	depth++
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		var f field
		var raw []byte
		switch key {
		case "messageId":
			el.id, el.idEsc, i = d.stringValue(vi, depth, &f)
			el.set(fID, f)
		case "role":
			var esc bool
			raw, esc, i = d.stringValue(vi, depth, &f)
			el.role = roleOf(cmpStr(raw, esc, &d.buf))
			el.set(fRole, f)
		case "text":
			el.text, _, i = d.stringValue(vi, depth, &f)
			el.set(fText, f)
		case "message":
			el.msg, _, i = d.stringValue(vi, depth, &f)
			el.set(fMessage, f)
		case "content":
			el.content = nil
			if at(d.data, vi) == '"' {
				el.content, _, i = d.stringValue(vi, depth, &f)
			} else {
				i = d.skipValue(vi, depth)
			}
			el.set(fContent, f)
		case "timestamp":
			el.ts, i = d.timeValue(vi, depth, &f)
			el.set(fTimestamp, f)
		case "time":
			el.time, i = d.timeValue(vi, depth, &f)
			el.set(fTime, f)
		case "endTime":
			el.end, i = d.timeValue(vi, depth, &f)
			el.set(fEndTime, f)
		case "toolCalls":
			i = d.toolCalls(vi, depth, &el, 0)
		case "tool_calls":
			i = d.toolCalls(vi, depth, &el, 1)
		case "toolCallId":
			el.resID, _, i = d.stringValue(vi, depth, &f)
			el.set(fToolCallID, f)
		case "tool_call_id":
			el.resIDOAI, _, i = d.stringValue(vi, depth, &f)
			el.set(fToolCallIDOAI, f)
		default:
			i = d.skipValue(vi, depth)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	d.addMessage(&el, idx, tlo, h)
	return i
}

// toolCalls decodes the toolCalls (t = 0) or tool_calls (t = 1) array of an element at
// i, appending the ids of its entries to ev.Tools.
func (d *decoder) toolCalls(i, depth int, el *element, t int) int {
	ev := d.ev
	data := d.data
	k := fToolCalls + t
	el.calls[t] = toolList{}
	el.e.entry[t], el.e.entryID[t] = -1, false
	var f field
	j, ok := d.open(i, depth, '[', &f)
	if !ok {
		el.set(k, f)
		return j
	}
	lo := len(ev.Tools)
	var n int32
	i, more := d.first(i, ']')
	for ; more; n++ {
		if at(data, i) == '{' {
			var id []byte
			var idf field
			if i, id, idf = d.toolCall(i, depth+1); i < 0 {
				return i
			}
			switch {
			case f.st == stBad:
			case idf.st == stBad:
				f, el.e.entry[t], el.e.entryID[t] = idf, n, true
			case len(id) > 0:
				ev.Tools = append(ev.Tools, hashID(id))
			}
		} else {
			if f.st != stBad {
				f, el.e.entry[t] = field{stBad, at(data, i)}, n
			}
			if i = d.skipValue(i, depth+1); i < 0 {
				return i
			}
		}
		if i, more = d.next(i, ']'); i < 0 {
			return i
		}
	}
	el.calls[t] = toolList{lo: lo, hi: len(ev.Tools), n: n}
	el.set(k, f)
	return i
}

// toolCall decodes an entry of a tool call list at i and returns its id.
func (d *decoder) toolCall(i, depth int) (int, []byte, field) {
	var id []byte
	var f field
	if !d.enter(i, depth) {
		return -1, nil, f
	}
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi, nil, f
		}
		if key == "id" {
			id, _, i = d.stringValue(vi, depth+1, &f)
		} else {
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i, nil, f
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i, nil, f
		}
	}
	return i, id, f
}

// addMessage appends the message of a decoded element, if detection reads it; tlo is
// where the element's tool ids start in ev.Tools.
func (d *decoder) addMessage(el *element, idx int32, tlo int, h *history) {
	ev := d.ev
	if el.e.fields != 0 {
		h.bad = el.e
		h.bad.index = idx
		ev.Tools = ev.Tools[:tlo]
		return
	}
	var text []byte
	switch {
	case el.present(fText):
		text = el.text
	case el.present(fMessage):
		text = el.msg
	case el.present(fContent):
		text = el.content
	}
	calls := -1 // the tool list in force
	switch {
	case el.present(fToolCalls):
		calls = 0
	case el.present(fToolCallsOAI):
		calls = 1
	}
	var role detector.Role
	switch el.role {
	case roleUser:
		if nonEmpty(text) {
			role = detector.RoleUser
		}
	case roleAssistant:
		if nonEmpty(text) {
			role = detector.RoleReply
		} else if calls >= 0 && el.calls[calls].n > 0 {
			role = detector.RoleToolCall
		}
	case roleToolCalls:
		role = detector.RoleToolCall
	case roleToolResult:
		role = detector.RoleToolResult
	}
	ev.Tools = ev.Tools[:tlo]
	if role == 0 {
		return
	}
	switch role {
	case detector.RoleToolCall:
		if calls >= 0 {
			c := el.calls[calls]
			ev.Tools = ev.Tools[:tlo+copy(ev.Tools[tlo:c.hi], ev.Tools[c.lo:c.hi])]
		}
	case detector.RoleToolResult:
		id := el.resIDOAI
		if el.present(fToolCallID) {
			id = el.resID
		}
		if len(id) > 0 {
			ev.Tools = append(ev.Tools, hashID(id))
		}
	}
	t := el.ts
	if t == 0 {
		t = el.time
		if role == detector.RoleUser && el.end != 0 {
			t = el.end
		}
	}
	m := detector.Message{Role: role, Index: idx, Time: t}
	if role == detector.RoleToolCall || role == detector.RoleToolResult {
		m.ToolLo, m.ToolHi = int32(tlo), int32(len(ev.Tools))
	}
	if el.present(fID) && len(el.id) > 0 {
		m.ID = str(el.id, el.idEsc)
		m.Key = hashID(el.id)
	} else {
		m.Key = fallbackKey(role, t, text, ev.Tools[tlo:])
	}
	ev.Messages = append(ev.Messages, m)
}

// hashID is the key of a messageId, or of a tool call id: the xxhash64 of its raw bytes
// as received (escapes are not decoded), never 0. It is part of the Nats-Msg-Id of
// outputs (through the fallback ids of detector), so it must never change.
func hashID(raw []byte) uint64 { return nonZero(xxhash.Sum64(raw)) }

// fallbackKey is the key of a message without a messageId (SPEC §2): its role, its own
// time and the raw bytes of its text, and for a tool message the ids of its tool calls,
// so that two results at the same millisecond stay apart. Like hashID it must never
// change.
func fallbackKey(r detector.Role, t int64, text []byte, tools []uint64) uint64 {
	h := xxhash.Sum64(text)
	h = mix(h ^ uint64(r)<<56 ^ mix(uint64(t)))
	for _, id := range tools {
		h = mix(h ^ id)
	}
	return nonZero(h)
}

// mix is the finaliser of MurmurHash3, a bijection that spreads every input bit.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}
