package wire

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// unquote appends the value of a JSON string body (validated, without its quotes) to
// dst, exactly as encoding/json decodes it into a Go string: escapes are resolved, a
// surrogate that is not half of a valid pair becomes U+FFFD, and so does every byte of
// invalid UTF-8.
func unquote(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch e := raw[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						r2 = hex4(raw[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						i += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r)
			i += size
		}
	}
	return dst
}

// hex4 decodes the four hex digits at the start of b (validated by the scanner).
func hex4(b []byte) rune {
	return rune(hexVal[b[0]])<<12 | rune(hexVal[b[1]])<<8 | rune(hexVal[b[2]])<<4 | rune(hexVal[b[3]])
}

// str returns the Go string of a JSON string body. It aliases data when the body needs
// no decoding (no escape, valid UTF-8), which is the rule; otherwise it allocates.
func str(raw []byte, esc bool) string {
	if len(raw) == 0 {
		return ""
	}
	if !esc && (ascii(raw) || utf8.Valid(raw)) {
		return unsafe.String(&raw[0], len(raw))
	}
	b := unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// ascii reports whether b is ASCII, a word at a time.
func ascii(b []byte) bool {
	var acc uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		acc |= word(b, i)
	}
	for ; i < len(b); i++ {
		acc |= uint64(b[i])
	}
	return acc&msb == 0
}

// cmpMaxRaw bounds the raw length of a string that can equal one of the short names
// Decode looks for (keys, types, roles, statuses: at most 19 bytes decoded). A decoded
// byte takes at most 6 raw bytes (\u0061), so a longer raw string cannot match; a raw
// byte decodes to at most 3 bytes (invalid UTF-8 becomes U+FFFD), so cmpBuf holds any
// shorter one.
const cmpMaxRaw = 6 * 20

type cmpBuf [3 * cmpMaxRaw]byte

// cmpStr returns a string to compare with the names Decode looks for, without
// allocating: the raw body when it has no escape (invalid UTF-8 cannot equal an ASCII
// name either way), else the body decoded into buf. A body too long to match any name
// gives "\x00", which matches none.
func cmpStr(raw []byte, esc bool, buf *cmpBuf) string {
	if !esc {
		return unsafe.String(unsafe.SliceData(raw), len(raw))
	}
	if len(raw) > cmpMaxRaw {
		return "\x00"
	}
	b := unquote(buf[:0], raw)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// nonEmpty reports whether a JSON string body (validated, without its quotes) holds
// anything but white space once decoded, i.e. strings.TrimSpace of its value is not
// empty. The usual text starts with a printable ASCII letter and returns at once.
func nonEmpty(raw []byte) bool {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			switch c {
			case ' ', '\t', '\n', '\r', '\v', '\f':
				i++
				continue
			case '\\':
				switch raw[i+1] {
				case 'n', 't', 'r', 'f':
					i += 2
					continue
				case 'u':
					// A surrogate decodes to a supplementary rune or to U+FFFD,
					// neither of which is white space, and IsSpace is false for it.
					if unicode.IsSpace(hex4(raw[i+2:])) {
						i += 6
						continue
					}
				}
			}
			return true
		}
		r, size := utf8.DecodeRune(raw[i:])
		if !unicode.IsSpace(r) { // invalid UTF-8 decodes to U+FFFD, not white space
			return true
		}
		i += size
	}
	return false
}
