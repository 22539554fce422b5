package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPreciseTimer checks the real clock's timer against the contract of time.Timer: it
// fires once, not before its time; Stop and Reset report whether it was active and
// discard a value not yet received; a stopped timer sends nothing. (It runs on the real
// clock, the only one this timer serves, with waits of milliseconds; how late it fires
// is measured, not asserted: see the README's Performance section.)
func TestPreciseTimer(t *testing.T) {
	const d = 3 * time.Millisecond
	nothing := func(tm *preciseTimer, within time.Duration) {
		t.Helper()
		select {
		case v := <-tm.Chan():
			t.Fatalf("the timer sent %v, want nothing", v)
		case <-time.After(within):
		}
	}
	tests := []struct {
		name string
		give time.Duration
	}{{"short, kernel sleep only", time.Millisecond}, {"long, runtime timer first", fineSpan + d}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			tm := newPreciseTimer(tt.give)
			at := <-tm.Chan()
			if got := at.Sub(start); got < tt.give {
				t.Errorf("fired after %v, before its time %v", got, tt.give)
			}
			if tm.Stop() {
				t.Error("Stop of a timer that fired reports it active")
			}
			nothing(tm, 2*d)
		})
	}

	t.Run("stop before it fires", func(t *testing.T) {
		tm := newPreciseTimer(d)
		if !tm.Stop() {
			t.Error("Stop of an active timer reports it inactive")
		}
		nothing(tm, 3*d)
	})
	t.Run("stop in the kernel sleep", func(t *testing.T) {
		tm := newPreciseTimer(fineSpan) // straight into the kernel sleep
		time.Sleep(fineSpan / 3)
		tm.Stop()
		nothing(tm, 3*fineSpan)
	})
	t.Run("reset discards a value not received", func(t *testing.T) {
		tm := newPreciseTimer(time.Millisecond)
		time.Sleep(3 * d) // it fired; its value waits
		start := time.Now()
		if tm.Reset(d) {
			t.Error("Reset of a timer that fired reports it active")
		}
		at := <-tm.Chan()
		if at.Before(start.Add(d)) {
			t.Errorf("received a value of %v, before the reset's time", at.Sub(start))
		}
		nothing(tm, 2*d)
	})
	t.Run("reset postpones", func(t *testing.T) {
		start := time.Now()
		tm := newPreciseTimer(fineSpan + d)
		if !tm.Reset(fineSpan + 3*d) {
			t.Error("Reset of an active timer reports it inactive")
		}
		if at := <-tm.Chan(); at.Sub(start) < fineSpan+3*d {
			t.Errorf("fired after %v, before the reset's time", at.Sub(start))
		}
	})
	t.Run("hook as it fires", func(t *testing.T) {
		var hooked atomic.Int32
		tm := newPreciseTimer(d)
		tm.OnFire(func() { hooked.Add(1) })
		<-tm.Chan()
		tm.Stop() // the hook runs under the timer's lock: once Stop has it, the hook is done
		if n := hooked.Load(); n != 1 {
			t.Errorf("the hook ran %d times for one firing, want 1", n)
		}
		tm.Reset(d)
		<-tm.Chan()
		tm.Stop()
		if n := hooked.Load(); n != 2 {
			t.Errorf("the hook ran %d times after a reset fired, want 2", n)
		}
		tm.Reset(d)
		tm.Stop()
		nothing(tm, 3*d)
		if n := hooked.Load(); n != 2 {
			t.Errorf("the hook ran %d times, want 2: a stopped timer called it", n)
		}
	})
}
