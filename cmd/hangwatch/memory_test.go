package main

import (
	"runtime/debug"
	"testing"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/engine"
)

// TestGCPercent pins the collector's setting: engine.DefaultGCPercent unless GOGC is in the
// environment, which wins.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "")
	setGCPercent(zap.NewNop())
	if got := debug.SetGCPercent(100); got != engine.DefaultGCPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, engine.DefaultGCPercent)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime read it at start
	setGCPercent(zap.NewNop())
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150: GC percent %d, want GOGC's", got)
	}
}
