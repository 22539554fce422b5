// Package subject renders NATS subjects from templates with placeholders, sanitising
// each value as one subject token (SPEC §3): the rule that the outputs' subjects, the
// ingest subject and the public hangevent package share, so that a subscriber computes
// the subject the engine publishes on.
package subject

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// MaxValueBytes bounds what one placeholder adds to a subject. NATS refuses a command
// line over 4 KB and closes the connection for good, so a publisher's 5 KB call id must
// not make a subject of that size: a longer value keeps its first bytes and a hash of the
// whole, which keeps calls apart. It is wire's bound, and must stay so: the engine and a
// subscriber must shorten a value the same way.
const MaxValueBytes = 128

// Token returns v sanitised as a subject token: empty becomes "_"; every character that
// a token cannot hold (., *, >, white space, control characters, invalid UTF-8) becomes
// "_"; a value over MaxValueBytes keeps its first bytes, then "~" and a hash of it.
func Token(v string) string {
	b := AppendToken(make([]byte, 0, min(max(len(v), 1), MaxValueBytes)), v)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// AppendToken appends v sanitised as Token does.
func AppendToken(dst []byte, v string) []byte {
	if v == "" {
		return append(dst, '_')
	}
	if len(v) > MaxValueBytes {
		cut := MaxValueBytes - 24
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		dst = AppendToken(dst, v[:cut])
		dst = append(dst, '~')
		return strconv.AppendUint(dst, fnv64a(v), 16)
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f {
				c = '_'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if (r == utf8.RuneError && size == 1) || unicode.IsSpace(r) || unicode.IsControl(r) {
			dst = append(dst, '_')
		} else {
			dst = append(dst, v[i:i+size]...)
		}
		i += size
	}
	return dst
}

// fnv64a is the 64-bit FNV-1a hash: stable across processes, so that every engine
// shortens a value the same way.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// ErrTemplate is wrapped by the errors of Parse.
var ErrTemplate = errors.New("bad subject template")

// Template is a subject with placeholders such as {callId}. The zero value renders "".
type Template struct {
	raw   string
	parts []part
}

// part is a literal, or the placeholder numbered ph when ph >= 0.
type part struct {
	lit string
	ph  int
}

// Parse parses a template whose placeholders are among names: {name} stands for the
// value given at the same position to Render. It refuses unknown placeholders,
// unbalanced braces, and templates that cannot render as a valid subject: an empty
// token, white space or control characters, or a wildcard (* or >) outside a
// placeholder. A placeholder always renders as a non-empty token part.
func Parse(s string, names ...string) (Template, error) {
	fail := func(format string, args ...any) (Template, error) {
		return Template{}, fmt.Errorf("%w %q: %s", ErrTemplate, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty")
	}
	if !utf8.ValidString(s) {
		return fail("invalid UTF-8")
	}
	t := Template{raw: s}
	tokenEmpty := true
	lit := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] == '{' {
				return fail("unbalanced { at %d", i)
			}
			name := s[i+1 : i+1+end]
			ph := slices.Index(names, name)
			if ph < 0 {
				return fail("unknown placeholder {%s}", name)
			}
			if lit < i {
				t.parts = append(t.parts, part{lit: s[lit:i], ph: -1})
			}
			t.parts = append(t.parts, part{ph: ph})
			i += end + 2
			lit = i
			tokenEmpty = false
			continue
		case r == '}':
			return fail("unbalanced } at %d", i)
		case r == '.':
			if tokenEmpty {
				return fail("empty token at %d", i)
			}
			tokenEmpty = true
		case r == '*' || r == '>':
			return fail("wildcard %c at %d", r, i)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fail("white space or control character at %d", i)
		default:
			tokenEmpty = false
		}
		i += size
	}
	if tokenEmpty {
		return fail("empty last token")
	}
	if lit < len(s) {
		t.parts = append(t.parts, part{lit: s[lit:], ph: -1})
	}
	return t, nil
}

// MustParse is Parse for templates known to be valid, such as defaults; it panics on an
// error.
func MustParse(s string, names ...string) Template {
	t, err := Parse(s, names...)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as it was parsed.
func (t Template) String() string { return t.raw }

// Render fills the template: values[i] is the value of the placeholder names[i] given to
// Parse (a missing value is empty), each sanitised as by Token.
func (t Template) Render(values ...string) string {
	value := func(ph int) string {
		if ph < len(values) {
			return values[ph]
		}
		return ""
	}
	n := 0
	for _, p := range t.parts {
		if p.ph < 0 {
			n += len(p.lit)
		} else {
			// AppendToken writes at most MaxValueBytes of any value, and "_" for none:
			// a huge value must not size (and, through the string, pin) the subject.
			n += min(max(len(value(p.ph)), 1), MaxValueBytes)
		}
	}
	b := make([]byte, 0, n)
	for _, p := range t.parts {
		if p.ph < 0 {
			b = append(b, p.lit...)
		} else {
			b = AppendToken(b, value(p.ph))
		}
	}
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not used after: no copy
}

// Wildcard returns the subject that matches every rendering of the template: each token
// that holds a placeholder becomes *.
func (t Template) Wildcard() string {
	tokens := strings.Split(t.raw, ".")
	for i, tok := range tokens {
		if strings.Contains(tok, "{") {
			tokens[i] = "*"
		}
	}
	return strings.Join(tokens, ".")
}
