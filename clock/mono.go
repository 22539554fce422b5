package clock

import "time"

// Mono is the engine's time line: int64 nanoseconds that start at the wall time of its
// creation and then follow the clock's monotonic reading, so that no step of the
// machine's wall clock moves them (SPEC §2: deadlines run on the monotonic clock). With a
// fake clock it reads the fake time. The zero Mono is not usable; make one with NewMono.
type Mono struct {
	c     Clock
	epoch time.Time // a reading of c, with its monotonic part for the real clock
	base  int64     // epoch's wall time, Unix ns
}

// NewMono returns the time line of c, starting now.
func NewMono(c Clock) Mono {
	now := c.Now()
	return Mono{c: c, epoch: now, base: now.UnixNano()}
}

// Now returns the current engine time.
func (m Mono) Now() int64 { return m.base + int64(m.c.Since(m.epoch)) }

// Clock returns the clock the time line follows.
func (m Mono) Clock() Clock { return m.c }

// Of converts a reading of the clock to engine time: by its monotonic part when it has
// one (readings of the real clock's Now), else by its wall time against the clock's
// current wall time (a reading of a fake clock, or a time decoded from elsewhere, such
// as a stored time), so that a step of the wall clock since the time line began moves
// nothing. A time after now is taken as now. It also returns the wall time, capped
// likewise, in Unix ns.
func (m Mono) Of(t time.Time) (at, wall int64) {
	now := m.c.Now()
	if t.After(now) {
		t = now
	}
	// Sub uses the monotonic readings when both times have one, else the wall times.
	return m.base + int64(now.Sub(m.epoch)) - int64(now.Sub(t)), t.UnixNano()
}
