package wire

import (
	"sync"
	"unsafe"

	"github.com/klauspost/compress/s2"

	"github.com/hangwatch/hangwatch/detector"
)

// Payload is a decoded event as its outputs will carry it: the received bytes, and the
// spans of the values passed through untouched. Decode makes it over the received
// buffer; Retain and RetainCall make compact copies that own their bytes. It is
// read-only and safe for concurrent readers.
type Payload struct {
	data []byte

	// call is message.call; cut the member messages inside it, with its comma, which an
	// output leaves out (zero: none). A retained copy holds the call without it.
	call, cut span
	// assistant, phone, customer, analysis and phoneNumber are the values of message.*;
	// messages the array of the history that was read (message.messages, else
	// message.artifact.messages, else call.messages).
	assistant, messages                    span
	phone, customer, analysis, phoneNumber span

	// provider and model are the strings of assistant.model, for hang.model.
	provider, model strRef

	// teamID is call.teamId, else call.orgId; assistantID call.assistantId.
	teamID, assistantID string

	// omitted is the number of leading messages of the history that a retained copy
	// left out.
	omitted int32

	// A retained copy may be packed: packed is then an s2 block of the first base bytes
	// of its bytes (the passed-through values, which the spans above index), and data
	// only the bytes after them (copies of the model's strings, which provider and model
	// then index, and the ids). Spans and string references keep their offsets in the
	// bytes as a whole: data starts at offset base. A payload that is not packed has
	// base 0.
	packed []byte
	base   uint32
	// copied says that Retain made the payload, which Pack may then pack.
	copied bool
}

var _ detector.Payload = (*Payload)(nil)

// Len is the number of bytes the payload retains: its bytes (the received buffer, or
// a retained copy's own), and itself.
func (p *Payload) Len() int { return len(p.packed) + len(p.data) + payloadSize }

const payloadSize = int(unsafe.Sizeof(Payload{}))

// TeamID returns call.teamId, else call.orgId, or "" when the call has neither. It may
// alias the payload.
func (p *Payload) TeamID() string { return p.teamID }

// AssistantID returns call.assistantId, or "". It may alias the payload.
func (p *Payload) AssistantID() string { return p.assistantID }

// Model returns assistant.model.provider and assistant.model.model, "" where the event
// has none (or not as a string). They may alias the payload.
func (p *Payload) Model() (provider, model string) {
	return p.str(p.provider), p.str(p.model)
}

// Omitted returns the number of leading messages of the history that Retain left out.
func (p *Payload) Omitted() int { return int(p.omitted) }

func (p *Payload) str(r strRef) string {
	if !r.ok {
		return ""
	}
	return str(p.data[r.s.start-p.base:r.s.end-p.base], r.esc)
}

// raw returns the raw body of a string of the payload, non-nil when it is one.
func (p *Payload) raw(r strRef) []byte {
	if !r.ok {
		return nil
	}
	return p.data[r.s.start-p.base : r.s.end-p.base : r.s.end-p.base]
}

// value returns the raw bytes of a span, or nil when it is absent.
func (p *Payload) value(s span) []byte {
	if s.end == 0 {
		return nil
	}
	return p.data[s.start:s.end:s.end]
}

// callParts returns the call object as two runs of bytes, around the messages member
// it leaves out; nil when the event has no call object.
func (p *Payload) callParts() (head, tail []byte) {
	if p.call.end == 0 {
		return nil, nil
	}
	if p.cut.end == 0 {
		return p.value(p.call), nil
	}
	return p.data[p.call.start:p.cut.start:p.cut.start], p.data[p.cut.end:p.call.end:p.call.end]
}

// historyFrom returns the history without its first skip elements: the bytes from the
// first element kept to the end of the array (nil when it keeps none), and the number
// of elements left out.
func historyFrom(hist []byte, skip int32) ([]byte, int32) {
	if hist == nil || skip <= 0 {
		return hist, 0
	}
	var k int32
	start := -1
	elements(hist, 0, func(s int) bool {
		if k == skip {
			start = s
			return false
		}
		k++
		return true
	})
	switch {
	case k == 0:
		return hist, 0 // an empty array
	case start < 0:
		return nil, k
	}
	return hist[start:], skip
}

// Retain returns a compact copy of the payload that holds only what an output carries:
// the call without its messages member, the assistant, the history from the element at
// index from of the messages array on (from <= 0: the whole history), phone, customer,
// analysis and phoneNumber. The copy shares no bytes with p, so that the buffer the event
// was received in can be freed, and it records how many leading messages it left out
// (SPEC §2 "Bounds": a newly armed call past the byte budget keeps only the tail of its
// history). Indexes are those of the array as received: a copy retained again leaves out
// only the messages it still holds before from. The copy is not packed (see Pack).
func (p *Payload) Retain(from int32) detector.Payload { return p.retain(from, nil) }

// retain is Retain, into buf when it has room (a scratch buffer, which the copy then
// shares), else into bytes of its own.
func (p *Payload) retain(from int32, buf []byte) *Payload {
	if p.packed != nil {
		var v Payload
		if _, ok := p.unpack(&v, nil); !ok {
			return p.RetainCall().(*Payload) // not reached: Pack made the block
		}
		return v.retain(from, nil)
	}
	head, tail := p.callParts()
	hist, dropped := p.value(p.messages), int32(0)
	full := true // hist is the whole array, brackets included
	if from > p.omitted && hist != nil {
		hist, dropped = historyFrom(hist, from-p.omitted)
		full = dropped == 0
	}
	n := len(head) + len(tail) + len(hist) + len(p.teamID) + len(p.assistantID)
	for _, s := range [...]span{p.assistant, p.phone, p.customer, p.analysis, p.phoneNumber} {
		n += s.len()
	}
	if !full {
		n += 2 // "[" before the elements kept, or "[]" for none
	}
	// The model's strings lie within the assistant, except in a payload unpacked from a
	// packed copy, which holds them after its values: there, they are copied again.
	inside := func(r strRef) bool { return r.s.start >= p.assistant.start && r.s.end <= p.assistant.end }
	if p.assistant.end != 0 {
		for _, r := range [...]strRef{p.provider, p.model} {
			if r.ok && !inside(r) {
				n += r.s.len()
			}
		}
	}
	b := buf[:0]
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	q := &Payload{omitted: p.omitted + dropped, copied: true}
	q.call, b = appendSpan(b, head, tail)
	q.assistant, b = appendSpan(b, p.value(p.assistant), nil)
	switch {
	case full:
		q.messages, b = appendSpan(b, hist, nil)
	case hist == nil:
		q.messages, b = appendSpan(b, []byte("[]"), nil)
	default:
		q.messages, b = appendSpan(b, []byte("["), hist)
	}
	q.phone, b = appendSpan(b, p.value(p.phone), nil)
	q.customer, b = appendSpan(b, p.value(p.customer), nil)
	q.analysis, b = appendSpan(b, p.value(p.analysis), nil)
	q.phoneNumber, b = appendSpan(b, p.value(p.phoneNumber), nil)
	if q.assistant.end != 0 {
		for _, m := range [...]struct{ from, to *strRef }{{&p.provider, &q.provider}, {&p.model, &q.model}} {
			r := *m.from
			switch {
			case !r.ok:
			case inside(r):
				*m.to = strRef{s: span{r.s.start - p.assistant.start + q.assistant.start, r.s.end - p.assistant.start + q.assistant.start}, esc: r.esc, ok: true}
			default:
				start := len(b)
				b = append(b, p.raw(r)...)
				*m.to = strRef{s: span{uint32(start), uint32(len(b))}, esc: r.esc, ok: true}
			}
		}
	}
	q.teamID, q.assistantID, b = appendStrings(b, p.teamID, p.assistantID)
	q.data = b
	return q
}

// Pack returns a packed copy of p, a copy that Retain made: its values compressed with
// s2, which AppendOutput unpacks into a scratch buffer. It returns nil when p is packed
// already, or when packing would not save an eighth of it (or it is smaller than
// packMin). The engine packs what a call has kept for a while: most copies are let go
// within a second or two, and outputs, which unpack, are rare next to arms.
//
// A payload as decoded (which the engine keeps instead of a copy when the received
// bytes never change: see engine.Lasting) is made compact first, as Retain(-1) does; the
// compact copy is returned when packing it would not pay, so that the received bytes
// are let go either way.
func (p *Payload) Pack() detector.Payload {
	if p.packed != nil {
		return nil
	}
	if !p.copied {
		// Made compact in a scratch buffer, which the packed copy does not share.
		sb := getScratch(len(p.data) + len(p.teamID) + len(p.assistantID))
		q := p.retain(-1, *sb).Pack()
		putScratch(sb)
		if q == nil {
			return p.Retain(-1)
		}
		return q
	}
	n := 0 // the values end where the strings after them (model, ids) begin
	for _, s := range [...]span{p.call, p.assistant, p.messages, p.phone, p.customer, p.analysis, p.phoneNumber} {
		n = max(n, int(s.end))
	}
	if n < packMin {
		return nil
	}
	zb := getScratch(s2.MaxEncodedLen(n))
	defer putScratch(zb)
	z := s2.Encode((*zb)[:cap(*zb)], p.data[:n])
	if len(z) > n-n/8 {
		return nil
	}
	q := *p
	q.pack(z, n, p.raw(p.provider), p.raw(p.model), p.teamID, p.assistantID)
	return &q
}

// packMin is the smallest copy Pack packs: below it, s2 saves little. (A variable, for
// the tests.)
var packMin = 1 << 10

// pack makes q a packed copy: z is the s2 block of the n bytes of the values whose spans
// q holds. The strings of the model (the bytes of q.provider and q.model) are copied
// after the block, with the ids; all in one allocation.
func (q *Payload) pack(z []byte, n int, provider, model []byte, teamID, assistantID string) {
	c := make([]byte, len(z), len(z)+len(provider)+len(model)+len(teamID)+len(assistantID))
	copy(c, z)
	q.packed, q.base = c[:len(z):len(z)], uint32(n)
	d := c[len(z):]
	at := func(r *strRef, s []byte) {
		if r.ok {
			start := q.base + uint32(len(d))
			d = append(d, s...)
			r.s = span{start, q.base + uint32(len(d))}
		}
	}
	at(&q.provider, provider)
	at(&q.model, model)
	q.teamID, q.assistantID, d = appendStrings(d, teamID, assistantID)
	q.data = d
}

// unpack makes v the payload p as one that is not packed, its bytes in buf (grown when
// too small), which it returns. It reports false when p's block does not decode (not
// reached: Retain made it), v then holds nothing. v aliases p and buf.
func (p *Payload) unpack(v *Payload, buf []byte) ([]byte, bool) {
	*v = Payload{}
	if n, err := s2.DecodedLen(p.packed); err != nil || n != int(p.base) {
		return buf, false
	}
	if need := int(p.base) + len(p.data); cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	a, err := s2.Decode(buf[:cap(buf)], p.packed)
	if err != nil {
		return buf, false
	}
	*v = *p
	v.data = append(a, p.data...) // within buf's capacity
	v.packed, v.base = nil, 0
	return v.data, true
}

// scratch holds the buffers that Retain packs from and AppendOutput unpacks into.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// getScratch returns a buffer of scratch with room for n bytes.
func getScratch(n int) *[]byte {
	b := scratch.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	return b
}

func putScratch(b *[]byte) { scratch.Put(b) }

// RetainCall returns a compact copy of the payload that holds only its call object
// (without its messages member) and the ids read from it: what the latest event of a
// call gives an output. It shares no bytes with p.
func (p *Payload) RetainCall() detector.Payload {
	head, tail := p.callParts()
	b := make([]byte, 0, len(head)+len(tail)+len(p.teamID)+len(p.assistantID))
	q := &Payload{}
	q.call, b = appendSpan(b, head, tail)
	q.teamID, q.assistantID, b = appendStrings(b, p.teamID, p.assistantID)
	q.data = b
	return q
}

// appendSpan appends a value made of two runs of bytes and returns its span; the zero
// span when both are nil.
func appendSpan(b, x, y []byte) (span, []byte) {
	if x == nil && y == nil {
		return span{}, b
	}
	start := len(b)
	b = append(append(b, x...), y...)
	return span{uint32(start), uint32(len(b))}, b
}

// appendStrings appends the bytes of two strings to b, which must have room for them,
// and returns strings over the copies.
func appendStrings(b []byte, x, y string) (string, string, []byte) {
	start := len(b)
	b = append(append(b, x...), y...)
	return view(b[start : start+len(x)]), view(b[start+len(x):]), b
}

// view returns a string over b, which must never change.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
