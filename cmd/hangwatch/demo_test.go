package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs a short demo against its embedded NATS server and checks that it shows
// all three outputs as they happen, with their stages and the ended reason of the
// unresolved, and that its summary finds them exact against the ground truth.
func TestDemo(t *testing.T) {
	var out, errs bytes.Buffer
	err := demoCmd([]string{"--calls", "40", "--duration", "9s", "--timeout", "1200ms", "--max-wait", "2500ms",
		"--stall-share", "0.25", "--hello-share", "0.05", "--tool-stall-share", "0.15", "--after-tool-share", "0.1",
		"--hang-up-share", "0.5", "--seed", "7", "--embedded-listen", "127.0.0.1:0"}, &out, &errs)
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errs.String())
	}
	got := out.String()
	for _, want := range []string{" HANG ", " RESOLVED ", " UNRESOLVED ", "customer-ended-call", "simulation-stopped",
		"awaiting-assistant", "awaiting-tool", "after-tool", "turn-timeout", "missed 0, false 0, duplicates 0, wrong 0, outcomes missed 0: exact"} {
		if !strings.Contains(got, want) {
			t.Errorf("the demo's output has no %q:\n%s", want, got)
		}
	}
}

func TestDemoFlags(t *testing.T) {
	tests := []struct {
		name string
		give []string
	}{
		{"shares above 1", []string{"--stall-share", "0.5", "--tool-stall-share", "0.6"}},
		{"tool timeout below the timeout", []string{"--tool-timeout", "1s"}},
		{"no duration", []string{"--duration", "0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := demoCmd(tt.give, &out, &out)
			if _, ok := err.(usageError); !ok {
				t.Errorf("demo %q = %v, want a usage error", tt.give, err)
			}
		})
	}
}
