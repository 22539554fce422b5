package detector

import (
	"math"
	"time"
)

// maxMillis is the largest magnitude of a Unix millisecond value that converts to
// nanoseconds without overflow.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// Anchor returns the anchor time of a message in engine nanoseconds (SPEC §2): its own
// timestamp t (Unix ms, 0 for none) clamped into [received-maxLag, received], where
// received is when its event reached the engine and wall the wall clock then (Unix ns),
// which t is read against. It trusts the pipeline's clock for the short delay between
// the end of a turn and the arrival of its event, and never lets clock skew or a
// backlog place a turn further in the past (which would make a hang out of nothing) or
// in the future. A message without a timestamp is anchored at received.
func Anchor(t, received, wall int64, maxLag time.Duration) int64 {
	if t == 0 {
		return received
	}
	var lag int64
	switch {
	case t >= maxMillis:
		lag = 0
	case t < 0 || wall < 0:
		// Before 1970: as far in the past as trusted (and no overflow below).
		lag = int64(maxLag)
	default:
		lag = min(max(wall-t*int64(time.Millisecond), 0), int64(maxLag))
	}
	return received - lag
}

// Deadline returns when a stretch whose first and latest user turns are anchored at
// first and last hangs under th at stage s, and why: the turn timeout (the tool timeout
// while a tool runs) runs from the latest turn, the max wait from the first; the earlier
// wins, and on a tie the turn timeout.
func Deadline(first, last int64, th *Thresholds, s Stage) (at int64, reason Reason) {
	at, reason = saturatingAdd(last, th.turn(s)), ReasonTurnTimeout
	if th.MaxWait > 0 {
		if mw := saturatingAdd(first, th.MaxWait); mw < at {
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
