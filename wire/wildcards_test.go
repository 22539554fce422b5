package wire

import (
	"slices"
	"testing"
)

func TestOutputWildcards(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want []string
	}{
		{name: "defaults", give: []string{DefaultHangSubject, DefaultResolvedSubject, DefaultUnresolvedSubject},
			want: []string{"voice.hang.*.*", "voice.hang-resolved.*.*", "voice.hang-unresolved.*.*"}},
		{name: "same wildcard", give: []string{"hw.{callId}", "hw.{teamId}", "hw.{assistantId}"}, want: []string{"hw.*"}},
		{name: "same template", give: []string{"hw.{teamId}.{callId}", "hw.{teamId}.{callId}"}, want: []string{"hw.*.*"}},
		{name: "resolved narrower", give: []string{"hw.{callId}", "hw.resolved", "hw.unresolved"}, want: []string{"hw.*"}},
		{name: "hang narrower", give: []string{"hw.hang", "hw.{callId}", "other.{callId}"}, want: []string{"hw.*", "other.*"}},
		{name: "apart", give: []string{"a.{callId}", "b.{callId}", "c.{callId}"}, want: []string{"a.*", "b.*", "c.*"}},
		{name: "other depth", give: []string{"hw.{callId}", "hw.{teamId}.{callId}"}, want: []string{"hw.*", "hw.*.*"}},
		{name: "one", give: []string{"hw.{callId}"}, want: []string{"hw.*"}},
		{name: "none", give: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tmpls []SubjectTemplate
			for _, s := range tt.give {
				tmpls = append(tmpls, MustParseSubjectTemplate(s))
			}
			if got := OutputWildcards(tmpls...); !slices.Equal(got, tt.want) {
				t.Errorf("OutputWildcards(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}
