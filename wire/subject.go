package wire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/subject"
)

// The default subjects of the outputs (SPEC §3).
const (
	DefaultHangSubject       = "voice.hang.{teamId}.{callId}"
	DefaultResolvedSubject   = "voice.hang-resolved.{teamId}.{callId}"
	DefaultUnresolvedSubject = "voice.hang-unresolved.{teamId}.{callId}"
)

// ErrSubjectTemplate is wrapped by the errors of ParseSubjectTemplate.
var ErrSubjectTemplate = subject.ErrTemplate

// SubjectTemplate is a NATS subject with placeholders {callId}, {teamId} and
// {assistantId}: the subjects of the outputs (SPEC §3). The zero value renders as "".
type SubjectTemplate struct{ t subject.Template }

// The placeholders of an output subject, in the order Render takes their values.
var placeholders = []string{"callId", "teamId", "assistantId"}

// ParseSubjectTemplate parses a subject template. It refuses unknown placeholders,
// unbalanced braces, and templates that cannot render as a valid subject: an empty
// token, white space or control characters, or a wildcard (* or >) outside a
// placeholder. A placeholder always renders as a non-empty token part.
func ParseSubjectTemplate(s string) (SubjectTemplate, error) {
	t, err := subject.Parse(s, placeholders...)
	return SubjectTemplate{t}, err
}

// String returns the template as it was parsed.
func (t SubjectTemplate) String() string { return t.t.String() }

// Render fills the template. A value that is empty becomes "_", every character of a
// value that a subject token cannot hold (., *, >, white space, control characters,
// invalid UTF-8) becomes "_", and a value longer than 128 bytes keeps its first bytes
// and a hash of the whole (see subject.AppendToken).
func (t SubjectTemplate) Render(callID, teamID, assistantID string) string {
	return t.t.Render(callID, teamID, assistantID)
}

// Wildcard returns the subject that matches every rendering of the template: each token
// that holds a placeholder becomes *. It is what a subscriber to the outputs subscribes.
func (t SubjectTemplate) Wildcard() string { return t.t.Wildcard() }

// Subject renders the subject of an output, taking teamId (call.teamId, else
// call.orgId) and assistantId from out.Latest and, where it has none, from
// out.Snapshot.
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
