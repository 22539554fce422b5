package wire

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
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
func isStruct(c byte) bool { return strings.IndexByte("\"[]{}Yy_\x7f", c) >= 0 }

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
		if got, want := lane(structMask(x)), firstLane(x, isStruct); got != want {
			t.Fatalf("structMask(%#016x): first lane %d, want %d", x, got, want)
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
	pick := []byte{0, 0x1f, 0x20, 0x21, 0x22, 0x23, '/', '0', '9', ':', 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xfa, 0xff, '{', '}', 'y', 'Y', '_', 0x7b, 0xdb}
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

// TestLaneOf checks laneOf against TrailingZeros64 for every lowest bit, with every
// pattern of the bits above it.
func TestLaneOf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for b := range 64 {
		for range 100 {
			m := r.Uint64()<<b | 1<<b
			if got, want := laneOf(m), lane(m); got != want {
				t.Fatalf("laneOf(%#016x) = %d, want %d", m, got, want)
			}
		}
	}
}

// TestInteger checks the word-at-a-time digits against strconv, for every length and
// digits at every position, and that a non-digit anywhere is refused.
func TestInteger(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 16; n++ {
		for range 2000 {
			b := make([]byte, n)
			for k := range b {
				b[k] = '0' + byte(r.IntN(10))
			}
			want, _ := strconv.ParseInt(string(b), 10, 64)
			if got, ok := integer(b); !ok || got != want {
				t.Fatalf("integer(%q) = %d, %v; want %d", b, got, ok, want)
			}
			k := r.IntN(n)
			b[k] = []byte{'.', 'e', 'E', '-', '+', '/', ':', 0xb0}[r.IntN(8)]
			if got, ok := integer(b); ok {
				t.Fatalf("integer(%q) = %d, want refused", b, got)
			}
		}
	}
}

func TestASCII(t *testing.T) {
	for n := range 40 {
		b := bytes.Repeat([]byte{'a'}, n)
		if !ascii(b) {
			t.Fatalf("ascii(%q) = false", b)
		}
		for k := range n {
			c := bytes.Clone(b)
			c[k] = 0x80
			if ascii(c) {
				t.Fatalf("ascii(%q) = true", c)
			}
		}
	}
}

// TestScanFastPaths checks the inline scans of keys and numbers (skipValue, member,
// timeValue) against the reference decoder at their edges: keys of every length up to
// past three words, so that the closing quote falls in every lane and at every word
// boundary; keys with escapes, control bytes, non-ASCII bytes or white space before the
// colon; numbers of every length with what may follow them; each placed in a skipped
// value and in a history element, and cut at every byte near its end, so that a scan
// meets the end of the input in every lane too.
func TestScanFastPaths(t *testing.T) {
	var keys []string
	for n := range 28 {
		plain := strings.Repeat("k", n)
		keys = append(keys, `"`+plain+`":`, `"`+plain+`" :`, `"`+plain+`"`, `"`+plain)
		for _, odd := range []string{`\"`, `\\`, `\u0041`, `\x`, `\:`, "\x00", "\x1f", "\x1f:", "\x1f:0,\"", "\x7f", "é", `"`, " "} {
			for _, at := range []int{0, n / 2, n} {
				keys = append(keys, `"`+plain[:at]+odd+plain[at:]+`":`)
			}
		}
	}
	var nums []string
	for n := 1; n <= 17; n++ {
		digits := "1234567890123456789"[:n]
		for _, after := range []string{"", ".5", ".", "e3", "E+3", "e", "x", " "} {
			nums = append(nums, digits+after, "0"+digits+after, "-"+digits+after)
		}
	}
	nums = append(nums, "0", "-0", "0.0", "0e1", "00", "-", "true", "nul", `"s"`, "[]", "{}")

	var inputs []string
	for _, k := range keys {
		inputs = append(inputs,
			ev(`{"x":{`+k+`1,`+k+`{"a":2}}}`),
			withMessages(`[{"messageId":"m1",`+k+`"v","role":"user","text":"hi","timestamp":1763647331407}]`))
	}
	for _, v := range nums {
		inputs = append(inputs,
			ev(`{"x":{"a":`+v+`,"b":[`+v+`,`+v+`]}}`),
			ev(`{"x":{"a":`+v+`}}`),
			ev(`{"timestamp":`+v+`}`),
			withMessages(`[{"messageId":"m1","role":"user","text":"hi","timestamp":`+v+`}]`),
			withMessages(`[{"role":"user","message":"hi","time":`+v+`,"endTime":`+v+`}]`))
	}
	var ev detector.Event
	for _, in := range inputs {
		data := []byte(in)
		checkDecode(t, &ev, data, DefaultLimits())
		// Cut near the end of the input: a copy of exactly that length, so that the
		// word loads meet the end of the slice.
		for cut := max(0, len(data)-48); cut < len(data); cut++ {
			checkDecode(t, &ev, bytes.Clone(data[:cut]), DefaultLimits())
		}
		// And with the key or number at the very end of a value of its own.
		if i := strings.Index(in, `"x":`); i >= 0 {
			for cut := i + 4; cut < len(data); cut++ {
				checkDecode(t, &ev, bytes.Clone(data[:cut]), DefaultLimits())
			}
		}
	}
}

// TestRoleOf checks that the switch of roleOf matches the exact names of roleNames,
// which its case-insensitive loop reads.
func TestRoleOf(t *testing.T) {
	for _, r := range roleNames {
		for _, s := range []string{r.name, strings.ToUpper(r.name)} {
			if got := roleOf(s); got != r.role {
				t.Errorf("roleOf(%q) = %d, want %d", s, got, r.role)
			}
		}
	}
	for _, s := range []string{"", "system", "users", "use", "tool_call", "Bot "} {
		if got := roleOf(s); got != roleOther {
			t.Errorf("roleOf(%q) = %d, want roleOther", s, got)
		}
	}
}
