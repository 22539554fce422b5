package wire

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hangwatch/hangwatch/detector"
)

// AppendOutput appends the event of an output (SPEC §3: hang, hang-resolved or
// hang-unresolved) to dst. The passed-through values are copied byte for byte from the
// payloads, which are the *Payload values that Decode or Retain made: call from
// out.Latest (or out.Snapshot, or {"id":callID} when neither has one), without its
// messages member, and assistant, messages, phone, customer and analysis from
// out.Snapshot ({} or [] when absent); phoneNumber (Vapi's) when the snapshot has one.
// The history is carried once, in message.messages, wherever it arrived.
//
// With maxBytes > 0 the output fits in maxBytes: the oldest messages are left out first,
// at element boundaries, then the assistant becomes {}, and as a last resort phone,
// customer and analysis become {}, phoneNumber is left out and call becomes
// {"id":callID}. An output is never dropped: when even that is larger than maxBytes
// (only ids of enormous size can make it so), it is appended all the same. The hang
// object says historyTruncated and omittedMessages when messages were left out, here or
// by Retain.
//
// The result is valid JSON, and AppendOutput does not allocate when dst has room for it
// (and the message ids are of a sane size).
func AppendOutput(dst []byte, callID string, out *detector.Output, maxBytes int) []byte {
	dst, _ = AppendOutputFit(dst, callID, out, maxBytes)
	return dst
}

// AppendOutputFit is AppendOutput, and reports whether the output had to be cut to fit
// in maxBytes (messages, or more, left out), which the metrics count.
func AppendOutputFit(dst []byte, callID string, out *detector.Output, maxBytes int) (_ []byte, cut bool) {
	var o output
	snap, _ := out.Snapshot.(*Payload)
	latest, _ := out.Latest.(*Payload)
	// A packed copy (Retain) is unpacked into a scratch buffer for the time of the write.
	var snapView, latestView Payload
	if snap != nil && snap.packed != nil {
		sb := getScratch(int(snap.base) + len(snap.data))
		defer putScratch(sb)
		packed := snap
		*sb, _ = snap.unpack(&snapView, (*sb)[:0])
		if snap = &snapView; latest == packed {
			latest = snap
		}
	}
	if latest != nil && latest.packed != nil {
		lb := getScratch(int(latest.base) + len(latest.data))
		defer putScratch(lb)
		*lb, _ = latest.unpack(&latestView, (*lb)[:0])
		latest = &latestView
	}
	o.init(callID, out, snap, latest)
	var buf [512]byte
	hang := appendHang(buf[:0], out, o.model)
	o.hangLen = len(hang)
	if maxBytes > 0 && o.size() > maxBytes {
		cut = true
		o.fit(maxBytes)
	}
	return o.append(dst, hang), cut
}

// output is an output in parts, ready to be fitted and written.
type output struct {
	callID  string
	kind    detector.Kind
	millis  int64
	omitted int64 // messages left out, by retention and by fitting

	// callHead and callTail are the call object, around the member left out; both nil
	// for {"id":callID}.
	callHead, callTail []byte
	// messages is the history array, or with open set its elements from the first kept
	// on (after an opening bracket to write); nil for [].
	messages []byte
	open     bool
	// The other values; nil for {}. phoneNumber nil is left out.
	assistant, phone, customer, analysis, phoneNumber []byte
	// model is assistant.model of the snapshot, for the hang object, whose length
	// without its closing brace is hangLen.
	model   model
	hangLen int
}

// model is the provider and the model name of an assistant, raw string bodies.
type model struct{ provider, name []byte }

// init takes the parts of out, whose payloads, not packed, are snap and latest.
func (o *output) init(callID string, out *detector.Output, snap, latest *Payload) {
	o.callID, o.kind = callID, out.Kind
	o.millis = time.Unix(0, out.Wall).UnixMilli()
	if latest != nil {
		o.callHead, o.callTail = latest.callParts()
	}
	if snap != nil {
		if o.callHead == nil {
			o.callHead, o.callTail = snap.callParts()
		}
		o.assistant = snap.value(snap.assistant)
		o.messages = snap.value(snap.messages)
		o.phone = snap.value(snap.phone)
		o.customer = snap.value(snap.customer)
		o.analysis = snap.value(snap.analysis)
		o.phoneNumber = snap.value(snap.phoneNumber)
		o.omitted = int64(snap.omitted)
		if snap.provider.ok || snap.model.ok {
			o.model = model{snap.raw(snap.provider), snap.raw(snap.model)}
		}
	}
}

// appendHang appends the hang object of out without its closing brace.
func appendHang(dst []byte, out *detector.Output, m model) []byte {
	dst = append(dst, `{"reason":"`...)
	dst = append(dst, out.Reason.String()...)
	dst = append(dst, `","stage":"`...)
	dst = append(dst, out.Stage.String()...)
	dst = append(dst, `","userMessageId":`...)
	dst = AppendJSONString(dst, out.UserMessageID)
	dst = append(dst, `,"firstUserMessageId":`...)
	dst = AppendJSONString(dst, out.FirstUserMessageID)
	if out.Kind == detector.KindResolved && out.ReplyMessageID != "" {
		dst = append(dst, `,"replyMessageId":`...)
		dst = AppendJSONString(dst, out.ReplyMessageID)
	}
	dst = append(dst, `,"waitMs":`...)
	dst = strconv.AppendInt(dst, out.Wait.Milliseconds(), 10)
	switch out.Kind {
	case detector.KindResolved:
	case detector.KindUnresolved:
		dst = append(dst, `,"endedReason":`...)
		dst = AppendJSONString(dst, out.EndedReason)
	default:
		dst = append(dst, `,"thresholdMs":`...)
		dst = strconv.AppendInt(dst, out.Threshold.Milliseconds(), 10)
		if out.InputGap > 0 {
			dst = append(dst, `,"inputGapMs":`...)
			dst = strconv.AppendInt(dst, max(out.InputGap.Milliseconds(), 1), 10)
		}
	}
	if m.provider != nil || m.name != nil {
		dst = append(dst, `,"model":{"provider":"`...)
		dst = append(dst, m.provider...)
		dst = append(dst, `","model":"`...)
		dst = append(dst, m.name...)
		dst = append(dst, `"}`...)
	}
	return dst
}

// Constant parts of an output.
const (
	outPrefix      = `{"message":{"timestamp":`
	outType        = `,"type":"`
	outCall        = `","call":`
	outCallID      = `{"id":`
	outAssistant   = `,"assistant":`
	outMessages    = `,"messages":`
	outPhone       = `,"phone":`
	outCustomer    = `,"customer":`
	outAnalysis    = `,"analysis":`
	outPhoneNumber = `,"phoneNumber":`
	outHang        = `,"hang":`
	outTruncated   = `,"historyTruncated":true,"omittedMessages":`
	outEnd         = `}}}`
)

// append writes the output, with the hang object that appendHang made.
func (o *output) append(dst, hang []byte) []byte {
	dst = append(dst, outPrefix...)
	dst = strconv.AppendInt(dst, o.millis, 10)
	dst = append(dst, outType...)
	dst = append(dst, o.kind.String()...)
	dst = append(dst, outCall...)
	if o.callHead != nil {
		dst = append(append(dst, o.callHead...), o.callTail...)
	} else {
		dst = append(dst, outCallID...)
		dst = AppendJSONString(dst, o.callID)
		dst = append(dst, '}')
	}
	dst = appendValue(append(dst, outAssistant...), o.assistant, "{}")
	dst = append(dst, outMessages...)
	switch {
	case o.messages == nil:
		dst = append(dst, "[]"...)
	case o.open:
		dst = append(append(dst, '['), o.messages...)
	default:
		dst = append(dst, o.messages...)
	}
	dst = appendValue(append(dst, outPhone...), o.phone, "{}")
	dst = appendValue(append(dst, outCustomer...), o.customer, "{}")
	dst = appendValue(append(dst, outAnalysis...), o.analysis, "{}")
	if o.phoneNumber != nil {
		dst = append(append(dst, outPhoneNumber...), o.phoneNumber...)
	}
	dst = append(append(dst, outHang...), hang...)
	if o.omitted > 0 {
		dst = strconv.AppendInt(append(dst, outTruncated...), o.omitted, 10)
	}
	return append(dst, outEnd...)
}

func appendValue(dst, v []byte, absent string) []byte {
	if v == nil {
		return append(dst, absent...)
	}
	return append(dst, v...)
}

// MsgID returns the Nats-Msg-Id of an output, <callId>:<firstUserMessageId>:hang,
// :resolved or :unresolved, so that a JetStream stream drops the duplicates of engines
// that detect the same stall. It is the webhook-id too, so it must be a header value
// that NATS and net/http carry unchanged: in each of the two ids, a byte below 0x20 or
// 0x7f (which NATS turns into a space or trims, and net/http refuses), '%', ':' (which
// separates the parts) and a space that begins the call id (which both trim) are
// percent-encoded as %XX, in capitals. An id without them, as voice platforms make
// them, is kept byte for byte; and since the encoding can be undone, two outputs never
// share an id, which the hang stream's dedupe would drop one of.
func MsgID(callID string, out *detector.Output) string {
	first, suffix := out.FirstUserMessageID, out.Kind.Suffix()
	n := msgIDPartLen(callID, true) + msgIDPartLen(first, false)
	if n == len(callID)+len(first) {
		return callID + ":" + first + ":" + suffix
	}
	var b strings.Builder
	b.Grow(n + 2 + len(suffix))
	writeMsgIDPart(&b, callID, true)
	b.WriteByte(':')
	writeMsgIDPart(&b, first, false)
	b.WriteByte(':')
	b.WriteString(suffix)
	return b.String()
}

// LegacyMsgID returns the Nats-Msg-Id that versions before MsgID's encoding gave the
// same output: its ids undone, joined as they are. It equals id for an id that needed
// no encoding. (A stream written by such a version holds its outputs under those ids,
// as NATS carried them in a header: trimmed, line breaks made spaces.)
func LegacyMsgID(id string) string {
	if !strings.Contains(id, "%") {
		return id
	}
	b := make([]byte, 0, len(id))
	for i := 0; i < len(id); i++ {
		if c := id[i]; c == '%' && i+2 < len(id) && isHex(id[i+1]) && isHex(id[i+2]) {
			b = append(b, unhex(id[i+1])<<4|unhex(id[i+2]))
			i += 2
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// msgIDEscaped reports whether MsgID percent-encodes c, the byte at i of an id (lead:
// the call id, which begins the header value).
func msgIDEscaped(c byte, i int, lead bool) bool {
	return c < 0x20 || c == 0x7f || c == '%' || c == ':' || (c == ' ' && i == 0 && lead)
}

// msgIDPartLen returns the length of id in a Nats-Msg-Id.
func msgIDPartLen(id string, lead bool) int {
	n := len(id)
	for i := 0; i < len(id); i++ {
		if msgIDEscaped(id[i], i, lead) {
			n += 2
		}
	}
	return n
}

// writeMsgIDPart writes id as MsgID encodes it.
func writeMsgIDPart(b *strings.Builder, id string, lead bool) {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(id); i++ {
		if c := id[i]; msgIDEscaped(c, i, lead) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, escaped as encoding/json (Go 1.22 and
// later) escapes it with HTML escaping off: invalid UTF-8 becomes \ufffd, byte by byte,
// \b and \f keep their short escapes, and U+2028 and U+2029 are escaped, so that the
// event can be embedded in JavaScript. Everything hangwatch writes as JSON goes through
// it, the simulated pipeline's events included.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonStringLen returns the length of what AppendJSONString appends for s.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
