package sim

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"empty", ""},
		{"ascii", "Thursday afternoon if possible."},
		{"quotes and backslash", `it says "overdue", path C:\x`},
		{"controls", "a\nb\rc\td\x00e\x1ff\x7f"},
		{"non-ascii", "José Müller, €120, 日本"},
		{"line separators", "a\u2028b\u2029c"},
		{"invalid utf-8", "a\xffb\xc3"},
		{"html is kept", "<b>&</b>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(tt.give); err != nil {
				t.Fatal(err)
			}
			got := appendString([]byte("x"), tt.give)
			if string(got[1:]) != string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
				t.Errorf("appendString(%q) = %s, want %s", tt.give, got[1:], want.Bytes())
			}
			var back string
			if err := json.Unmarshal(got[1:], &back); err != nil {
				t.Fatalf("not a JSON string: %v", err)
			}
		})
	}
}
