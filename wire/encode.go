package wire

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hangwatch/hangwatch/detector"
)

// AppendOutput appends the event of a hang or a hang-resolved (SPEC §3) to dst. The
// passed-through values are copied byte for byte from the payloads, which are the
// *Payload values that Decode made: call from out.Latest (or out.Snapshot, or
// {"id":callID} when neither has one), and assistant, messages, phone, customer and
// analysis from out.Snapshot ({} or [] when absent). The result is valid JSON, and
// AppendOutput does not allocate when dst has room for it.
func AppendOutput(dst []byte, callID string, out *detector.Output) []byte {
	snap, _ := out.Snapshot.(*Payload)
	latest, _ := out.Latest.(*Payload)
	if snap == nil {
		snap = &Payload{} // does not escape: no allocation
	}
	resolved := out.Kind == detector.KindResolved

	dst = append(dst, `{"message":{"timestamp":`...)
	dst = strconv.AppendInt(dst, time.Unix(0, out.At).UnixMilli(), 10)
	if resolved {
		dst = append(dst, `,"type":"hang-resolved","call":`...)
	} else {
		dst = append(dst, `,"type":"hang","call":`...)
	}
	var call []byte
	if latest != nil {
		call = latest.Call()
	}
	if call == nil {
		call = snap.Call()
	}
	if call != nil {
		dst = append(dst, call...)
	} else {
		dst = append(dst, `{"id":`...)
		dst = AppendJSONString(dst, callID)
		dst = append(dst, '}')
	}
	dst = appendValue(append(dst, `,"assistant":`...), snap.Assistant(), "{}")
	dst = appendValue(append(dst, `,"messages":`...), snap.Messages(), "[]")
	dst = appendValue(append(dst, `,"phone":`...), snap.Phone(), "{}")
	dst = appendValue(append(dst, `,"customer":`...), snap.Customer(), "{}")
	dst = appendValue(append(dst, `,"analysis":`...), snap.Analysis(), "{}")

	dst = append(dst, `,"hang":{"reason":`...)
	dst = AppendJSONString(dst, out.Reason.String())
	dst = append(dst, `,"userMessageId":`...)
	dst = AppendJSONString(dst, out.UserMessageID)
	dst = append(dst, `,"firstUserMessageId":`...)
	dst = AppendJSONString(dst, out.FirstUserMessageID)
	if resolved {
		dst = append(dst, `,"replyMessageId":`...)
		dst = AppendJSONString(dst, out.ReplyMessageID)
	}
	dst = append(dst, `,"waitMs":`...)
	dst = strconv.AppendInt(dst, out.Wait.Milliseconds(), 10)
	if !resolved {
		dst = append(dst, `,"thresholdMs":`...)
		dst = strconv.AppendInt(dst, out.Threshold.Milliseconds(), 10)
	}
	return append(dst, "}}}"...)
}

func appendValue(dst, v []byte, absent string) []byte {
	if v == nil {
		return append(dst, absent...)
	}
	return append(dst, v...)
}

// MsgID returns the Nats-Msg-Id of an output, <callId>:<firstUserMessageId>:hang or
// :resolved, so that a JetStream stream drops the duplicates of engines that detect the
// same stall.
func MsgID(callID string, out *detector.Output) string {
	suffix := ":hang"
	if out.Kind == detector.KindResolved {
		suffix = ":resolved"
	}
	return callID + ":" + out.FirstUserMessageID + suffix
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
