package wire

import (
	"slices"
	"testing"
)

func TestOutputWildcards(t *testing.T) {
	tests := []struct {
		name           string
		hang, resolved string
		want           []string
	}{
		{name: "defaults", hang: DefaultHangSubject, resolved: DefaultResolvedSubject, want: []string{"voice.hang.*.*", "voice.hang-resolved.*.*"}},
		{name: "same wildcard", hang: "hw.{callId}", resolved: "hw.{teamId}", want: []string{"hw.*"}},
		{name: "same template", hang: "hw.{teamId}.{callId}", resolved: "hw.{teamId}.{callId}", want: []string{"hw.*.*"}},
		{name: "resolved narrower", hang: "hw.{callId}", resolved: "hw.resolved", want: []string{"hw.*"}},
		{name: "hang narrower", hang: "hw.hang", resolved: "hw.{callId}", want: []string{"hw.*"}},
		{name: "apart", hang: "a.{callId}", resolved: "b.{callId}", want: []string{"a.*", "b.*"}},
		{name: "other depth", hang: "hw.{callId}", resolved: "hw.{teamId}.{callId}", want: []string{"hw.*", "hw.*.*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hang, resolved := MustParseSubjectTemplate(tt.hang), MustParseSubjectTemplate(tt.resolved)
			if got := OutputWildcards(hang, resolved); !slices.Equal(got, tt.want) {
				t.Errorf("OutputWildcards(%q, %q) = %q, want %q", tt.hang, tt.resolved, got, tt.want)
			}
		})
	}
}
