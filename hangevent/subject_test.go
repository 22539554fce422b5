package hangevent

import (
	"strings"
	"testing"
)

func TestSubject(t *testing.T) {
	tests := []struct {
		kind, team, call, want string
	}{
		{kind: KindHang, team: "team-42", call: "call-7f3a", want: "voice.hang.team-42.call-7f3a"},
		{kind: KindResolved, team: "", call: "c1", want: "voice.hang-resolved._.c1"},
		{kind: KindUnresolved, team: "a.b c", call: "x*y>z", want: "voice.hang-unresolved.a_b_c.x_y_z"},
		{kind: "conversation-update", team: "t", call: "c", want: ""},
	}
	for _, tt := range tests {
		if got := Subject(tt.kind, tt.team, tt.call); got != tt.want {
			t.Errorf("Subject(%q, %q, %q) = %q, want %q", tt.kind, tt.team, tt.call, got, tt.want)
		}
	}
}

// The same call id, long enough to be shortened, gives the same token as in wire.
func TestSubjectLongValue(t *testing.T) {
	long := strings.Repeat("x", 300)
	s := Subject(KindHang, "t", long)
	if len(s) > len("voice.hang.t.")+128 || !strings.HasPrefix(s, "voice.hang.t.xxx") || !strings.Contains(s, "~") {
		t.Errorf("Subject of a 300-byte call id = %q", s)
	}
	if SubjectToken(long) != s[len("voice.hang.t."):] {
		t.Error("SubjectToken and Subject disagree")
	}
}

func TestWildcards(t *testing.T) {
	want := []string{"voice.hang.*.*", "voice.hang-resolved.*.*", "voice.hang-unresolved.*.*"}
	got := Wildcards()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Wildcards = %q, want %q", got, want)
	}
}
