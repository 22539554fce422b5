package hangevent

import (
	"github.com/hangwatch/hangwatch/internal/subject"
)

// The default subjects of the outputs (hangwatch run's --hang-subject,
// --resolved-subject and --unresolved-subject).
const (
	DefaultHangSubject       = "voice.hang.{teamId}.{callId}"
	DefaultResolvedSubject   = "voice.hang-resolved.{teamId}.{callId}"
	DefaultUnresolvedSubject = "voice.hang-unresolved.{teamId}.{callId}"
)

var defaultTemplates = map[string]subject.Template{
	KindHang:       subject.MustParse(DefaultHangSubject, "callId", "teamId"),
	KindResolved:   subject.MustParse(DefaultResolvedSubject, "callId", "teamId"),
	KindUnresolved: subject.MustParse(DefaultUnresolvedSubject, "callId", "teamId"),
}

// Subject returns the default subject of an output of the given kind for a call, with
// the values sanitised as hangwatch sanitises them (see SubjectToken); "" for a kind
// that is not one of the three. It is the subject to subscribe to for one call's or one
// team's outputs.
func Subject(kind, teamID, callID string) string {
	t, ok := defaultTemplates[kind]
	if !ok {
		return ""
	}
	return t.Render(callID, teamID)
}

// Wildcards returns the subjects that together match every output on the default
// subjects: voice.hang.*.*, voice.hang-resolved.*.* and voice.hang-unresolved.*.*.
func Wildcards() []string {
	return []string{
		defaultTemplates[KindHang].Wildcard(),
		defaultTemplates[KindResolved].Wildcard(),
		defaultTemplates[KindUnresolved].Wildcard(),
	}
}

// SubjectToken returns a value as hangwatch writes it into a subject token: empty
// becomes "_"; ., *, >, white space and control characters become "_"; a value longer
// than 128 bytes keeps its first bytes, then "~" and a hash of the whole.
func SubjectToken(v string) string { return subject.Token(v) }
