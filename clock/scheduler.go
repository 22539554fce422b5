package clock

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Scheduler is a Wheel driven by one clock timer: the deadlines of an engine shard
// behind a single timer, owned by the shard's goroutine. It embeds the Wheel, so Set,
// Cancel, Deadline, Len, Next, Now and Advance are the Wheel's. Like the Wheel it is not
// safe for concurrent use and starts no goroutine.
//
// The shard loop applies a batch of changes, then calls Rearm:
//
//	for {
//		select {
//		case ev := <-in:
//			s.Advance(ev.Received, fire)
//			apply(ev) // Set and Cancel
//		case <-s.C():
//			s.Wake(fire)
//		case <-ctx.Done():
//			s.Stop()
//			return
//		}
//		s.Rearm()
//	}
//
// A receive from C may be spurious (a cascade point, or with the fake clock a value left
// over from before a Reset): Advance then fires nothing and Rearm keeps the timer.
type Scheduler struct {
	Wheel

	clock Clock
	mono  Mono
	timer clockwork.Timer // created by the first Rearm that has a deadline to wait for
	at    int64           // the wheel time the timer was last set for
	armed bool            // the timer runs for at and its wake has not been handled
	hook  func()          // OnFire's
	// deadline is the deadline the timer runs for, or 0 when it runs for a point where
	// the wheel hands a level down: the hook is called for a firing at or after it only.
	// Read by the timer's goroutine, whose firing may be of the arm before.
	deadline atomic.Int64
}

// NewScheduler returns a Scheduler with no deadline, on a time line of c of its own,
// whose wheel starts at c's now.
func NewScheduler(c Clock) *Scheduler { return NewSchedulerOn(NewMono(c), 0) }

// NewSchedulerOn returns a Scheduler on the time line m, with room for ids below n (see
// NewWheelSize). The deadlines it keeps are times of m.
func NewSchedulerOn(m Mono, n int) *Scheduler {
	s := &Scheduler{clock: m.Clock(), mono: m}
	s.init(m.Now(), n)
	return s
}

// C returns the channel of the timer; a receive means "call Wake", or equally
// Advance(clock now). It is nil, which blocks forever in a select, until the first
// Rearm with a deadline, so call C anew in each select rather than keeping it. The
// timer is created lazily so that a Scheduler with nothing armed holds no waiter on a
// fake clock, which would confuse BlockUntilContext in tests.
func (s *Scheduler) C() <-chan time.Time {
	if s.timer == nil {
		return nil
	}
	return s.timer.Chan()
}

// Wake handles a receive from C: it advances the wheel to the clock's now, firing what
// is due, and notes that the timer has fired, so that the next Rearm sets it again even
// if Next has not changed. Advance(clock now) does the same except for that note, which
// only matters when the wall clock steps back: a timer (which runs on the monotonic
// clock) then fires before its deadline in wall-clock terms, and without the note
// Rearm would see an unchanged Next and leave the timer spent.
func (s *Scheduler) Wake(fire func(id uint32, at int64)) {
	s.armed = false
	s.Advance(s.mono.Now(), fire)
}

// Rearm sets the timer to Next after a batch of Set, Cancel and Advance calls, or stops
// it when nothing is armed. When Next has not changed and still lies ahead of the wheel
// it makes no timer call and reads no clock.
func (s *Scheduler) Rearm() {
	next, deadline, ok := s.next()
	if !ok {
		if s.armed {
			s.timer.Stop()
			s.armed = false
		}
		return
	}
	s.arm(next, deadline)
}

// arm sets the timer to fire at next, unless it runs for next already. A target at or
// before the wheel's time has fired or is about to, so the timer is spent even if it
// was set for it (a deadline set in the past equal to it).
func (s *Scheduler) arm(next int64, deadline bool) {
	if s.armed && next == s.at && next > s.Now() {
		return
	}
	if deadline {
		s.deadline.Store(next)
	} else {
		s.deadline.Store(0)
	}
	now := s.mono.Now()
	s.set(time.Duration(subSat(next, now)))
	// A timer counts from the clock's time when it is set: a clock stepped between the
	// reading above and the set (a fake clock, by a test's goroutine) would leave it late
	// by the whole step, and the deadline would wait for the next one. Set it again.
	if later := s.mono.Now(); later-now >= int64(stepped) {
		s.set(time.Duration(subSat(next, later)))
	}
	s.at, s.armed = next, true
}

// stepped is how far the clock must move between reading it and setting the timer for
// arm to set it again: a step of a fake clock; the machine's moves less (unless the
// goroutine is descheduled there, and then resetting costs little).
const stepped = time.Microsecond

// set sets the timer to fire in d.
func (s *Scheduler) set(d time.Duration) {
	if s.timer == nil {
		s.timer = s.clock.NewTimer(d)
		if h, ok := s.timer.(Hooked); ok && s.hook != nil {
			h.OnFire(s.fired)
		}
		return
	}
	// The fake timer keeps a value sent before Reset; drop it to spare a spurious wake.
	// Nothing is lost: the timer is set to the earliest thing to do.
	select {
	case <-s.timer.Chan():
	default:
	}
	s.timer.Reset(d)
}

// OnFire has f called on the timer's own goroutine each time it fires for a deadline
// (not for a point where the wheel hands a level down), just after the wake is sent on
// C, when the clock's timers can (Hooked: the machine's clock; not a fake one): what must
// begin when a deadline is due even while the owner, who waits on C, is busy. The owner
// still handles every wake. f must not block. Call it before the first Rearm.
func (s *Scheduler) OnFire(f func()) { s.hook = f }

// fired is the timer's hook: OnFire's, when the timer fires for a deadline.
func (s *Scheduler) fired() {
	if at := s.deadline.Load(); at != 0 && s.mono.Now() >= at {
		s.hook()
	}
}

// RearmAfter sets the timer to the first deadline after t (Wheel.NextAfter), or stops
// it when none is known: the owner is waiting for evidence that covers the deadlines up
// to t, and a deadline after t needs its own.
func (s *Scheduler) RearmAfter(t int64) {
	next, ok := s.NextAfter(t)
	if !ok {
		s.Stop()
		return
	}
	s.arm(next, true)
}

// Due reports whether the next thing to do is due by now: then a timer would fire at
// once, and the owner that cannot advance the wheel that far (it waits for evidence that
// its input has caught up) stops the timer instead of rearming it, or sets it past the
// deadlines it waits for (RearmAfter).
func (s *Scheduler) Due(now int64) bool {
	next, ok := s.Next()
	return ok && next <= now
}

// Stop stops the timer. A later Rearm starts it again.
func (s *Scheduler) Stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.armed = false
}

// subSat returns a-b, saturated instead of wrapping round.
func subSat(a, b int64) int64 {
	d := a - b
	if (a >= 0) != (b >= 0) && (d >= 0) != (a >= 0) {
		if a >= 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return d
}
