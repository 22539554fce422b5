package wire

import (
	"encoding/binary"
	"math/bits"
)

// This file holds the validating JSON lexer that Decode is built on: an index-based
// scan over the input, with no recursion and no allocation. Its functions return the
// index just past what they scanned, or -1 on a syntax error.

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
	for ; i < len(data); i++ {
		switch data[i] {
		case ' ', '\n', '\r', '\t':
		default:
			return i
		}
	}
	return i
}

// scanString scans the body of a string whose opening quote is at i-1. It returns the
// index just past the closing quote and whether the body holds a backslash escape.
// Runs of plain bytes are skipped eight at a time (SWAR, see stopMask).
func scanString(data []byte, i int) (int, bool) {
	esc := false
	for {
		for ; i+8 <= len(data); i += 8 {
			if m := stopMask(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto stop
			}
		}
		for ; i < len(data); i++ {
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
			if i+1 >= len(data) {
				return -1, esc
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || hexVal[data[i+2]]|hexVal[data[i+3]]|hexVal[data[i+4]]|hexVal[data[i+5]] == 0xff {
					return -1, esc
				}
				i += 6
			default:
				return -1, esc
			}
		default: // a raw control character
			return -1, esc
		}
	}
}

// stopMask flags, in bit 7 of each byte lane of x, the bytes that stop a run of plain
// string bytes: below 0x20, '"' or '\\'. x^0x02 maps the bytes below 0x20 onto
// themselves and '"' (0x22) to 0x20, so one "less than 0x21" test catches both; a
// "zero" test catches the backslash. Each test flags its first matching lane exactly
// (a borrow can only flag lanes above a true match), so the lowest flagged lane of the
// union is the first stop byte.
func stopMask(x uint64) uint64 {
	y := x ^ (lsb * 0x02)
	b := x ^ (lsb * '\\')
	return (((y - lsb*0x21) &^ y) | ((b - lsb) &^ b)) & msb
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
	if i < n && data[i] == '.' {
		i++
		j := i
		for i < n && data[i]-'0' <= 9 {
			i++
		}
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
		for i < n && data[i]-'0' <= 9 {
			i++
		}
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
