package detector

import (
	"math"
	"testing"
	"time"
)

func TestAnchor(t *testing.T) {
	recv, wall := eng(10_000), wallNs(10_000)
	tests := []struct {
		name string
		give int64 // the message's own timestamp, Unix ms
		lag  time.Duration
		want int64
	}{
		{name: "no timestamp: received", give: 0, lag: time.Second, want: recv},
		{name: "within the lag: trusted", give: t0 + 9_400, lag: time.Second, want: eng(9_400)},
		{name: "exactly max-lag old", give: t0 + 9_000, lag: time.Second, want: eng(9_000)},
		{name: "older than max-lag: clamped", give: t0 + 1_000, lag: time.Second, want: eng(9_000)},
		{name: "in the future: clamped to received", give: t0 + 10_001, lag: time.Second, want: recv},
		{name: "zero lag: always received", give: t0 + 9_999, lag: 0, want: recv},
		{name: "before the epoch", give: -5, lag: time.Second, want: eng(9_000)},
		{name: "huge: no overflow", give: math.MaxInt64, lag: time.Second, want: recv},
		{name: "very negative: no overflow", give: math.MinInt64, lag: time.Second, want: eng(9_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Anchor(tt.give, recv, wall, tt.lag); got != tt.want {
				t.Errorf("Anchor() = %d, want %d (%+d ms)", got, tt.want, (got-tt.want)/1e6)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	s := time.Second
	def := Thresholds{Timeout: 5 * s, MaxWait: 10 * s}
	tool := Thresholds{Timeout: 5 * s, MaxWait: 30 * s, ToolTimeout: 20 * s}
	tests := []struct {
		name        string
		first, last int64
		th          Thresholds
		stage       Stage
		want        int64
		wantReason  Reason
	}{
		{name: "single turn: turn timeout", first: eng(0), last: eng(0), th: def, want: eng(5000), wantReason: ReasonTurnTimeout},
		{name: "re-armed turn before max wait", first: eng(0), last: eng(4000), th: def, want: eng(9000), wantReason: ReasonTurnTimeout},
		{name: "tie: turn timeout", first: eng(0), last: eng(5000), th: def, want: eng(10_000), wantReason: ReasonTurnTimeout},
		{name: "max wait first", first: eng(0), last: eng(5001), th: def, want: eng(10_000), wantReason: ReasonMaxWait},
		{name: "max wait disabled", first: eng(0), last: eng(9000), th: Thresholds{Timeout: 5 * s}, want: eng(14_000), wantReason: ReasonTurnTimeout},
		{name: "awaiting-tool: the tool timeout", first: eng(0), last: eng(1000), th: tool, stage: StageAwaitingTool, want: eng(21_000), wantReason: ReasonTurnTimeout},
		{name: "awaiting-tool: max wait still applies", first: eng(0), last: eng(12_000), th: tool, stage: StageAwaitingTool, want: eng(30_000), wantReason: ReasonMaxWait},
		{name: "awaiting-tool without a tool timeout: the timeout", first: eng(0), last: eng(1000), th: def, stage: StageAwaitingTool, want: eng(6000), wantReason: ReasonTurnTimeout},
		{name: "after-tool: the timeout", first: eng(0), last: eng(1000), th: tool, stage: StageAfterTool, want: eng(6000), wantReason: ReasonTurnTimeout},
		{name: "saturates instead of wrapping", first: math.MaxInt64 - 1, last: math.MaxInt64 - 1, th: def, want: math.MaxInt64, wantReason: ReasonTurnTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Deadline(tt.first, tt.last, &tt.th, tt.stage)
			if got != tt.want || reason != tt.wantReason {
				t.Errorf("Deadline() = %d, %v; want %d, %v", got, reason, tt.want, tt.wantReason)
			}
		})
	}
}
