package main

import (
	"runtime/debug"
	"testing"

	"go.uber.org/zap"
)

// TestGCPercent pins the collector's setting: defaultGCPercent unless GOGC is in the
// environment, which wins.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "")
	setGCPercent(zap.NewNop())
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, defaultGCPercent)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime read it at start
	setGCPercent(zap.NewNop())
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150: GC percent %d, want GOGC's", got)
	}
}
