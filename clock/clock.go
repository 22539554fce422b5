// Package clock holds the injectable clock and the deadline scheduler of an engine
// shard: a hierarchical timing wheel (Wheel) that keeps any number of deadlines, and a
// Scheduler that drives a Wheel from one clock timer.
//
// Times inside the package are int64 Unix nanoseconds, so that a deadline costs 8
// bytes and comparing two of them costs one instruction.
package clock

import "github.com/jonboulle/clockwork"

// Clock is the injectable clock: the real clock in the binary, clockwork's FakeClock in
// tests. It is an alias so that callers can pass a *clockwork.FakeClock without a
// conversion.
type Clock = clockwork.Clock

// Real returns the clock of the machine. Its timers fire on time (see realClock).
func Real() Clock { return realClock{clockwork.NewRealClock()} }
