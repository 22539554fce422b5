package wire

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// firstLane returns the index of the first byte of x for which stop holds, or 8.
func firstLane(x uint64, stop func(byte) bool) int {
	for k := range 8 {
		if stop(byte(x >> (8 * k))) {
			return k
		}
	}
	return 8
}

func lane(m uint64) int { return bits.TrailingZeros64(m) >> 3 }

func isStop(c byte) bool   { return c < 0x20 || c == '"' || c == '\\' }
func notDigit(c byte) bool { return c < '0' || c > '9' }

// TestMasks checks the SWAR masks against a byte loop: every byte value in every lane
// over a background of every other byte value, then random words biased to the
// interesting bytes.
func TestMasks(t *testing.T) {
	check := func(x uint64) {
		if got, want := lane(stopMask(x)), firstLane(x, isStop); got != want {
			t.Fatalf("stopMask(%#016x): first lane %d, want %d", x, got, want)
		}
		if got, want := lane(nonDigitMask(x)), firstLane(x, notDigit); got != want {
			t.Fatalf("nonDigitMask(%#016x): first lane %d, want %d", x, got, want)
		}
	}
	for bg := range 256 {
		for c := range 256 {
			for k := range 8 {
				x := uint64(bg) * lsb
				x &^= 0xff << (8 * k)
				x |= uint64(c) << (8 * k)
				check(x)
			}
		}
	}
	pick := []byte{0, 0x1f, 0x20, 0x21, 0x22, 0x23, '/', '0', '9', ':', 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xfa, 0xff}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		var b [8]byte
		for k := range b {
			if r.IntN(2) == 0 {
				b[k] = pick[r.IntN(len(pick))]
			} else {
				b[k] = byte(r.Uint32())
			}
		}
		check(binary.LittleEndian.Uint64(b[:]))
	}
}
