package wire

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/hangwatch/hangwatch/detector"
)

// The default subjects of hang and hang-resolved events (SPEC §3).
const (
	DefaultHangSubject     = "voice.hang.{teamId}.{callId}"
	DefaultResolvedSubject = "voice.hang-resolved.{teamId}.{callId}"
)

// ErrSubjectTemplate is wrapped by the errors of ParseSubjectTemplate.
var ErrSubjectTemplate = errors.New("bad subject template")

// placeholder is a value a subject template is filled with.
type placeholder uint8

const (
	phNone placeholder = iota
	phCallID
	phTeamID
	phAssistantID
)

var placeholders = map[string]placeholder{
	"callId":      phCallID,
	"teamId":      phTeamID,
	"assistantId": phAssistantID,
}

// SubjectTemplate is a NATS subject with placeholders {callId}, {teamId} and
// {assistantId}. The zero value renders as "".
type SubjectTemplate struct {
	raw   string
	parts []subjectPart
}

// subjectPart is a literal, or a placeholder when ph is set.
type subjectPart struct {
	lit string
	ph  placeholder
}

// ParseSubjectTemplate parses a subject template. It refuses unknown placeholders,
// unbalanced braces, and templates that cannot render as a valid subject: an empty
// token, white space or control characters, or a wildcard (* or >) outside a
// placeholder. A placeholder always renders as a non-empty token part.
func ParseSubjectTemplate(s string) (SubjectTemplate, error) {
	fail := func(format string, args ...any) (SubjectTemplate, error) {
		return SubjectTemplate{}, fmt.Errorf("%w %q: %s", ErrSubjectTemplate, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty")
	}
	if !utf8.ValidString(s) {
		return fail("invalid UTF-8")
	}
	t := SubjectTemplate{raw: s}
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
			ph, ok := placeholders[name]
			if !ok {
				return fail("unknown placeholder {%s}", name)
			}
			if lit < i {
				t.parts = append(t.parts, subjectPart{lit: s[lit:i]})
			}
			t.parts = append(t.parts, subjectPart{ph: ph})
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
		t.parts = append(t.parts, subjectPart{lit: s[lit:]})
	}
	return t, nil
}

// String returns the template as it was parsed.
func (t SubjectTemplate) String() string { return t.raw }

// Render fills the template. A value that is empty becomes "_", and every character of
// a value that a subject token cannot hold (., *, >, white space, control characters,
// invalid UTF-8) becomes "_".
func (t SubjectTemplate) Render(callID, teamID, assistantID string) string {
	values := [...]string{phCallID: callID, phTeamID: teamID, phAssistantID: assistantID}
	n := 0
	for _, p := range t.parts {
		if p.ph == phNone {
			n += len(p.lit)
		} else {
			// appendToken writes at most maxValueBytes of any value, and "_" for none:
			// a huge call id must not size (and, through the string, pin) the subject.
			n += min(max(len(values[p.ph]), 1), maxValueBytes)
		}
	}
	b := make([]byte, 0, n)
	for _, p := range t.parts {
		if p.ph == phNone {
			b = append(b, p.lit...)
		} else {
			b = appendToken(b, values[p.ph])
		}
	}
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not used after: no copy
}

// maxValueBytes bounds what one placeholder adds to a subject. NATS refuses a command
// line over 4 KB and closes the connection for good, so a publisher's 5 KB call id must
// not make a subject of that size: a longer value keeps its first bytes and a hash of the
// whole, which keeps calls apart.
const maxValueBytes = 128

// appendToken appends a sanitised value.
func appendToken(dst []byte, v string) []byte {
	if v == "" {
		return append(dst, '_')
	}
	if len(v) > maxValueBytes {
		cut := maxValueBytes - 24
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		dst = appendToken(dst, v[:cut])
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

// Subject renders the subject of an output, taking teamId and assistantId from
// out.Latest and, where it has none, from out.Snapshot.
func Subject(t SubjectTemplate, callID string, out *detector.Output) string {
	var teamID, assistantID string
	if p, ok := out.Latest.(*Payload); ok && p != nil {
		teamID, assistantID = p.TeamID(), p.AssistantID()
	}
	if p, ok := out.Snapshot.(*Payload); ok && p != nil {
		if teamID == "" {
			teamID = p.TeamID()
		}
		if assistantID == "" {
			assistantID = p.AssistantID()
		}
	}
	return t.Render(callID, teamID, assistantID)
}

// Wildcard returns the subject that matches every rendering of the template: each token
// that holds a placeholder becomes *. It is what a subscriber to the outputs subscribes.
func (t SubjectTemplate) Wildcard() string {
	tokens := strings.Split(t.raw, ".")
	for i, tok := range tokens {
		if strings.Contains(tok, "{") {
			tokens[i] = "*"
		}
	}
	return strings.Join(tokens, ".")
}

// ErrSubject is wrapped by the errors of ValidateSubject.
var ErrSubject = errors.New("bad subject")

// ValidateSubject checks a subject to subscribe to: non-empty tokens without white
// space or control characters, * only as a whole token, > only as the whole last one.
func ValidateSubject(s string) error {
	fail := func(why string) error { return fmt.Errorf("%w %q: %s", ErrSubject, s, why) }
	if s == "" {
		return fail("empty")
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return fail("empty token")
		case tok == ">" && i != len(tokens)-1:
			return fail("> must be the last token")
		case tok == "*" || tok == ">":
		case strings.ContainsAny(tok, "*>"):
			return fail("a wildcard must be a whole token")
		case strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return fail("white space or control character")
		}
	}
	return nil
}

// Covers reports whether one of patterns covers subject: whether every subject that
// subject matches (it may hold wildcards itself) also matches one of the patterns.
func Covers(patterns []string, subject string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return subjectCovers(p, subject) })
}

// subjectCovers reports whether every subject that matches sub also matches pattern;
// both may hold wildcards.
func subjectCovers(pattern, sub string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, p := range pt {
		if p == ">" {
			return i < len(st)
		}
		if i >= len(st) {
			return false
		}
		switch s := st[i]; {
		case s == ">":
			return false // sub matches deeper subjects than p can
		case p == "*":
		case p != s:
			return false
		}
	}
	return len(pt) == len(st)
}

// MustParseSubjectTemplate is ParseSubjectTemplate for templates known to be valid, such
// as the defaults; it panics on an error.
func MustParseSubjectTemplate(s string) SubjectTemplate {
	t, err := ParseSubjectTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}
