package sim

import "github.com/hangwatch/hangwatch/wire"

const hexDigits = "0123456789abcdef"

// quoted returns s as a JSON string.
func quoted(s string) []byte { return wire.AppendJSONString(nil, s) }

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte { return wire.AppendJSONString(b, s) }

// escaped returns s as the inside of a JSON string, without the quotes: a piece of text
// that can be copied into a string already opened.
func escaped(s string) []byte {
	q := quoted(s)
	return q[1 : len(q)-1]
}

// appendHex appends the n lowest hex digits of v.
func appendHex(b []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return b
}
