package detector

import (
	"slices"
	"testing"
)

func TestParseRole(t *testing.T) {
	tests := []struct {
		give string
		want Role
	}{
		{"user", RoleUser}, {"USER", RoleUser}, {"User", RoleUser},
		{"assistant", RoleAssistant}, {"Assistant", RoleAssistant}, {"bot", RoleAssistant}, {"BOT", RoleAssistant},
		{"tool", RoleOther}, {"system", RoleOther}, {"tool_calls", RoleOther}, {"", RoleOther}, {"users", RoleOther},
	}
	for _, tt := range tests {
		if got := ParseRole(tt.give); got != tt.want {
			t.Errorf("ParseRole(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// turnIDs renders stretches as "first..last>reply" for compact comparison.
func turnIDs(st []Stretch) []string {
	var s []string
	for _, x := range st {
		v := x.First.ID + ".." + x.Last.ID
		if x.Answered {
			v += ">" + x.Reply.ID
		}
		s = append(s, v)
	}
	return s
}

func TestAddMessage(t *testing.T) {
	tests := []struct {
		name string
		give []msg
		want []string
	}{
		{name: "empty history", give: nil, want: nil},
		{name: "greeting only", give: []msg{greeting("w", 0)}, want: nil},
		{name: "one unanswered turn", give: []msg{greeting("w", 0), hello("u1", 1)}, want: []string{"u1..u1"}},
		{name: "answered turn", give: []msg{hello("u1", 1), reply("r1", 2)}, want: []string{"u1..u1>r1"}},
		{name: "run of turns", give: []msg{hello("u1", 1), hello("u2", 2), hello("u3", 3)}, want: []string{"u1..u3"}},
		{name: "second reply answers nobody", give: []msg{hello("u1", 1), reply("r1", 2), reply("r2", 3), hello("u2", 4)}, want: []string{"u1..u1>r1", "u2..u2"}},
		{name: "empty reply is none", give: []msg{hello("u1", 1), silent("r0", 2), hello("u2", 3)}, want: []string{"u1..u2"}},
		{name: "blank user text is no turn", give: []msg{u("u1", "\t \n", 1)}, want: nil},
		{name: "tool and system are neither", give: []msg{hello("u1", 1), r("t", "tool", 2), r("s", "system", 3)}, want: []string{"u1..u1"}},
		{name: "bot replies", give: []msg{hello("u1", 1), r("b", "bot", 2)}, want: []string{"u1..u1>b"}},
		{name: "many stretches", give: []msg{hello("u1", 1), reply("r1", 2), hello("u2", 3), reply("r2", 4), hello("u3", 5)}, want: []string{"u1..u1>r1", "u2..u2>r2", "u3..u3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := turnIDs(stretches(tt.give)); !slices.Equal(got, tt.want) {
				t.Errorf("stretches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAnsweredAfter(t *testing.T) {
	st := stretches([]msg{hello("u0", 0), reply("r1", 1), hello("u2", 2), hello("u3", 3), reply("r4", 4), hello("u5", 5), reply("r6", 6), hello("u7", 7)})
	tests := []struct {
		give   int32
		want   string
		wantOK bool
	}{
		{give: -1, want: "r1", wantOK: true},
		{give: 0, want: "r1", wantOK: true},
		{give: 1, want: "r4", wantOK: true},
		{give: 2, want: "r4", wantOK: true},
		{give: 3, want: "r4", wantOK: true},
		{give: 5, want: "r6", wantOK: true},
		{give: 6, wantOK: false},
		{give: 7, wantOK: false},
	}
	for _, tt := range tests {
		s, ok := AnsweredAfter(st, tt.give)
		if ok != tt.wantOK || (ok && s.Reply.ID != tt.want) {
			t.Errorf("AnsweredAfter(%d) = %q, %v; want %q, %v", tt.give, s.Reply.ID, ok, tt.want, tt.wantOK)
		}
	}
	if _, ok := AnsweredAfter(nil, 0); ok {
		t.Error("AnsweredAfter(nil) found a reply")
	}
	if u, ok := Unanswered(st); !ok || u.First.ID != "u7" {
		t.Errorf("Unanswered() = %v, %v; want u7", u.First.ID, ok)
	}
	if _, ok := Unanswered(st[:3]); ok {
		t.Error("Unanswered() of an answered history found a stretch")
	}
}
