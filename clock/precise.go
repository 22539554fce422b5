package clock

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// realClock is the machine's clock with timers that fire on time: the runtime's own
// timers wake up to a millisecond late on Linux (the netpoller waits in whole
// milliseconds), and every deadline of an engine shard waits on one, so that
// millisecond is half the detection lag.
type realClock struct{ clockwork.Clock }

// NewTimer returns a timer that fires within tens of microseconds of its time.
func (realClock) NewTimer(d time.Duration) clockwork.Timer { return newPreciseTimer(d) }

// fineSpan is the end of a timer's wait that is slept in the kernel rather than on a
// runtime timer: more than the runtime timer's lateness, so that the kernel sleep
// starts before the time is due.
const fineSpan = 1500 * time.Microsecond

// preciseTimer waits on a runtime timer until fineSpan before its time, then sleeps the
// rest in the kernel (nanosleep, with the thread's timer slack set to 1 ns on Linux: the
// default 50 µs would be added to the wake), holding a thread for at most fineSpan.
// Like time.Timer since Go 1.23, Stop and Reset discard a value not yet received.
type preciseTimer struct {
	c      chan time.Time
	mu     sync.Mutex
	coarse *time.Timer
	gen    uint64 // counts the arms, so that a wake of an earlier one does nothing
	hook   func() // OnFire's
	active bool
	at     time.Time
}

var _ Hooked = (*preciseTimer)(nil)

// Hooked is a timer that can also call a function when it fires, on its own goroutine,
// just after it sends the time on its channel: what must begin on time whatever its
// owner is busy with. The machine's clock's timers are Hooked; a fake clock's are not.
type Hooked interface {
	clockwork.Timer
	// OnFire sets the function called at every firing from then on (nil: none). It is
	// called with the timer's lock held: it must not block, nor use the timer.
	OnFire(f func())
}

func newPreciseTimer(d time.Duration) *preciseTimer {
	t := &preciseTimer{c: make(chan time.Time, 1)}
	t.mu.Lock()
	t.arm(d)
	t.mu.Unlock()
	return t
}

// arm sets the timer to fire in d; mu is held.
func (t *preciseTimer) arm(d time.Duration) {
	t.gen++
	gen := t.gen
	t.active, t.at = true, time.Now().Add(d)
	if d <= fineSpan {
		go t.fine(gen)
		return
	}
	t.coarse = time.AfterFunc(d-fineSpan, func() { t.fine(gen) })
}

// fine sleeps until the time of arm gen, then fires (sends the time, then calls the
// hook) unless the timer was stopped or reset meanwhile.
func (t *preciseTimer) fine(gen uint64) {
	t.mu.Lock()
	at, live := t.at, gen == t.gen && t.active
	t.mu.Unlock()
	if !live {
		return
	}
	if d := time.Until(at); d > 0 {
		sleep(d)
	}
	t.mu.Lock()
	if gen != t.gen || !t.active {
		t.mu.Unlock()
		return
	}
	t.active = false
	select {
	case t.c <- time.Now():
	default:
	}
	// Last: what the hook wakes runs as soon as this goroutine ends, before what the
	// channel woke (the runtime runs the goroutine readied last first).
	if t.hook != nil {
		t.hook()
	}
	t.mu.Unlock()
}

// OnFire implements Hooked.
func (t *preciseTimer) OnFire(f func()) {
	t.mu.Lock()
	t.hook = f
	t.mu.Unlock()
}

// disarm stops the timer and discards a value not yet received; mu is held.
func (t *preciseTimer) disarm() bool {
	was := t.active
	t.gen++
	t.active = false
	if t.coarse != nil {
		t.coarse.Stop()
	}
	select {
	case <-t.c:
	default:
	}
	return was
}

// Chan returns the channel the timer sends its time on.
func (t *preciseTimer) Chan() <-chan time.Time { return t.c }

// Stop stops the timer and reports whether it was active.
func (t *preciseTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.disarm()
}

// Reset sets the timer to fire in d and reports whether it was active.
func (t *preciseTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.disarm()
	t.arm(d)
	return was
}
