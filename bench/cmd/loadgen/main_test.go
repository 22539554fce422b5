package main

import (
	"io"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/bench"
)

// TestParseQuick checks that --quick is read as the flag package reads a bool, and
// that the flags given override its preset wherever they stand.
func TestParseQuick(t *testing.T) {
	quick, def := bench.QuickConfig(), bench.DefaultConfig()
	tests := []struct {
		give         []string
		wantCalls    int
		wantRate     float64
		wantDuration time.Duration
	}{
		{give: nil, wantCalls: def.Calls, wantRate: def.Rate, wantDuration: def.Duration},
		{give: []string{"--quick"}, wantCalls: quick.Calls, wantRate: quick.Rate, wantDuration: quick.Duration},
		{give: []string{"-quick=1"}, wantCalls: quick.Calls, wantRate: quick.Rate, wantDuration: quick.Duration},
		{give: []string{"--quick=false"}, wantCalls: def.Calls, wantRate: def.Rate, wantDuration: def.Duration},
		{give: []string{"--rate", "123", "--quick"}, wantCalls: quick.Calls, wantRate: 123, wantDuration: quick.Duration},
		{give: []string{"--quick", "--calls=7"}, wantCalls: 7, wantRate: quick.Rate, wantDuration: quick.Duration},
	}
	for _, tt := range tests {
		cfg, err := parse(tt.give, io.Discard)
		if err != nil {
			t.Errorf("parse(%q) = %v", tt.give, err)
			continue
		}
		if cfg.Calls != tt.wantCalls || cfg.Rate != tt.wantRate || cfg.Duration != tt.wantDuration {
			t.Errorf("parse(%q): calls %d, rate %v, duration %v; want %d, %v, %v",
				tt.give, cfg.Calls, cfg.Rate, cfg.Duration, tt.wantCalls, tt.wantRate, tt.wantDuration)
		}
	}
}

// TestParseStress checks the stress preset: the binary against the baseline, real time
// only, and flags over it.
func TestParseStress(t *testing.T) {
	cfg, err := parse([]string{"--stress", "--binary", "bin/hangwatch", "--duration", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Stress || cfg.Calls != 20_000 || cfg.TextBytes != 600 || cfg.Duration != 5*time.Second ||
		len(cfg.Subjects) != 2 || cfg.Subjects[0] != bench.SubjectBinary || len(cfg.Phases) != 1 {
		t.Errorf("parse(--stress): %+v", cfg)
	}
}
