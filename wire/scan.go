package wire

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// This file holds the validating JSON lexer that Decode is built on: an index-based
// scan over the input, with no recursion and no allocation. Its functions return the
// index just past what they scanned, or -1 on a syntax error. The decoder methods below
// validate the values that Decode does not read, and read the strings and numbers of
// those it does.

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// strStop marks the bytes that end a fast run inside a string: the quote, the
// backslash and the control characters, which JSON does not allow raw.
var strStop = [256]bool{'"': true, '\\': true}

// hexVal maps a hex digit to its value and every other byte to 0xff.
var hexVal [256]byte

func init() {
	for c := range 0x20 {
		strStop[c] = true
	}
	for c := range hexVal {
		hexVal[c] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		hexVal[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		hexVal[c] = c - 'a' + 10
		hexVal[c-'a'+'A'] = c - 'a' + 10
	}
}

// skipWS returns the index of the first byte at or after i that is not JSON white
// space. Compact input has none, so the first test returns at once.
func skipWS(data []byte, i int) int {
	if i < len(data) && data[i] > ' ' {
		return i
	}
	return skipWSSlow(data, i)
}

func skipWSSlow(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\n', '\r', '\t':
			i++
			// Indentation, a word at a time.
			for i+8 <= len(data) && word(data, i) == lsb*' ' {
				i += 8
			}
		default:
			return i
		}
	}
	return i
}

// word returns the eight bytes of data at i as a little-endian word; i+8 must not be
// past the end of data. It is one load, with no bounds check: the hot loops check
// i+8 <= len(data) once for the whole word.
func word(data []byte, i int) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), i))[:])
}

// at2 returns the two bytes of data at i as a little-endian pair; i+2 must not be past
// the end of data.
func at2(data []byte, i int) uint16 {
	return binary.LittleEndian.Uint16((*[2]byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), i))[:])
}

// scanString scans the body of a string whose opening quote is at i-1. It returns the
// index just past the closing quote and whether the body holds a backslash escape.
// Runs of plain bytes are skipped eight at a time (SWAR, see stopMask).
func scanString(data []byte, i int) (int, bool) {
	esc := false
	n := len(data)
	for {
		for i+8 <= n {
			if m := stopMask(word(data, i)); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto stop
			}
			i += 8
		}
		for ; i < n; i++ {
			if strStop[data[i]] {
				goto stop
			}
		}
		return -1, esc
	stop:
		switch data[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			if i = scanEscape(data, i); i < 0 {
				return -1, esc
			}
		default: // a raw control character
			return -1, esc
		}
	}
}

// scanEscape scans the escape sequence whose backslash is at i.
func scanEscape(data []byte, i int) int {
	if i+1 >= len(data) {
		return -1
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
		if i+6 > len(data) || hexVal[data[i+2]]|hexVal[data[i+3]]|hexVal[data[i+4]]|hexVal[data[i+5]] == 0xff {
			return -1
		}
		return i + 6
	}
	return -1
}

// stopMask flags, in bit 7 of each byte lane of x, the bytes that stop a run of plain
// string bytes: below 0x20, '"' or '\\'. x^0x02 maps the bytes below 0x20 onto
// themselves and '"' (0x22) to 0x20, so one "less than 0x21" subtraction catches both;
// another catches the backslash (x^'\\' is zero). A lane below a match never borrows, so
// the lowest lane flagged is the first stop byte; the bytes from 0x80 up, which borrow
// nothing either but may set bit 7 in the differences, are masked out by ^x (neither
// xor changes bit 7).
func stopMask(x uint64) uint64 {
	quote := (x ^ (lsb * 0x02)) - lsb*0x21
	backslash := (x ^ (lsb * '\\')) - lsb
	return (quote | backslash) &^ x & msb
}

// laneOf returns the index of the lowest byte lane of the mask m that is not zero; m
// must not be zero. It is TrailingZeros64(m)>>3, but computed with branches on
// purpose: the scan of an event is one long chain of dependent loads (where a token
// ends is where the next one starts), and an index that is computed from the loaded
// word makes the next load wait for that word. A branch is predicted instead, and keys
// and small numbers repeat their lengths from one history element to the next, so the
// next load issues at once. Only the scans of keys and integers use it; the length of a
// text is not predictable.
func laneOf(m uint64) int {
	switch bits.TrailingZeros64(m) >> 3 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 2
	case 3:
		return 3
	case 4:
		return 4
	case 5:
		return 5
	case 6:
		return 6
	}
	return 7
}

// scanNumber scans a number that starts at i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// The byte after it is checked by the caller, like every delimiter.
func scanNumber(data []byte, i int) int {
	n := len(data)
	if i < n && data[i] == '-' {
		i++
	}
	if i >= n {
		return -1
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c-'1' <= 8:
		i = skipDigits(data, i+1)
	default:
		return -1
	}
	return scanFraction(data, i)
}

// scanFraction scans the fraction and the exponent, if any, of a number whose integer
// part ends at i.
func scanFraction(data []byte, i int) int {
	n := len(data)
	if i < n && data[i] == '.' {
		i++
		j := i
		i = skipDigits(data, i)
		if i == j {
			return -1
		}
	}
	if i < n && data[i]|0x20 == 'e' {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := i
		i = skipDigits(data, i)
		if i == j {
			return -1
		}
	}
	return i
}

// skipDigits returns the index of the first byte at or after i that is not a digit,
// looking at eight bytes at a time: timestamps have 13 digits.
func skipDigits(data []byte, i int) int {
	for ; i+8 <= len(data); i += 8 {
		if m := nonDigitMask(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(data) && data[i]-'0' <= 9 {
		i++
	}
	return i
}

// nonDigitMask is not zero in the byte lanes of x that do not hold a digit: a digit has
// the high nibble 3, and so has the digit plus 6. The addition can carry out of a lane
// only from a byte of 0xfa or more, a non-digit, so the lowest lane flagged is exact.
func nonDigitMask(x uint64) uint64 {
	const hi = lsb * 0xf0
	return ((x & hi) ^ lsb*0x30) | (((x + lsb*0x06) & hi) ^ lsb*0x30)
}

// scanLiteral scans true, false or null at i.
func scanLiteral(data []byte, i int) int {
	switch {
	case i+4 <= len(data) && string(data[i:i+4]) == "true":
		return i + 4
	case i+4 <= len(data) && string(data[i:i+4]) == "null":
		return i + 4
	case i+5 <= len(data) && string(data[i:i+5]) == "false":
		return i + 5
	}
	return -1
}

// scanNull scans null at i.
func scanNull(data []byte, i int) int {
	if i+4 <= len(data) && string(data[i:i+4]) == "null" {
		return i + 4
	}
	return -1
}

// at returns data[i], or 0 past the end.
func at(data []byte, i int) byte {
	if i < len(data) {
		return data[i]
	}
	return 0
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

// span is the byte range [start, end) of a JSON value in a payload; the zero span stands
// for an absent value (no JSON value is empty).
type span struct{ start, end uint32 }

func (s span) len() int { return int(s.end - s.start) }

// syntax records a syntax error at i and returns -1, which callers pass up.
func (d *decoder) syntax(i int) int {
	d.fail, d.failAt = RejectNotJSON, i
	return -1
}

// tooDeep records a container at i nested too deep and returns -1.
func (d *decoder) tooDeep(i int) int {
	d.fail, d.failAt = RejectTooDeep, i
	return -1
}

// enter checks that a container opened at i, inside depth open containers, is allowed.
func (d *decoder) enter(i, depth int) bool {
	if depth >= d.maxDepth {
		d.tooDeep(i)
		return false
	}
	return true
}

// first steps into the container opened at i (already entered): it returns the index
// of its first key or value and true, or the index past an empty container and false.
func (d *decoder) first(i int, closing byte) (int, bool) {
	i = skipWS(d.data, i+1)
	if i < len(d.data) && d.data[i] == closing {
		return i + 1, false
	}
	return i, true
}

// next steps over the white space and the comma or the closing byte after a value in a
// container. It returns the index of the next value (or key) and true, or the index past
// the container and false.
func (d *decoder) next(i int, closing byte) (int, bool) {
	data := d.data
	if i < len(data) && data[i] == ',' {
		return skipWS(data, i+1), true
	}
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
// d.buf or alias data), and the index of the value. A plain key is scanned inline, a
// word at a time.
func (d *decoder) member(i int) (string, int) {
	data := d.data
	n := len(data)
	if i+9 <= n && data[i] == '"' {
		j := i + 1
		for j+8 <= n {
			if m := stopMask(word(data, j)); m != 0 {
				j += laneOf(m)
				if data[j] != '"' {
					break // an escape, or an error
				}
				key := unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), i+1)), j-i-1)
				if j+1 < n && data[j+1] == ':' {
					return key, skipWS(data, j+2)
				}
				return key, d.colon(j + 1)
			}
			j += 8
		}
	}
	if i >= n || data[i] != '"' {
		return "", d.syntax(i)
	}
	end, esc := scanString(data, i+1)
	if end < 0 {
		return "", d.syntax(i)
	}
	key := cmpStr(data[i+1:end-1], esc, &d.buf)
	if end < n && data[end] == ':' {
		return key, skipWS(data, end+1)
	}
	return key, d.colon(end)
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
			return data[i+1 : end-1 : end-1], esc, end
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

// timeValue reads a timestamp-or-null field at i (SPEC §1: Unix milliseconds, or seconds
// below 1e11). It returns the time (0 when absent) and the index past the value; f is
// set to the field's state, bad with kindRange for a number out of the float64 range.
func (d *decoder) timeValue(i, depth int, f *field) (int64, int) {
	data := d.data
	c := at(data, i)
	if c-'1' <= 8 && i+16 <= len(data) {
		// A timestamp in milliseconds has 13 digits: an integer of 8 to 15 digits is
		// scanned and read in two words, its end found by a predicted branch (laneOf).
		// It does not start with 0 and is not followed by '.', 'e' or 'E', so it is a
		// whole JSON number; it is exact in a float64, so it is what parseTime would
		// make of it.
		if m := nonDigitMask(word(data, i+8)); m != 0 && nonDigitMask(word(data, i)) == 0 {
			j := i + 8 + laneOf(m)
			if e := data[j]; e != '.' && e|0x20 != 'e' {
				// The digits before the last eight, behind leading zeros, then the last
				// eight, as integer reads them.
				h := uint(j - i - 8)
				hi := word(data, i)<<(8*(8-h)) | (lsb*'0')>>(8*h)
				t := int64(eightDigits(hi)*1e8 + eightDigits(word(data, j-8)))
				if t < 1e11 {
					t *= 1000
				}
				*f = field{st: stOK}
				return t, j
			}
		}
	}
	switch {
	case c == '-' || c-'0' <= 9:
		j := scanNumber(data, i)
		if j < 0 {
			return 0, d.syntax(i)
		}
		t, ok := parseTime(data[i:j])
		if !ok {
			*f = field{stBad, kindRange}
			return 0, j
		}
		*f = field{st: stOK}
		return t, j
	case c == 'n':
		*f = field{}
		if j := scanNull(data, i); j >= 0 {
			return 0, j
		}
		return 0, d.syntax(i)
	default:
		*f = field{stBad, c}
		return 0, d.skipValue(i, depth)
	}
}

// spanValue validates the value at i and records its span.
func (d *decoder) spanValue(i, depth int, s *span) int {
	j := d.skipValue(i, depth)
	if j >= 0 {
		*s = span{uint32(i), uint32(j)}
	}
	return j
}

// skipValue validates the value at i, inside depth open containers, and returns the
// index past it. It is the hot loop of Decode (most of an event is values that detection
// does not read), so it keeps the kind of each open container in a bit stack instead of
// recursing, and scans plain keys and integers inline, a word at a time.
func (d *decoder) skipValue(i, depth int) int {
	data := d.data
	n := len(data)
	base := depth
	obj := false
	// kinds holds a bit per open container below depth base+64, set for an object;
	// deeper ones go to d.deep.
	var kinds uint64
	key := false // a key comes first, at i
	for {
		if key {
			// A plain key is scanned here, a word at a time; skipKey takes the rest.
			// The first word, which holds the end of most keys, has branches of its own
			// (a loop's would be shared by every word), so that the predictor tells
			// short keys from long ones.
			if i+9 <= n && data[i] == '"' {
				j := i + 1
				if m := stopMask(word(data, j)); m != 0 {
					j += laneOf(m)
					if j+1 < n && at2(data, j) == '"'|':'<<8 {
						i = skipWS(data, j+2)
						goto value
					}
				} else {
					for j += 8; j+8 <= n; j += 8 {
						if m := stopMask(word(data, j)); m != 0 {
							j += laneOf(m)
							if j+1 < n && at2(data, j) == '"'|':'<<8 {
								i = skipWS(data, j+2)
								goto value
							}
							break
						}
					}
				}
			}
			if i = d.skipKey(i); i < 0 {
				return i
			}
		}
	value:
		// A value at i.
		if i >= n {
			return d.syntax(i)
		}
		// The cases are tested in order, the most frequent first: an integer costs one
		// comparison, not the binary search over the case bytes of a switch on c.
		switch c := data[i]; {
		case c-'1' <= 8:
			// An integer, as nearly every number is; scanNumber takes the rest.
			j := i + 1
			if j+8 <= n {
				if m := nonDigitMask(word(data, j)); m != 0 {
					j += laneOf(m)
				} else {
					j = skipDigits(data, j+8)
				}
			} else {
				j = skipDigits(data, j)
			}
			if j < n && (data[j] == '.' || data[j]|0x20 == 'e') {
				if j = scanFraction(data, j); j < 0 {
					return d.syntax(i)
				}
			}
			i = j
		case c == '"':
			j, _ := scanString(data, i+1)
			if j < 0 {
				return d.syntax(i)
			}
			i = j
		case c == '0':
			if j := i + 1; j < n && (data[j] == '.' || data[j]|0x20 == 'e') {
				if j = scanFraction(data, j); j < 0 {
					return d.syntax(i)
				}
				i = j
			} else {
				i = j
			}
		case c == '{' || c == '[':
			if depth >= d.maxDepth {
				return d.tooDeep(i)
			}
			if rel := uint(depth - base); rel < 64 {
				if obj {
					kinds |= 1 << rel
				} else {
					kinds &^= 1 << rel
				}
			} else {
				d.pushDeep(rel-64, obj)
			}
			depth++
			obj = c == '{'
			i = skipWS(data, i+1)
			if i < n && data[i] == c+2 { // '}' or ']'
				i++
				depth--
				obj = d.kindAt(kinds, depth-base)
				break
			}
			key = obj
			continue
		case c == 't' || c == 'f' || c == 'n':
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
			if i >= n {
				return d.syntax(i)
			}
			c := data[i]
			if c != ',' {
				if c <= ' ' {
					if i = skipWSSlow(data, i); i >= n {
						return d.syntax(i)
					}
					c = data[i]
				}
				if c != ',' {
					if (obj && c == '}') || (!obj && c == ']') {
						i++
						depth--
						obj = d.kindAt(kinds, depth-base)
						continue
					}
					return d.syntax(i)
				}
			}
			i = skipWS(data, i+1)
			key = obj
			break
		}
	}
}

// kindAt reports whether the container at depth rel above the base of skipValue is an
// object, from the bits of skipValue or, deeper, d.deep.
func (d *decoder) kindAt(kinds uint64, rel int) bool {
	if uint(rel) < 64 {
		return kinds>>uint(rel)&1 != 0
	}
	u := uint(rel) - 64
	return d.deep[u>>6]>>(u&63)&1 != 0
}

// pushDeep records the kind of the container at depth 64+u above the base of skipValue.
func (d *decoder) pushDeep(u uint, obj bool) {
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

// skipValid returns the index past the value at i of a text already validated (a
// retained payload): it only follows strings and brackets, and looks for them a word at a
// time (see structMask).
func skipValid(data []byte, i int) int {
	n := len(data)
	switch data[i] {
	case '"':
		j, _ := scanString(data, i+1)
		return j
	case '{', '[':
	default:
		// A number or a literal: it ends at a delimiter.
		for i < n {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
	depth := 0
	for i < n {
		for i+8 <= n {
			if m := structMask(word(data, i)); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= n {
			break
		}
		switch data[i] {
		case '"':
			i, _ = scanString(data, i+1)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return n
}

// structMask flags, in bit 7 of each byte lane of x, the quotes and brackets, and
// also Y, y, _ and DEL, which are found only inside strings in valid JSON (and the
// scan jumps over strings): a byte with the bits of 0x26 cleared is 0x59 for all of
// "[]{}" and those four alone. Like stopMask, the lowest lane flagged is exact.
func structMask(x uint64) uint64 {
	y := x&^(lsb*0x26) ^ lsb*0x59
	q := x ^ lsb*'"'
	return ((y-lsb)&^y | (q-lsb)&^q) & msb
}

// elements calls f with the start of each element of the validated array at i, in
// order, until f returns false; it returns the index of the array's closing bracket, or
// -1 when f stopped it.
func elements(data []byte, i int, f func(start int) bool) int {
	i = skipWS(data, i+1)
	if data[i] == ']' {
		return i
	}
	for {
		if !f(i) {
			return -1
		}
		i = skipWS(data, skipValid(data, i))
		if data[i] == ']' {
			return i
		}
		i = skipWS(data, i+1) // the comma
	}
}
