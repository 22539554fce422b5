package detector

import (
	"math"
	"testing"
	"time"
)

func TestAnchor(t *testing.T) {
	recv := ms(10_000)
	tests := []struct {
		name string
		give Turn
		lag  time.Duration
		want int64
	}{
		{name: "no timestamp: received", give: Turn{}, lag: time.Second, want: recv},
		{name: "within the lag: trusted", give: Turn{HasTime: true, Time: t0 + 9_400}, lag: time.Second, want: ms(9_400)},
		{name: "exactly max-lag old", give: Turn{HasTime: true, Time: t0 + 9_000}, lag: time.Second, want: ms(9_000)},
		{name: "older than max-lag: clamped", give: Turn{HasTime: true, Time: t0 + 1_000}, lag: time.Second, want: ms(9_000)},
		{name: "in the future: clamped to received", give: Turn{HasTime: true, Time: t0 + 10_001}, lag: time.Second, want: recv},
		{name: "zero lag: always received", give: Turn{HasTime: true, Time: t0 + 9_999}, lag: 0, want: recv},
		{name: "epoch zero", give: Turn{HasTime: true, Time: 0}, lag: time.Second, want: ms(9_000)},
		{name: "huge: no overflow", give: Turn{HasTime: true, Time: math.MaxInt64}, lag: time.Second, want: recv},
		{name: "very negative: no overflow", give: Turn{HasTime: true, Time: math.MinInt64}, lag: time.Second, want: ms(9_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Anchor(tt.give, recv, tt.lag); got != tt.want {
				t.Errorf("Anchor() = %d, want %d (%+d ms)", got, tt.want, (got-tt.want)/1e6)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	cfg := DefaultConfig() // 5 s, 10 s
	off := Config{Timeout: 5 * time.Second}
	tests := []struct {
		name        string
		first, last int64
		cfg         *Config
		want        int64
		wantReason  Reason
	}{
		{name: "single turn: turn timeout", first: ms(0), last: ms(0), cfg: &cfg, want: ms(5000), wantReason: ReasonTurnTimeout},
		{name: "re-armed turn before max wait", first: ms(0), last: ms(4000), cfg: &cfg, want: ms(9000), wantReason: ReasonTurnTimeout},
		{name: "tie: turn timeout", first: ms(0), last: ms(5000), cfg: &cfg, want: ms(10_000), wantReason: ReasonTurnTimeout},
		{name: "max wait first", first: ms(0), last: ms(5001), cfg: &cfg, want: ms(10_000), wantReason: ReasonMaxWait},
		{name: "max wait disabled", first: ms(0), last: ms(9000), cfg: &off, want: ms(14_000), wantReason: ReasonTurnTimeout},
		{name: "saturates instead of wrapping", first: math.MaxInt64 - 1, last: math.MaxInt64 - 1, cfg: &cfg, want: math.MaxInt64, wantReason: ReasonTurnTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Deadline(tt.first, tt.last, tt.cfg)
			if got != tt.want || reason != tt.wantReason {
				t.Errorf("Deadline() = %d, %v; want %d, %v", got, reason, tt.want, tt.wantReason)
			}
		})
	}
}
