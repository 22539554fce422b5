package detector

import "strings"

// Role is the speaker of a message, as far as detection cares.
type Role uint8

// RoleOther stands for every role that is neither a user turn nor a reply: a tool call,
// a system note, an unknown or absent role.
const (
	RoleOther Role = iota
	RoleUser
	RoleAssistant
)

// ParseRole maps a wire role to a Role, ignoring case; "bot" is the assistant.
func ParseRole(s string) Role {
	switch {
	case strings.EqualFold(s, "user"):
		return RoleUser
	case strings.EqualFold(s, "assistant"), strings.EqualFold(s, "bot"):
		return RoleAssistant
	}
	return RoleOther
}

// AddMessage adds the next message of a history to its stretches and returns them.
// Messages must be added in order; spoken reports whether the text is non-empty after
// trimming white space.
//
// A user turn (a user message with text) opens a stretch or extends the open one. A
// reply (an assistant message with text while a stretch is open) closes it. Any other
// message changes nothing: an assistant message with empty text leaves the caller in
// silence, and an assistant message with no user turn before it (a greeting, a second
// reply) answers nobody.
func AddMessage(st []Stretch, role Role, spoken bool, t Turn) []Stretch {
	if !spoken {
		return st
	}
	open := len(st) > 0 && !st[len(st)-1].Answered
	switch {
	case role == RoleUser && open:
		st[len(st)-1].Last = t
	case role == RoleUser:
		st = append(st, Stretch{First: t, Last: t})
	case role == RoleAssistant && open:
		st[len(st)-1].Reply, st[len(st)-1].Answered = t, true
	}
	return st
}

// Unanswered returns the open stretch of a history: the user turns after the last reply.
func Unanswered(st []Stretch) (Stretch, bool) {
	if n := len(st); n > 0 && !st[n-1].Answered {
		return st[n-1], true
	}
	return Stretch{}, false
}

// AnsweredAfter returns the first stretch whose reply stands after message index i: the
// reply that ended a stretch which began at i.
func AnsweredAfter(st []Stretch, i int32) (Stretch, bool) {
	n := len(st)
	if n > 0 && !st[n-1].Answered {
		n--
	}
	// Replies stand in history order, so the stretches ending after i are a suffix;
	// a snapshot that skipped many updates still costs O(log n).
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if st[m].Reply.Index > i {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo < n {
		return st[lo], true
	}
	return Stretch{}, false
}
