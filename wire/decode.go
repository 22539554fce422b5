package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/hangwatch/hangwatch/detector"
)

// Limits bound what Decode accepts. A zero field takes its default.
type Limits struct {
	// MaxBytes is the largest payload accepted (default 1 MiB, at most 2 GiB-1).
	MaxBytes int
	// MaxDepth is the deepest nesting of objects and arrays accepted (default 64, at
	// most 10000, the limit of encoding/json).
	MaxDepth int
}

const (
	defaultMaxBytes = 1 << 20
	defaultMaxDepth = 64
	maxMaxDepth     = 10000
)

// DefaultLimits returns the limits Decode applies by default.
func DefaultLimits() Limits {
	return Limits{MaxBytes: defaultMaxBytes, MaxDepth: defaultMaxDepth}
}

func (l Limits) norm() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = defaultMaxBytes
	}
	// Spans are 32-bit, and so are message indexes.
	l.MaxBytes = min(l.MaxBytes, math.MaxInt32)
	if l.MaxDepth <= 0 {
		l.MaxDepth = defaultMaxDepth
	}
	l.MaxDepth = min(l.MaxDepth, maxMaxDepth)
	return l
}

// Decode parses one event of either dialect (SPEC §1) into ev. It resets ev first,
// keeping the capacity of ev.Messages and ev.Tools, and sets every field but Received,
// Wall and Stored. ev.Payload is a *Payload over data, which must not be modified
// afterwards: strings in ev and in the payload may alias it.
//
// The whole payload is validated as JSON in a single pass, and only the fields that
// detection reads are decoded. An error is a *BadInputError; ev is then left reset.
// Syntax errors and nesting take precedence over the type errors of the fields, which
// are reported in a fixed order: message, message.type, message.timestamp,
// message.status and message.role (on the types that read them), message.endedReason,
// message.call, call.id, call.status, call.teamId, call.orgId, call.assistantId,
// call.endedReason, then the history (message.artifact on the way to its messages).
// Of a history, the first element with a wrong type is reported, and of it the first
// field in the order messageId, role, text, message, timestamp, time, endTime,
// toolCalls, tool_calls, toolCallId, tool_call_id.
func Decode(ev *detector.Event, data []byte, lim Limits) error {
	ev.Reset()
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return &BadInputError{Rejection: RejectTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(data), lim.MaxBytes)}
	}
	d := decoder{data: data, maxDepth: lim.MaxDepth, ev: ev}
	if err := d.decode(); err != nil {
		ev.Reset()
		return err
	}
	return nil
}

// The places a history can come from, in the order they are preferred (SPEC §1).
const (
	fromMessage  = iota // message.messages
	fromArtifact        // message.artifact.messages
	fromCall            // message.call.messages
	numSources
)

var sourcePaths = [numSources]string{"message.messages", "message.artifact.messages", "message.call.messages"}

// strRef is a JSON string body in the payload, and whether it holds escapes.
type strRef struct {
	s   span
	esc bool
	ok  bool // the value is a string
}

// msgState is what Decode reads of message. A later duplicate key message replaces it
// whole, so it is reset with one assignment.
type msgState struct {
	typ, ts, msgStatus, role, ended, call, artifact field

	typeVal      detector.Type
	time         int64
	msgStatusVal detector.Status
	started      bool // message.status is "started"
	assistant    bool // message.role is assistant or bot
	endedRaw     strRef

	// hist holds the three places of a history; callState and the artifact reset their
	// own.
	hist [numSources]history

	assistantSpan   span
	provider, model strRef
	// flatProvider and flatModel are the webhook dialect's assistant.assistantProvider
	// and assistant.assistantModel, read when assistant.model has neither.
	flatProvider, flatModel strRef
	phone, customer         span
	analysis, phoneNumber   span
	callState
}

// callState is what Decode reads of message.call, which a later duplicate key call
// replaces whole.
type callState struct {
	id, status, team, org, assistantID, callEnded field

	statusVal             detector.Status
	callID                string
	teamRaw, orgRaw, aRaw strRef
	callEndedRaw          strRef
	callSpan              span
	// cut is the member messages of call, with the comma that separates it, which an
	// output leaves out (the history is carried once).
	cut span
}

// decoder is the state of one call of Decode. It lives on Decode's stack.
type decoder struct {
	data     []byte
	maxDepth int
	ev       *detector.Event

	// The first syntax or nesting error; -1 is returned up the call chain.
	fail   Rejection
	failAt int

	top, message field
	msgState

	// deep holds the kinds of the containers that skipValue opens more than 64 deep,
	// one bit per depth.
	deep []uint64
	buf  cmpBuf
}

func (d *decoder) decode() error {
	data := d.data
	i := skipWS(data, 0)
	if i < len(data) && data[i] == '{' {
		i = d.decodeTop(i)
	} else {
		d.top = field{stBad, at(data, i)}
		i = d.skipValue(i, 0)
	}
	if i >= 0 {
		if i = skipWS(data, i); i != len(data) {
			d.syntax(i)
		}
	}
	switch d.fail {
	case RejectNotJSON:
		if d.failAt >= len(data) {
			return &BadInputError{Rejection: RejectNotJSON, Detail: "unexpected end of input"}
		}
		return &BadInputError{Rejection: RejectNotJSON, Detail: fmt.Sprintf("syntax error at offset %d", d.failAt)}
	case RejectTooDeep:
		return &BadInputError{Rejection: RejectTooDeep, Detail: fmt.Sprintf("nesting deeper than %d at offset %d", d.maxDepth, d.failAt)}
	}
	return d.finish()
}

// decodeTop decodes the top-level object at i.
func (d *decoder) decodeTop(i int) int {
	if !d.enter(i, 0) {
		return -1
	}
	d.top = field{st: stOK}
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		if key == "message" {
			i = d.decodeMessage(vi)
		} else {
			i = d.skipValue(vi, 1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	return i
}

// decodeMessage decodes the value of the key message at i. A later duplicate key
// replaces everything an earlier one set.
func (d *decoder) decodeMessage(i int) int {
	const depth = 1
	d.msgState = msgState{}
	if j, ok := d.open(i, depth, '{', &d.message); !ok {
		return j
	}
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		var raw []byte
		var esc bool
		switch key {
		case "type":
			raw, esc, i = d.stringValue(vi, depth+1, &d.typ)
			d.typeVal = eventType(cmpStr(raw, esc, &d.buf))
		case "timestamp":
			d.time, i = d.timeValue(vi, depth+1, &d.ts)
		case "status":
			raw, esc, i = d.stringValue(vi, depth+1, &d.msgStatus)
			s := cmpStr(raw, esc, &d.buf)
			d.msgStatusVal, d.started = callStatus(s), foldEq(s, "started")
		case "role":
			raw, esc, i = d.stringValue(vi, depth+1, &d.role)
			r := roleOf(cmpStr(raw, esc, &d.buf))
			d.assistant = r == roleAssistant
		case "endedReason":
			i = d.strRef(vi, depth+1, &d.ended, &d.endedRaw)
		case "call":
			i = d.decodeCall(vi)
		case "messages":
			i = d.history(vi, depth+1, fromMessage)
		case "artifact":
			i = d.decodeArtifact(vi)
		case "assistant":
			i = d.decodeAssistant(vi)
		case "phone":
			i = d.spanValue(vi, depth+1, &d.phone)
		case "customer":
			i = d.spanValue(vi, depth+1, &d.customer)
		case "analysis":
			i = d.spanValue(vi, depth+1, &d.analysis)
		case "phoneNumber":
			i = d.spanValue(vi, depth+1, &d.phoneNumber)
		default:
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	return i
}

// strRef reads a string-or-null field at i into r, and its state into f.
func (d *decoder) strRef(i, depth int, f *field, r *strRef) int {
	raw, esc, j := d.stringValue(i, depth, f)
	*r = strRef{}
	if f.st == stOK {
		start := uint32(i + 1)
		*r = strRef{s: span{start, start + uint32(len(raw))}, esc: esc, ok: true}
	}
	return j
}

// str returns the Go string of a string field of the payload, "" when absent.
func (d *decoder) str(r strRef) string {
	if !r.ok {
		return ""
	}
	return str(d.data[r.s.start:r.s.end], r.esc)
}

func eventType(s string) detector.Type {
	switch s {
	case "conversation-update":
		return detector.TypeConversationUpdate
	case "status-update":
		return detector.TypeStatusUpdate
	case "end-of-call-report":
		return detector.TypeEndOfCallReport
	case "speech-update":
		return detector.TypeSpeechUpdate
	case "hang", "hang-resolved", "hang-unresolved":
		return detector.TypeOutput
	}
	return detector.TypeOther
}

// statuses are the call statuses of both dialects, by name.
var statuses = [...]struct {
	name string
	st   detector.Status
}{
	{"ongoing", detector.StatusOngoing},
	{"in-progress", detector.StatusOngoing},
	{"finished", detector.StatusFinished},
	{"ended", detector.StatusEnded},
	{"queued", detector.StatusQueued},
	{"forwarded", detector.StatusForwarded},
	{"forwarding", detector.StatusForwarding},
}

// callStatus reads a status (call.status, or message.status of a status-update),
// case-insensitively.
func callStatus(s string) detector.Status {
	for _, st := range statuses {
		if s == st.name {
			return st.st
		}
	}
	for _, st := range statuses {
		if strings.EqualFold(s, st.name) {
			return st.st
		}
	}
	return detector.StatusUnknown
}

// foldEq reports whether s is name, case-insensitively; the exact spelling is tried
// first, as it is the rule.
func foldEq(s, name string) bool { return s == name || strings.EqualFold(s, name) }

// decodeCall decodes the value of message.call at i.
func (d *decoder) decodeCall(i int) int {
	const depth = 2
	d.callState = callState{}
	d.hist[fromCall] = history{}
	if j, ok := d.open(i, depth, '{', &d.call); !ok {
		return j
	}
	start := i
	// prev is the end of the previous member's value, -1 before the first; cutFirst
	// says that the messages member came first, so that its cut ends where the next
	// member starts.
	prev, cutFirst := -1, false
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		keyStart := i
		var raw []byte
		var esc bool
		switch key {
		case "id":
			raw, esc, i = d.stringValue(vi, depth+1, &d.id)
			d.callID = str(raw, esc)
		case "status":
			raw, esc, i = d.stringValue(vi, depth+1, &d.status)
			d.statusVal = callStatus(cmpStr(raw, esc, &d.buf))
		case "teamId":
			i = d.strRef(vi, depth+1, &d.team, &d.teamRaw)
		case "orgId":
			i = d.strRef(vi, depth+1, &d.org, &d.orgRaw)
		case "assistantId":
			i = d.strRef(vi, depth+1, &d.assistantID, &d.aRaw)
		case "endedReason":
			i = d.strRef(vi, depth+1, &d.callEnded, &d.callEndedRaw)
		case "messages":
			i = d.history(vi, depth+1, fromCall)
			if i < 0 {
				return i
			}
			if prev >= 0 {
				d.cut, cutFirst = span{uint32(prev), uint32(i)}, false
			} else {
				d.cut, cutFirst = span{uint32(keyStart), uint32(i)}, true
			}
		default:
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i
		}
		prev = i
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
		if more && cutFirst {
			d.cut.end, cutFirst = uint32(i), false
		}
	}
	d.callSpan = span{uint32(start), uint32(i)}
	return i
}

// decodeArtifact decodes the value of message.artifact at i, for its messages.
func (d *decoder) decodeArtifact(i int) int {
	const depth = 2
	d.hist[fromArtifact] = history{}
	if j, ok := d.open(i, depth, '{', &d.artifact); !ok {
		return j
	}
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		if key == "messages" {
			i = d.history(vi, depth+1, fromArtifact)
		} else {
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	return i
}

// decodeAssistant decodes the value of message.assistant at i: it is passed through,
// and its model's provider and name are read when they are strings (assistant.model,
// else the webhook dialect's assistantProvider and assistantModel). Nothing in it makes
// the event bad input.
func (d *decoder) decodeAssistant(i int) int {
	const depth = 2
	d.assistantSpan, d.provider, d.model = span{}, strRef{}, strRef{}
	d.flatProvider, d.flatModel = strRef{}, strRef{}
	if at(d.data, i) != '{' {
		return d.spanValue(i, depth, &d.assistantSpan)
	}
	if !d.enter(i, depth) {
		return -1
	}
	start := i
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		var f field
		switch key {
		case "model":
			i = d.decodeModel(vi, depth+1)
		case "assistantProvider":
			i = d.strRef(vi, depth+1, &f, &d.flatProvider)
		case "assistantModel":
			i = d.strRef(vi, depth+1, &f, &d.flatModel)
		default:
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	if !d.provider.ok && !d.model.ok {
		d.provider, d.model = d.flatProvider, d.flatModel
	}
	d.assistantSpan = span{uint32(start), uint32(i)}
	return i
}

// decodeModel decodes the value of assistant.model at i.
func (d *decoder) decodeModel(i, depth int) int {
	d.provider, d.model = strRef{}, strRef{}
	if at(d.data, i) != '{' {
		return d.skipValue(i, depth)
	}
	if !d.enter(i, depth) {
		return -1
	}
	i, more := d.first(i, '}')
	for more {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		var f field
		switch key {
		case "provider":
			i = d.strRef(vi, depth+1, &f, &d.provider)
		case "model":
			i = d.strRef(vi, depth+1, &f, &d.model)
		default:
			i = d.skipValue(vi, depth+1)
		}
		if i < 0 {
			return i
		}
		if i, more = d.next(i, '}'); i < 0 {
			return i
		}
	}
	return i
}

// maxTime bounds a timestamp to the integers that a float64 holds exactly.
const maxTime = 1 << 53

// parseTime converts a validated JSON number to Unix milliseconds, as encoding/json
// reads it into a float64; a value below 1e11 is in seconds. It fails only when the
// number is out of the float64 range.
func parseTime(num []byte) (int64, bool) {
	neg := num[0] == '-'
	digits := num
	if neg {
		digits = num[1:]
	}
	// The fast path: an integer of at most 15 digits is exact in a float64.
	if len(digits) <= 15 {
		if v, ok := integer(digits); ok {
			if neg {
				v = -v
			}
			if v < 1e11 {
				v *= 1000
			}
			return max(v, -maxTime), true
		}
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(num), len(num)), 64)
	if err != nil {
		return 0, false
	}
	if f < 1e11 {
		f *= 1000
	}
	switch {
	case f >= maxTime:
		return maxTime, true
	case f <= -maxTime:
		return -maxTime, true
	}
	return int64(f), true
}

// integer returns the value of b when it is 1 to 16 ASCII digits. Timestamps have 13:
// more than 8 are read as two words (SWAR, see eightDigits).
func integer(b []byte) (int64, bool) {
	n := len(b)
	if n > 8 {
		// The first n-8 digits, behind leading zeros, and the last 8.
		h := uint(n - 8)
		hi := word(b, 0)<<(8*(8-h)) | (lsb*'0')>>(8*h)
		lo := word(b, n-8)
		if nonDigitMask(hi)|nonDigitMask(lo) != 0 {
			return 0, false
		}
		return int64(eightDigits(hi)*1e8 + eightDigits(lo)), true
	}
	var v int64
	for _, c := range b {
		if c -= '0'; c > 9 {
			return 0, false
		}
		v = v*10 + int64(c)
	}
	return v, true
}

// eightDigits returns the value of the eight ASCII digits of x, the first in its lowest
// byte: pairs, then quadruples, then the whole (Lemire, "Fast number parsing").
func eightDigits(x uint64) uint64 {
	const mask = 0x000000ff000000ff
	x -= lsb * '0'
	x = x*10 + x>>8
	return ((x&mask)*(100+1000000<<32) + (x>>16&mask)*(1+10000<<32)) >> 32
}

// finish judges the fields in a fixed order and fills the event.
func (d *decoder) finish() error {
	readsStatus := d.typeVal == detector.TypeStatusUpdate || d.typeVal == detector.TypeSpeechUpdate
	switch {
	case d.top.st == stBad:
		return wrong(RejectNoMessage, "event", d.top.kind)
	case d.message.st == stAbsent:
		return &BadInputError{Rejection: RejectNoMessage, Detail: "message is missing or null"}
	case d.message.st == stBad:
		return wrong(RejectWrongType, "message", d.message.kind)
	case d.typ.st == stBad:
		return wrong(RejectWrongType, "message.type", d.typ.kind)
	case d.ts.st == stBad:
		return wrong(RejectWrongType, "message.timestamp", d.ts.kind)
	case readsStatus && d.msgStatus.st == stBad:
		return wrong(RejectWrongType, "message.status", d.msgStatus.kind)
	case d.typeVal == detector.TypeSpeechUpdate && d.role.st == stBad:
		return wrong(RejectWrongType, "message.role", d.role.kind)
	case d.ended.st == stBad:
		return wrong(RejectWrongType, "message.endedReason", d.ended.kind)
	case d.call.st == stAbsent:
		return &BadInputError{Rejection: RejectNoCallID, Detail: "message.call is missing or null"}
	case d.call.st == stBad:
		return wrong(RejectWrongType, "message.call", d.call.kind)
	case d.id.st == stAbsent:
		return &BadInputError{Rejection: RejectNoCallID, Detail: "message.call.id is missing or null"}
	case d.id.st == stOK && d.callID == "":
		// str decodes only an empty body to "": every byte or escape yields one.
		return &BadInputError{Rejection: RejectNoCallID, Detail: "message.call.id is empty"}
	case d.id.st == stBad:
		return wrong(RejectWrongType, "message.call.id", d.id.kind)
	case d.status.st == stBad:
		return wrong(RejectWrongType, "message.call.status", d.status.kind)
	case d.team.st == stBad:
		return wrong(RejectWrongType, "message.call.teamId", d.team.kind)
	case d.org.st == stBad:
		return wrong(RejectWrongType, "message.call.orgId", d.org.kind)
	case d.assistantID.st == stBad:
		return wrong(RejectWrongType, "message.call.assistantId", d.assistantID.kind)
	case d.callEnded.st == stBad:
		return wrong(RejectWrongType, "message.call.endedReason", d.callEnded.kind)
	}

	// The history: message.messages, else message.artifact.messages, else call.messages.
	src := -1
	switch {
	case d.hist[fromMessage].st != stAbsent:
		src = fromMessage
	case d.artifact.st == stBad:
		return wrong(RejectWrongType, "message.artifact", d.artifact.kind)
	case d.hist[fromArtifact].st != stAbsent:
		src = fromArtifact
	case d.hist[fromCall].st != stAbsent:
		src = fromCall
	}
	ev := d.ev
	var h *history
	if src >= 0 {
		h = &d.hist[src]
		if h.st == stBad {
			return wrong(RejectMessagesNotArray, sourcePaths[src], h.kind)
		}
		if !h.decoded {
			// Skipped while a preferred history was present, which a later duplicate key
			// took back: decode it now. It is valid already.
			d.decodeHistory(int(h.span.start), h.depth, h)
		}
		if h.bad.fields != 0 {
			return h.bad.err(sourcePaths[src])
		}
		ev.HasHistory, ev.Count = true, h.count
		ev.Messages = compact(ev.Messages, h.lo, h.hi)
		if h.tlo > 0 {
			for k := range ev.Messages {
				if m := &ev.Messages[k]; m.Role == detector.RoleToolCall || m.Role == detector.RoleToolResult {
					m.ToolLo -= int32(h.tlo)
					m.ToolHi -= int32(h.tlo)
				}
			}
		}
		ev.Tools = compact(ev.Tools, h.tlo, h.thi)
	} else {
		ev.Messages, ev.Tools = ev.Messages[:0], ev.Tools[:0]
	}

	ev.Type = d.typeVal
	ev.Time = d.time
	ev.Status = d.statusVal
	// A status-update's message.status wins over call.status, but only a status it
	// knows, and never over a call.status that ends the call: the call ends when either
	// says so (SPEC §2), and Vapi has statuses (ringing, not-found, ...) hangwatch does
	// not read.
	if d.typeVal == detector.TypeStatusUpdate && d.msgStatus.st == stOK &&
		d.msgStatusVal != detector.StatusUnknown && !d.statusVal.Ends() {
		ev.Status = d.msgStatusVal
	}
	ev.Speech = d.typeVal == detector.TypeSpeechUpdate && d.started && d.assistant
	ev.CallID = d.callID
	team := d.teamRaw
	if team.s.len() == 0 {
		team = d.orgRaw
	}
	ev.TeamID = d.str(team)
	ev.AssistantID = d.str(d.aRaw)
	ev.EndedReason = d.str(d.endedRaw)
	if ev.EndedReason == "" {
		ev.EndedReason = d.str(d.callEndedRaw)
	}

	p := &Payload{
		data:        d.data,
		call:        d.callSpan,
		cut:         d.cut,
		assistant:   d.assistantSpan,
		phone:       d.phone,
		customer:    d.customer,
		analysis:    d.analysis,
		phoneNumber: d.phoneNumber,
		provider:    d.provider,
		model:       d.model,
		teamID:      ev.TeamID,
		assistantID: ev.AssistantID,
	}
	if h != nil {
		p.messages = h.span
	}
	ev.Payload = p
	return nil
}

// compact moves s[lo:hi] to the front of s and returns it.
func compact[T any](s []T, lo, hi int) []T {
	if lo > 0 {
		copy(s, s[lo:hi])
	}
	return s[:hi-lo]
}
