package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
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
	// Spans are 32-bit and Event.Messages is an int32 (an element takes two bytes).
	l.MaxBytes = min(l.MaxBytes, math.MaxInt32)
	if l.MaxDepth <= 0 {
		l.MaxDepth = defaultMaxDepth
	}
	l.MaxDepth = min(l.MaxDepth, maxMaxDepth)
	return l
}

// Decode parses one wire event (SPEC §1) into ev. It resets ev first, keeping the
// capacity of ev.Stretches, and sets every field but Received and Done. ev.Payload is a
// *Payload over data, which must not be modified afterwards: strings in ev and in the
// payload may alias it.
//
// The whole payload is validated as JSON in a single pass, and only the fields that
// detection reads are decoded. An error is a *BadInputError; ev is then left reset.
// Syntax errors and nesting take precedence over the type errors of the fields, which
// are reported in a fixed order: message, message.type, message.call, call.id,
// call.status, call.teamId, call.assistantId, then the history.
func Decode(ev *detector.Event, data []byte, lim Limits) error {
	ev.Reset()
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return &BadInputError{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(data), lim.MaxBytes)}
	}
	d := decoder{data: data, maxDepth: lim.MaxDepth, ev: ev}
	if err := d.decode(); err != nil {
		ev.Reset()
		return err
	}
	return nil
}

// state is what a field that detection reads turned out to be. Since the last of
// duplicate keys wins, each field keeps its own state, judged once the event is read.
type state uint8

const (
	stAbsent state = iota // missing, or null
	stOK
	stBad // a JSON type that the field cannot have
)

// field is the state of one field and, when bad, the first byte of its value (which
// names its JSON type in the error).
type field struct {
	st   state
	kind byte
}

// Fields of a history element, as bits of element.bad, in the order errors name them.
const (
	elID = 1 << iota
	elRole
	elText
	elTimestamp
	elSelf // the element is not an object
)

var elNames = [...]string{"messageId", "role", "text", "timestamp"}

// kindRange stands for the kind of a timestamp out of the float64 range.
const kindRange = 'R'

// history is the decoded state of one messages array (message.messages or
// call.messages). Its stretches are ev.Stretches[lo:hi].
type history struct {
	field
	span   span
	count  int32
	lo, hi int
	// The first element with a wrong type, if any: its bad fields and their kinds.
	bad      uint8
	badKinds [5]byte
	badIndex int32
}

// element is what detection reads of one history element.
type element struct {
	id       []byte
	idEsc    bool
	role     detector.Role
	nonEmpty bool
	hasTime  bool
	time     int64
	// bad has a bit per field with a wrong type; kinds[k] names the type of field 1<<k.
	bad   uint8
	kinds [5]byte
}

// msgState is what Decode reads of message. A later duplicate key message replaces it
// whole, so it is reset with one assignment.
type msgState struct {
	typ, call                            field
	typeVal                              detector.Type
	msgs                                 history
	assistant, phone, customer, analysis span
	callState
}

// callState is what Decode reads of message.call, which a later duplicate key call
// replaces whole.
type callState struct {
	id, status, team, assistantID field
	statusVal                     detector.Status
	callID, teamID, aID           string
	callMsgs                      history
	callSpan                      span
}

// decoder is the state of one call of Decode. It lives on Decode's stack.
type decoder struct {
	data     []byte
	maxDepth int
	ev       *detector.Event

	// The first syntax or nesting error; -1 is returned up the call chain.
	fail   Reason
	failAt int

	top, message field
	msgState

	// Kinds of the open containers of skipValue, one bit per depth.
	stack [16]uint64
	deep  []uint64
	buf   cmpBuf
}

// syntax records a syntax error at i and returns -1, which callers pass up.
func (d *decoder) syntax(i int) int {
	d.fail, d.failAt = ReasonNotJSON, i
	return -1
}

// tooDeep records a container at i nested too deep and returns -1.
func (d *decoder) tooDeep(i int) int {
	d.fail, d.failAt = ReasonTooDeep, i
	return -1
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
	case ReasonNotJSON:
		if d.failAt >= len(data) {
			return &BadInputError{Reason: ReasonNotJSON, Detail: "unexpected end of input"}
		}
		return &BadInputError{Reason: ReasonNotJSON, Detail: fmt.Sprintf("syntax error at offset %d", d.failAt)}
	case ReasonTooDeep:
		return &BadInputError{Reason: ReasonTooDeep, Detail: fmt.Sprintf("nesting deeper than %d at offset %d", d.maxDepth, d.failAt)}
	}
	return d.finish()
}

// at returns data[i], or 0 past the end.
func at(data []byte, i int) byte {
	if i < len(data) {
		return data[i]
	}
	return 0
}

// next steps over the white space and the comma or the closing byte after a value in a
// container. It returns the index of the next value (or key) and true, or the index past
// the container and false.
func (d *decoder) next(i int, closing byte) (int, bool) {
	data := d.data
	i = skipWS(data, i)
	if i < len(data) {
		if data[i] == ',' {
			return skipWS(data, i+1), true
		}
		if data[i] == closing {
			return i + 1, false
		}
	}
	return d.syntax(i), false
}

// member scans `"key":` at i and returns the key, for comparison only (it may live in
// d.buf), and the index of the value.
func (d *decoder) member(i int) (string, int) {
	data := d.data
	if i >= len(data) || data[i] != '"' {
		return "", d.syntax(i)
	}
	end, esc := scanString(data, i+1)
	if end < 0 {
		return "", d.syntax(i)
	}
	key := cmpStr(data[i+1:end-1], esc, &d.buf)
	j := skipWS(data, end)
	if j >= len(data) || data[j] != ':' {
		return "", d.syntax(j)
	}
	return key, skipWS(data, j+1)
}

// skipKey scans `"key":` at i and returns the index of the value. The key is scanned
// inline, eight bytes at a time, as keys are most of the strings of an event.
func (d *decoder) skipKey(i int) int {
	data := d.data
	if i >= len(data) || data[i] != '"' {
		return d.syntax(i)
	}
	j := i + 1
	for j+8 <= len(data) {
		m := stopMask(binary.LittleEndian.Uint64(data[j:]))
		if m == 0 {
			j += 8
			continue
		}
		j += bits.TrailingZeros64(m) >> 3
		if data[j] != '"' {
			break // an escape, or an error: the general scan decides
		}
		if j+1 < len(data) && data[j+1] == ':' {
			return skipWS(data, j+2)
		}
		return d.colon(j + 1)
	}
	end, _ := scanString(data, i+1)
	if end < 0 {
		return d.syntax(i)
	}
	return d.colon(end)
}

// colon scans the white space and the colon after a key at i and returns the index of
// the value.
func (d *decoder) colon(i int) int {
	data := d.data
	i = skipWS(data, i)
	if i >= len(data) || data[i] != ':' {
		return d.syntax(i)
	}
	return skipWS(data, i+1)
}

// enter checks that a container opened at i, inside depth open containers, is allowed.
func (d *decoder) enter(i, depth int) bool {
	if depth >= d.maxDepth {
		d.tooDeep(i)
		return false
	}
	return true
}

// open begins the value at i, inside depth open containers, that must be a container
// opened by the byte open. When it is one, and may be entered, open sets f to present
// and returns true: the caller decodes the container from i. Otherwise it sets f to
// absent (null) or wrong (anything else), skips the value and returns false with the
// index past it, or -1 on an error.
func (d *decoder) open(i, depth int, open byte, f *field) (int, bool) {
	switch c := at(d.data, i); c {
	case open:
		if !d.enter(i, depth) {
			return -1, false
		}
		*f = field{st: stOK}
		return i, true
	case 'n':
		*f = field{}
		if j := scanNull(d.data, i); j >= 0 {
			return j, false
		}
		return d.syntax(i), false
	default:
		*f = field{stBad, c}
		return d.skipValue(i, depth), false
	}
}

// skipValue validates the value at i, inside depth open containers, and returns the
// index past it. It keeps the kind of each open container in a bit stack instead of
// recursing.
func (d *decoder) skipValue(i, depth int) int {
	data := d.data
	n := len(data)
	base := depth
	obj := false
	for {
		if i >= n {
			return d.syntax(i)
		}
		switch data[i] {
		case '"':
			j, _ := scanString(data, i+1)
			if j < 0 {
				return d.syntax(i)
			}
			i = j
		case '{':
			if depth >= d.maxDepth {
				return d.tooDeep(i)
			}
			d.push(depth, obj)
			depth++
			obj = true
			i = skipWS(data, i+1)
			if i < n && data[i] == '}' {
				i++
				depth--
				obj = d.kind(depth)
				break
			}
			if i = d.skipKey(i); i < 0 {
				return i
			}
			continue
		case '[':
			if depth >= d.maxDepth {
				return d.tooDeep(i)
			}
			d.push(depth, obj)
			depth++
			obj = false
			i = skipWS(data, i+1)
			if i < n && data[i] == ']' {
				i++
				depth--
				obj = d.kind(depth)
				break
			}
			continue
		case 't', 'f', 'n':
			j := scanLiteral(data, i)
			if j < 0 {
				return d.syntax(i)
			}
			i = j
		default:
			j := scanNumber(data, i)
			if j < 0 {
				return d.syntax(i)
			}
			i = j
		}
		// After a value: close containers until one continues.
		for {
			if depth == base {
				return i
			}
			if i < n && data[i] == ',' {
				// The compact case.
				i++
			} else {
				i = skipWS(data, i)
				if i >= n {
					return d.syntax(i)
				}
				c := data[i]
				if c != ',' {
					if (obj && c == '}') || (!obj && c == ']') {
						i++
						depth--
						obj = d.kind(depth)
						continue
					}
					return d.syntax(i)
				}
				i++
			}
			i = skipWS(data, i)
			if obj {
				if i = d.skipKey(i); i < 0 {
					return i
				}
			}
			break
		}
	}
}

// push records whether the container at depth (the parent of the one being opened) is
// an object.
func (d *decoder) push(depth int, obj bool) {
	u := uint(depth)
	if u >= uint(len(d.stack))*64 {
		d.pushDeep(u, obj)
		return
	}
	bit := uint64(1) << (u & 63)
	if obj {
		d.stack[u>>6] |= bit
	} else {
		d.stack[u>>6] &^= bit
	}
}

func (d *decoder) pushDeep(u uint, obj bool) {
	u -= uint(len(d.stack)) * 64
	for uint(len(d.deep))*64 <= u {
		d.deep = append(d.deep, 0)
	}
	bit := uint64(1) << (u & 63)
	if obj {
		d.deep[u>>6] |= bit
	} else {
		d.deep[u>>6] &^= bit
	}
}

// kind reports whether the container at depth is an object.
func (d *decoder) kind(depth int) bool {
	u := uint(depth)
	if u >= uint(len(d.stack))*64 {
		u -= uint(len(d.stack)) * 64
		return d.deep[u>>6]>>(u&63)&1 != 0
	}
	return d.stack[u>>6]>>(u&63)&1 != 0
}

// spanValue validates the value at i and records its span.
func (d *decoder) spanValue(i, depth int, s *span) int {
	j := d.skipValue(i, depth)
	if j >= 0 {
		*s = span{uint32(i), uint32(j)}
	}
	return j
}

// stringValue reads a string-or-null field at i. It returns the string body, whether it
// has escapes, and the index past the value; f is set to the field's state. The body is
// nil unless the value is a string, so that a null or bad field reads as "".
func (d *decoder) stringValue(i, depth int, f *field) ([]byte, bool, int) {
	data := d.data
	if i < len(data) {
		switch data[i] {
		case '"':
			end, esc := scanString(data, i+1)
			if end < 0 {
				return nil, false, d.syntax(i)
			}
			*f = field{st: stOK}
			return data[i+1 : end-1], esc, end
		case 'n':
			*f = field{}
			j := scanNull(data, i)
			if j < 0 {
				return nil, false, d.syntax(i)
			}
			return nil, false, j
		}
	}
	*f = field{stBad, at(data, i)}
	return nil, false, d.skipValue(i, depth)
}

// decodeTop decodes the top-level object at i.
func (d *decoder) decodeTop(i int) int {
	if !d.enter(i, 0) {
		return -1
	}
	d.top = field{st: stOK}
	i = skipWS(d.data, i+1)
	if i < len(d.data) && d.data[i] == '}' {
		return i + 1
	}
	for more := true; more; {
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
	data := d.data
	d.msgState = msgState{}
	d.ev.Stretches = d.ev.Stretches[:0]
	if j, ok := d.open(i, depth, '{', &d.message); !ok {
		return j
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for more := true; more; {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		switch key {
		case "type":
			var raw []byte
			var esc bool
			raw, esc, i = d.stringValue(vi, depth+1, &d.typ)
			d.typeVal = eventType(cmpStr(raw, esc, &d.buf))
		case "call":
			i = d.decodeCall(vi)
		case "messages":
			i = d.decodeHistory(vi, depth+1, &d.msgs, &d.callMsgs)
		case "assistant":
			i = d.spanValue(vi, depth+1, &d.assistant)
		case "phone":
			i = d.spanValue(vi, depth+1, &d.phone)
		case "customer":
			i = d.spanValue(vi, depth+1, &d.customer)
		case "analysis":
			i = d.spanValue(vi, depth+1, &d.analysis)
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

func eventType(s string) detector.Type {
	switch s {
	case "conversation-update":
		return detector.TypeConversationUpdate
	case "status-update":
		return detector.TypeStatusUpdate
	case "end-of-call-report":
		return detector.TypeEndOfCallReport
	case "hang", "hang-resolved":
		return detector.TypeOutput
	}
	return detector.TypeOther
}

// callStatus reads call.status, case-insensitively like detector.ParseRole reads a role.
func callStatus(s string) detector.Status {
	switch {
	case strings.EqualFold(s, "ongoing"):
		return detector.StatusOngoing
	case strings.EqualFold(s, "finished"):
		return detector.StatusFinished
	case strings.EqualFold(s, "queued"):
		return detector.StatusQueued
	case strings.EqualFold(s, "forwarded"):
		return detector.StatusForwarded
	}
	return detector.StatusUnknown
}

// decodeCall decodes the value of message.call at i.
func (d *decoder) decodeCall(i int) int {
	const depth = 2
	data := d.data
	d.callState = callState{}
	if j, ok := d.open(i, depth, '{', &d.call); !ok {
		return j
	}
	start := i
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
		d.callSpan = span{uint32(start), uint32(i)}
		return i
	}
	for more := true; more; {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
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
			raw, esc, i = d.stringValue(vi, depth+1, &d.team)
			d.teamID = str(raw, esc)
		case "assistantId":
			raw, esc, i = d.stringValue(vi, depth+1, &d.assistantID)
			d.aID = str(raw, esc)
		case "messages":
			i = d.decodeHistory(vi, depth+1, &d.callMsgs, &d.msgs)
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
	d.callSpan = span{uint32(start), uint32(i)}
	return i
}

// decodeHistory decodes a messages array at i into h; other is the other history,
// whose stretches, if any, must be kept.
func (d *decoder) decodeHistory(i, depth int, h, other *history) int {
	data := d.data
	ev := d.ev
	*h = history{}
	if j, ok := d.open(i, depth, '[', &h.field); !ok {
		return j
	}
	start := i
	// Stretches go after those of the other history, if it has any.
	if other.st == stOK {
		h.lo = other.hi
	}
	// The history's stretches are built by detector.AddMessage, the one definition of
	// the rules, in st: the free capacity of ev.Stretches after h.lo.
	st := ev.Stretches[h.lo:h.lo]
	var (
		el  element
		idx int32
	)
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for more := true; more; idx++ {
			if at(data, i) != '{' {
				if h.bad == 0 {
					h.bad, h.badIndex = elSelf, idx
					h.badKinds[4] = at(data, i)
				}
				i = d.skipValue(i, depth+1)
			} else {
				el = element{}
				i = d.decodeElement(i, depth+1, &el)
				if i < 0 {
					return i
				}
				switch {
				case el.bad != 0:
					if h.bad == 0 {
						h.bad, h.badKinds, h.badIndex = el.bad, el.kinds, idx
					}
				case el.nonEmpty && el.role != detector.RoleOther:
					// Only a turn needs its id: build it (which may allocate) then.
					st = detector.AddMessage(st, el.role, true, detector.Turn{ID: str(el.id, el.idEsc), Index: idx, HasTime: el.hasTime, Time: el.time})
				}
			}
			if i < 0 {
				return i
			}
			if i, more = d.next(i, ']'); i < 0 {
				return i
			}
		}
	}
	// st is in place unless AddMessage outgrew the capacity; then this joins the other
	// history's stretches (in place, the copy is onto itself).
	ev.Stretches = append(ev.Stretches[:h.lo], st...)
	h.hi = len(ev.Stretches)
	h.count = idx
	h.span = span{uint32(start), uint32(i)}
	return i
}

// decodeElement decodes the history element (an object) at i into el.
func (d *decoder) decodeElement(i, depth int, el *element) int {
	data := d.data
	if !d.enter(i, depth) {
		return -1
	}
	depth++
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for more := true; more; {
		key, vi := d.member(i)
		if vi < 0 {
			return vi
		}
		var f field
		switch key {
		case "messageId":
			el.id, el.idEsc, i = d.stringValue(vi, depth, &f)
			elementField(el, elID, f)
		case "role":
			var raw []byte
			var esc bool
			raw, esc, i = d.stringValue(vi, depth, &f)
			el.role = detector.ParseRole(cmpStr(raw, esc, &d.buf))
			elementField(el, elRole, f)
		case "text":
			var raw []byte
			raw, _, i = d.stringValue(vi, depth, &f)
			el.nonEmpty = nonEmpty(raw)
			elementField(el, elText, f)
		case "timestamp":
			i = d.timestamp(vi, depth, el)
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
	return i
}

// elementField records the state of a field of el: a later duplicate key clears the
// error of an earlier one, as the last key wins.
func elementField(el *element, which uint8, f field) {
	if f.st == stBad {
		el.bad |= which
		el.kinds[bits.TrailingZeros8(which)] = f.kind
	} else {
		el.bad &^= which
	}
}

// timestamp reads message.messages[].timestamp at i into el.
func (d *decoder) timestamp(i, depth int, el *element) int {
	data := d.data
	el.hasTime, el.time = false, 0
	switch c := at(data, i); {
	case c == '-' || c-'0' <= 9:
		j := scanNumber(data, i)
		if j < 0 {
			return d.syntax(i)
		}
		t, ok := parseTime(data[i:j])
		if !ok {
			elementField(el, elTimestamp, field{stBad, kindRange})
			return j
		}
		el.hasTime, el.time = true, t
		elementField(el, elTimestamp, field{st: stOK})
		return j
	case c == 'n':
		elementField(el, elTimestamp, field{})
		if j := scanNull(data, i); j >= 0 {
			return j
		}
		return d.syntax(i)
	default:
		elementField(el, elTimestamp, field{stBad, c})
		return d.skipValue(i, depth)
	}
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
		var v int64
		k := 0
		for ; k < len(digits); k++ {
			c := digits[k] - '0'
			if c > 9 {
				break
			}
			v = v*10 + int64(c)
		}
		if k == len(digits) {
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

// finish judges the fields in a fixed order and fills the event.
func (d *decoder) finish() error {
	switch {
	case d.top.st == stBad:
		return wrong(ReasonNoMessage, "event", d.top.kind)
	case d.message.st == stAbsent:
		return &BadInputError{Reason: ReasonNoMessage, Detail: "message is missing or null"}
	case d.message.st == stBad:
		return wrong(ReasonWrongType, "message", d.message.kind)
	case d.typ.st == stBad:
		return wrong(ReasonWrongType, "message.type", d.typ.kind)
	case d.call.st == stAbsent:
		return &BadInputError{Reason: ReasonNoCallID, Detail: "message.call is missing or null"}
	case d.call.st == stBad:
		return wrong(ReasonWrongType, "message.call", d.call.kind)
	case d.id.st == stAbsent:
		return &BadInputError{Reason: ReasonNoCallID, Detail: "message.call.id is missing or null"}
	case d.id.st == stOK && d.callID == "":
		// str decodes only an empty body to "": every byte or escape yields one.
		return &BadInputError{Reason: ReasonNoCallID, Detail: "message.call.id is empty"}
	case d.id.st == stBad:
		return wrong(ReasonWrongType, "message.call.id", d.id.kind)
	case d.status.st == stBad:
		return wrong(ReasonWrongType, "message.call.status", d.status.kind)
	case d.team.st == stBad:
		return wrong(ReasonWrongType, "message.call.teamId", d.team.kind)
	case d.assistantID.st == stBad:
		return wrong(ReasonWrongType, "message.call.assistantId", d.assistantID.kind)
	}
	h, path := &d.msgs, "message.messages"
	if h.st == stAbsent {
		h, path = &d.callMsgs, "message.call.messages"
	}
	switch {
	case h.st == stBad:
		return wrong(ReasonMessagesNotArray, path, h.kind)
	case h.bad == elSelf:
		return wrong(ReasonWrongType, fmt.Sprintf("%s[%d]", path, h.badIndex), h.badKinds[4])
	case h.bad != 0:
		k := bits.TrailingZeros8(h.bad)
		return wrong(ReasonWrongType, fmt.Sprintf("%s[%d].%s", path, h.badIndex, elNames[k]), h.badKinds[k])
	}

	ev := d.ev
	ev.Type = d.typeVal
	ev.Status = d.statusVal
	ev.CallID = d.callID
	ev.Messages = h.count
	if h.lo > 0 {
		n := copy(ev.Stretches, ev.Stretches[h.lo:h.hi])
		ev.Stretches = ev.Stretches[:n]
	} else {
		ev.Stretches = ev.Stretches[:h.hi]
	}
	ev.Payload = &Payload{
		data:        d.data,
		call:        d.callSpan,
		assistant:   d.assistant,
		messages:    h.span,
		phone:       d.phone,
		customer:    d.customer,
		analysis:    d.analysis,
		teamID:      d.teamID,
		assistantID: d.aID,
	}
	return nil
}

func wrong(r Reason, path string, kind byte) error {
	return &BadInputError{Reason: r, Detail: path + " is " + kindName(kind)}
}

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
