package detector

import (
	"math"
	"time"
)

// maxMillis is the largest magnitude of a Unix millisecond value that converts to
// nanoseconds without overflow.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// Anchor returns the anchor time of a message, in Unix nanoseconds: its timestamp
// clamped into [received-maxLag, received]. It trusts the pipeline's clock for the short
// delay between the end of a turn and the arrival of its event, and never lets clock
// skew or a backlog place a turn further in the past (which would make a hang out of
// nothing) or in the future. A message without a timestamp is anchored at received.
func Anchor(t Turn, received int64, maxLag time.Duration) int64 {
	if !t.HasTime {
		return received
	}
	lo := received - int64(maxLag)
	switch {
	case t.Time >= maxMillis:
		return received
	case t.Time <= -maxMillis:
		return lo
	}
	return min(max(t.Time*int64(time.Millisecond), lo), received)
}

// Deadline returns when a stretch whose first and latest user turns are anchored at
// first and last hangs, and why: the turn timeout runs from the latest turn, the max wait
// from the first; the earlier wins, and on a tie the turn timeout.
func Deadline(first, last int64, cfg *Config) (at int64, reason Reason) {
	at, reason = saturatingAdd(last, cfg.Timeout), ReasonTurnTimeout
	if cfg.MaxWait > 0 {
		if mw := saturatingAdd(first, cfg.MaxWait); mw < at {
			at, reason = mw, ReasonMaxWait
		}
	}
	return at, reason
}

// saturatingAdd adds d to t, stopping at the ends of int64 rather than wrapping around.
func saturatingAdd(t int64, d time.Duration) int64 {
	s := t + int64(d)
	switch {
	case d > 0 && s < t:
		return math.MaxInt64
	case d < 0 && s > t:
		return math.MinInt64
	}
	return s
}
