package sim

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	const ms = int64(time.Millisecond)
	tests := []struct {
		name  string
		rate  float64
		burst int
		give  []int64 // times of the reservations, in ms
		want  []int64 // when each may go, in ms
	}{
		{"a burst, then one per interval", 10, 2, []int64{0, 0, 0, 0}, []int64{0, 0, 100, 200}},
		{"spaced out", 10, 2, []int64{0, 500, 1000}, []int64{0, 500, 1000}},
		{"refilled after a pause", 10, 2, []int64{0, 0, 0, 1000, 1000, 1000}, []int64{0, 0, 100, 1000, 1000, 1100}},
		{"default burst of a tenth of a second", 100, 0, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.rate, tt.burst)
			for i, at := range tt.give {
				if got := l.reserve(at * ms); got != tt.want[i]*ms {
					t.Errorf("reservation %d at %dms may go at %vms, want %dms", i, at, float64(got)/float64(ms), tt.want[i])
				}
			}
		})
	}
	if newLimiter(0, 10) != nil {
		t.Error("a zero rate is limited")
	}
}
