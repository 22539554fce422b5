package subject

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

var outputNames = []string{"callId", "teamId", "assistantId"}

// The cases are wire's (wire/subject_test.go): the engine and the subscribers must
// render the same subjects.
func TestRender(t *testing.T) {
	tests := []struct {
		give                              string
		callID, teamID, assistantID, want string
	}{
		{give: "voice.hang.{teamId}.{callId}", callID: "c1", teamID: "t1", want: "voice.hang.t1.c1"},
		{give: "voice.hang-resolved.{teamId}.{callId}", callID: "c1", want: "voice.hang-resolved._.c1"},
		{give: "hang.{assistantId}.{teamId}.{callId}", callID: "c.1", teamID: "t*1", assistantID: "a>1", want: "hang.a_1.t_1.c_1"},
		{give: "x.call-{callId}-end", callID: "a b\tc\x00d\u00a0e\u3000f\x7fg\u0085h", want: "x.call-a_b_c_d_e_f_g_h-end"},
		{give: "x.{callId}", callID: "é\xff€", want: "x.é_€"},
		{give: "x.{callId}{teamId}", callID: "", teamID: "", want: "x.__"},
		{give: "$JS.hang.{callId}", callID: "c1", want: "$JS.hang.c1"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			tmpl, err := Parse(tt.give, outputNames...)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.Render(tt.callID, tt.teamID, tt.assistantID); got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if tmpl.String() != tt.give {
				t.Errorf("String = %q, want %q", tmpl.String(), tt.give)
			}
		})
	}
}

func TestRenderMissingValues(t *testing.T) {
	tmpl := MustParse("voice.events.{callId}.{type}", "callId", "type")
	if got, want := tmpl.Render("c1"), "voice.events.c1._"; got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []string{
		"",
		"voice.hang.{teamID}",
		"voice.hang.{callId",
		"voice.hang.{{callId}}",
		"voice.hang.callId}",
		"voice..hang",
		".voice",
		"voice.",
		"voice.*.{callId}",
		"voice.>",
		"voice.hang {callId}",
		"voice.\x01",
		"voice.\xff",
		"voice.{}",
		"voice.{type}", // not among the names
	}
	for _, give := range tests {
		t.Run(give, func(t *testing.T) {
			if _, err := Parse(give, outputNames...); !errors.Is(err, ErrTemplate) {
				t.Errorf("Parse(%q) = %v, want ErrTemplate", give, err)
			}
		})
	}
}

func TestWildcard(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "voice.hang.{teamId}.{callId}", want: "voice.hang.*.*"},
		{give: "x.call-{callId}-end.y", want: "x.*.y"},
		{give: "plain.subject", want: "plain.subject"},
	}
	for _, tt := range tests {
		if got := MustParse(tt.give, outputNames...).Wildcard(); got != tt.want {
			t.Errorf("Wildcard(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestTokenBoundsLongValues(t *testing.T) {
	long := strings.Repeat("é.x", 2000) // 8 KB, with runes and dots to cut through
	a, b := Token(long+"a"), Token(long+"b")
	if len(a) > MaxValueBytes || len(b) > MaxValueBytes {
		t.Errorf("tokens of %d and %d bytes, want at most %d", len(a), len(b), MaxValueBytes)
	}
	if a == b {
		t.Error("two long values that differ at the end give the same token")
	}
	if !utf8.ValidString(a) || strings.ContainsAny(a, ".*> ") {
		t.Errorf("token %q is not a valid token", a)
	}
	if exact := strings.Repeat("c", MaxValueBytes); Token(exact) != exact {
		t.Errorf("a value of exactly %d bytes was changed", MaxValueBytes)
	}
	// Pinned: wire renders this value so, and a subscriber must find the same subject.
	if got, want := Token(strings.Repeat("c", MaxValueBytes+1)), strings.Repeat("c", MaxValueBytes-24)+"~"; !strings.HasPrefix(got, want) {
		t.Errorf("Token of a long value = %q, want the prefix %q", got, want)
	}
}

func FuzzToken(f *testing.F) {
	f.Add("c1")
	f.Add("a b.c*d>e\x00\xff")
	f.Add(strings.Repeat("é", 100))
	f.Fuzz(func(t *testing.T, v string) {
		tok := Token(v)
		if tok == "" || len(tok) > MaxValueBytes || !utf8.ValidString(tok) {
			t.Fatalf("Token(%q) = %q", v, tok)
		}
		if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f }) {
			t.Fatalf("Token(%q) = %q holds a character a token cannot", v, tok)
		}
	})
}
