package sim

import (
	"sync"
	"time"
)

// limiter is a token bucket shared by the workers of a Runner, in the form of the
// generic cell rate algorithm: one theoretical arrival time instead of a token count,
// so that a reservation is one comparison and needs no refill ticks.
type limiter struct {
	mu       sync.Mutex
	interval int64 // nanoseconds per event
	depth    int64 // the burst, in nanoseconds: Burst intervals
	tat      int64 // when the bucket is full again, Unix nanoseconds
}

// newLimiter returns a limiter of rate events per second with a bucket of burst events
// (0: a tenth of a second's worth), or nil for an unlimited rate.
func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	interval := max(int64(float64(time.Second)/rate), 1)
	if burst <= 0 {
		burst = max(int(rate/10), 1)
	}
	return &limiter{interval: interval, depth: int64(burst) * interval}
}

// reserve takes a token and returns when it may be used: now, or later when the bucket
// is empty. A reservation is never given back: a worker that stops while waiting for
// one wastes it, which only makes the rate lower.
func (l *limiter) reserve(now int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tat = max(l.tat, now) + l.interval
	return max(now, l.tat-l.depth)
}
