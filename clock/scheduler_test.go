package clock

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// countingClock is a fake clock that counts the calls made on its timers, to check that
// Rearm makes none when nothing changed.
type countingClock struct {
	*clockwork.FakeClock
	news, resets, stops atomic.Int64
}

func newCountingClock(now int64) *countingClock {
	return &countingClock{FakeClock: clockwork.NewFakeClockAt(time.Unix(0, now))}
}

func (c *countingClock) NewTimer(d time.Duration) clockwork.Timer {
	c.news.Add(1)
	return &countingTimer{Timer: c.FakeClock.NewTimer(d), c: c}
}

func (c *countingClock) calls() int64 { return c.news.Load() + c.resets.Load() + c.stops.Load() }

func (c *countingClock) nowNs() int64 { return c.Now().UnixNano() }

type countingTimer struct {
	clockwork.Timer
	c *countingClock
}

func (t *countingTimer) Reset(d time.Duration) bool {
	t.c.resets.Add(1)
	return t.Timer.Reset(d)
}

func (t *countingTimer) Stop() bool {
	t.c.stops.Add(1)
	return t.Timer.Stop()
}

// received reports whether a value waits on c, without blocking: the fake clock sends
// from inside Advance, so after Advance returns the value is there or it is not.
func received(c <-chan time.Time) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSchedulerFiresAtDeadline drives a scheduler as its shard loop would, one wake at
// a time: the timer is set to Next, does not fire a nanosecond early, and the deadline
// fires when the fake clock is exactly at it, after a few cascade wakes at most.
func TestSchedulerFiresAtDeadline(t *testing.T) {
	tests := []struct {
		name      string
		give      int64 // deadline after the start
		wantWakes int
	}{
		{name: "5ms+7ns", give: 5*ms + 7, wantWakes: 1},
		{name: "255ms", give: 255 * ms, wantWakes: 1},
		{name: "5s turn timeout", give: 5*sec + 3, wantWakes: 2},
		{name: "30min", give: 30 * 60 * sec, wantWakes: 4},
		{name: "2h call TTL", give: 2*hr + 1, wantWakes: 4},
		{name: "30 days", give: 30 * day, wantWakes: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			start := origin + 123*ms + 45
			fc := newCountingClock(start)
			s := NewScheduler(fc)
			s.Set(1, start+tt.give)
			s.Rearm()

			var got []fire
			wakes := 0
			for s.Len() > 0 {
				if err := fc.BlockUntilContext(ctx, 1); err != nil {
					t.Fatalf("timer not armed: %v", err)
				}
				next, _ := s.Next()
				fc.Advance(time.Duration(next - fc.nowNs() - 1))
				if received(s.C()) {
					t.Fatalf("timer fired a nanosecond before Next %d", next)
				}
				fc.Advance(1)
				if !received(s.C()) {
					t.Fatalf("timer did not fire at Next %d", next)
				}
				wakes++
				s.Wake(func(id uint32, at int64) { got = append(got, fire{wakes, id, fc.nowNs()}) })
				s.Rearm()
			}
			if want := []fire{{tt.wantWakes, 1, start + tt.give}}; !slices.Equal(got, want) {
				t.Errorf("fired %v (wake, id, clock), want %v", got, want)
			}
		})
	}
}

// TestSchedulerRearm follows the timer calls of one scheduler through a sequence of
// steps: Rearm calls the timer only when Next changed.
func TestSchedulerRearm(t *testing.T) {
	start := origin
	fc := newCountingClock(start)
	s := NewScheduler(fc)
	noFire := func(uint32, int64) { t.Error("fired") }
	steps := []struct {
		name      string
		give      func()
		wantCalls int64
	}{
		{name: "nothing armed", give: func() {}},
		{name: "first deadline creates the timer", give: func() { s.Set(1, start+5*sec) }, wantCalls: 1},
		{name: "again", give: func() {}},
		{name: "a later deadline", give: func() { s.Set(2, start+6*sec) }},
		{name: "an Advance that fires nothing", give: func() { s.Advance(start+ms, noFire) }},
		{name: "a backwards Advance", give: func() { s.Advance(start, noFire) }},
		{name: "an earlier deadline", give: func() { s.Set(3, start+sec) }, wantCalls: 1},
		{name: "moved within the same cascade", give: func() { s.Set(2, start+7*sec) }},
		{name: "cancel of the earliest", give: func() { s.Cancel(3) }, wantCalls: 1},
		{name: "cancel of the rest stops", give: func() { s.Cancel(1); s.Cancel(2) }, wantCalls: 1},
		{name: "stopped stays quiet", give: func() {}},
		{name: "armed again", give: func() { s.Set(4, start+sec) }, wantCalls: 1},
	}
	for _, tt := range steps {
		before := fc.calls()
		tt.give()
		s.Rearm()
		if got := fc.calls() - before; got != tt.wantCalls {
			t.Errorf("%s: %d timer calls, want %d", tt.name, got, tt.wantCalls)
		}
	}
}

func TestSchedulerStopsWhenEmpty(t *testing.T) {
	tests := []struct {
		name string
		give func(s *Scheduler)
	}{
		{name: "cancel then Rearm", give: func(s *Scheduler) { s.Cancel(1); s.Rearm() }},
		{name: "Stop", give: func(s *Scheduler) { s.Stop() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newCountingClock(origin)
			s := NewScheduler(fc)
			s.Set(1, origin+sec)
			s.Rearm()
			tt.give(s)
			if fc.stops.Load() != 1 {
				t.Errorf("%d Stop calls, want 1", fc.stops.Load())
			}
			fc.Advance(time.Hour)
			if received(s.C()) {
				t.Error("stopped timer fired")
			}
		})
	}
}

// TestSchedulerSpuriousWakes checks that a receive with nothing due, or a wake delayed
// behind other work, changes nothing but the timer.
func TestSchedulerSpuriousWakes(t *testing.T) {
	t.Run("Wake with nothing due", func(t *testing.T) {
		fc := newCountingClock(origin)
		s := NewScheduler(fc)
		var got []fire
		record := func(id uint32, at int64) { got = append(got, fire{0, id, at}) }
		s.Set(1, origin+200*ms)
		s.Rearm()
		s.Wake(record) // as if a stale value had been received
		s.Rearm()
		s.Advance(fc.nowNs(), record) // the other way to handle a wake
		s.Rearm()
		fc.Advance(200*time.Millisecond - 1)
		if received(s.C()) || len(got) != 0 {
			t.Fatalf("early: fired %v", got)
		}
		fc.Advance(1)
		if !received(s.C()) {
			t.Fatal("timer did not fire")
		}
		s.Wake(record)
		s.Rearm()
		if want := []fire{{0, 1, origin + 200*ms}}; !slices.Equal(got, want) {
			t.Errorf("fired %v, want %v", got, want)
		}
	})
	t.Run("no stale value after a Reset", func(t *testing.T) {
		fc := newCountingClock(origin)
		s := NewScheduler(fc)
		s.Set(1, origin+100*ms)
		s.Set(2, origin+200*ms)
		s.Rearm()
		fc.Advance(100 * time.Millisecond) // the timer fires, but an event is handled first
		s.Advance(fc.nowNs(), func(uint32, int64) {})
		s.Rearm()
		if received(s.C()) {
			t.Error("stale value left on C")
		}
		fc.Advance(100 * time.Millisecond)
		if !received(s.C()) {
			t.Error("timer did not fire for the second deadline")
		}
	})
	t.Run("wake delayed behind an event", func(t *testing.T) {
		fc := newCountingClock(origin)
		s := NewScheduler(fc)
		s.Set(1, origin+200*ms)
		s.Rearm()
		fc.Advance(200 * time.Millisecond)
		s.Advance(origin+199*ms, func(uint32, int64) { t.Error("fired early") }) // an event received just before
		s.Rearm()
		if !received(s.C()) {
			t.Fatal("the wake was lost")
		}
		n := 0
		s.Wake(func(uint32, int64) { n++ })
		if n != 1 {
			t.Errorf("fired %d times, want 1", n)
		}
	})
	t.Run("wall clock steps back", func(t *testing.T) {
		ctx := testContext(t)
		fc := newCountingClock(origin)
		s := NewScheduler(fc)
		s.Set(1, origin+200*ms)
		s.Rearm()
		fc.Advance(200 * time.Millisecond) // the timer fires...
		fc.Advance(-100 * time.Millisecond)
		if !received(s.C()) {
			t.Fatal("timer did not fire")
		}
		s.Wake(func(uint32, int64) { t.Error("fired before the deadline") }) // ...but the clock reads earlier
		s.Rearm()
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("timer not set again: %v", err)
		}
		fc.Advance(100 * time.Millisecond)
		if !received(s.C()) {
			t.Fatal("timer did not fire again")
		}
		n := 0
		s.Wake(func(uint32, int64) { n++ })
		if n != 1 {
			t.Errorf("fired %d times, want 1", n)
		}
	})
}

// TestSchedulerSpentTimer: after the timer fired for a deadline and the wheel moved
// past it, a new deadline at that same (now past) time must still wake the loop,
// although Next returns the time the timer was set for.
func TestSchedulerSpentTimer(t *testing.T) {
	fc := newCountingClock(origin)
	s := NewScheduler(fc)
	s.Set(1, origin+100*ms)
	s.Set(2, origin+200*ms)
	s.Rearm()
	fc.Advance(100 * time.Millisecond)
	if !received(s.C()) {
		t.Fatal("timer did not fire")
	}
	s.Advance(fc.nowNs(), func(uint32, int64) {}) // the Advance way, not Wake
	s.Set(3, origin+100*ms)
	s.Rearm()
	if !received(s.C()) {
		t.Fatal("no wake for a due deadline")
	}
	var got []fire
	s.Wake(func(id uint32, at int64) { got = append(got, fire{0, id, at}) })
	if want := []fire{{0, 3, origin + 100*ms}}; !slices.Equal(got, want) {
		t.Errorf("fired %v, want %v", got, want)
	}
}

func TestSchedulerPastDeadline(t *testing.T) {
	fc := newCountingClock(origin)
	s := NewScheduler(fc)
	s.Set(1, origin-sec)
	s.Rearm()
	if !received(s.C()) {
		t.Fatal("a timer for a past deadline did not fire at once")
	}
	var got []fire
	s.Wake(func(id uint32, at int64) { got = append(got, fire{0, id, at}) })
	if want := []fire{{0, 1, origin - sec}}; !slices.Equal(got, want) {
		t.Errorf("fired %v, want %v", got, want)
	}
}

// TestSchedulerShardLoop runs the loop of an engine shard in a goroutine on a fake
// clock. After each batch the loop reports Next; the test advances the clock exactly
// there, so every deadline must fire with the clock at its time, in order.
func TestSchedulerShardLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	start := origin + 777*ms
	fc := newCountingClock(start)

	type cmd struct {
		id     uint32
		at     int64 // 0: cancel
		report bool  // report after this command; otherwise the next one follows at once
	}
	type report struct {
		next  int64
		ok    bool
		fired []fire // at is the clock's time when it fired
	}
	cmds := make(chan cmd)
	reports := make(chan report)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		s := NewScheduler(fc)
		var fired []fire
		record := func(id uint32, at int64) {
			if now := fc.nowNs(); now != at {
				t.Errorf("id %d due at %d fired at %d", id, at, now)
			}
			fired = append(fired, fire{0, id, at})
		}
		for {
			reply := true
			select {
			case c := <-cmds:
				s.Advance(fc.nowNs(), record)
				if c.at == 0 {
					s.Cancel(c.id)
				} else {
					s.Set(c.id, c.at)
				}
				reply = c.report
			case <-s.C():
				s.Wake(record)
			case <-ctx.Done():
				s.Stop()
				return
			}
			s.Rearm()
			if !reply {
				continue
			}
			next, ok := s.Next()
			select {
			case reports <- report{next, ok, fired}:
				fired = nil
			case <-ctx.Done():
				s.Stop()
				return
			}
		}
	})

	give := []cmd{
		{id: 3, at: start + 30*60*sec + 3},
		{id: 1, at: start + 5*sec},
		{id: 2, at: start + 5*sec + ms},
		{id: 4, at: start + 2*hr},
		{id: 5, at: start + 4*sec},
		{id: 5}, // cancelled
		{id: 6, at: start + 250*ms, report: true},
	}
	for _, c := range give {
		cmds <- c
	}
	var got []uint32
	var r report
	for r = <-reports; r.ok; {
		fc.Advance(time.Duration(r.next - fc.nowNs()))
		r = <-reports
		for _, f := range r.fired {
			got = append(got, f.id)
		}
	}
	if want := []uint32{6, 1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("fired %v, want %v", got, want)
	}
}

// TestSchedulerRealClock runs one deadline on the real clock, a few milliseconds away.
func TestSchedulerRealClock(t *testing.T) {
	c := Real()
	s := NewScheduler(c)
	defer s.Stop()
	at := c.Now().Add(3 * time.Millisecond).UnixNano()
	s.Set(1, at)
	s.Rearm()
	fired := false
	for !fired {
		select {
		case <-s.C():
			s.Wake(func(id uint32, got int64) {
				fired = true
				if got != at {
					t.Errorf("fired at %d, want %d", got, at)
				}
			})
			s.Rearm()
		case <-time.After(10 * time.Second):
			t.Fatal("no wake")
		}
	}
	if now := c.Now().UnixNano(); now < at {
		t.Errorf("fired %v before the deadline", time.Duration(at-now))
	}
}

// TestSchedulerOnFire: on the machine's clock, the hook runs as the timer fires for a
// deadline, and not when it fires for a point where the wheel hands a level down.
func TestSchedulerOnFire(t *testing.T) {
	c := Real()
	s := NewScheduler(c)
	var hooks atomic.Int32
	s.OnFire(func() { hooks.Add(1) })
	// Past level 0 (256 ms): the timer first fires to hand a level down.
	at := c.Now().Add(600 * time.Millisecond).UnixNano()
	s.Set(1, at)
	s.Rearm()
	wakes := 0
	for fired := false; !fired; {
		select {
		case <-s.C():
			wakes++
			s.Wake(func(uint32, int64) { fired = true })
			s.Rearm()
		case <-time.After(10 * time.Second):
			t.Fatal("no wake")
		}
	}
	s.Stop() // the hook runs under the timer's lock: once Stop has had it, the hook is done
	if n := hooks.Load(); n != 1 {
		t.Errorf("%d hook calls, want 1: for the deadline, none for a hand-down", n)
	}
	if wakes < 2 {
		t.Errorf("%d wakes, want one to hand a level down first", wakes)
	}
}

// steppingClock is a fake clock that a test's goroutine steps right after the scheduler
// has read it (once, when step is set): the race of a test stepping the clock while
// its owner sets the timer.
type steppingClock struct {
	*clockwork.FakeClock
	step bool
}

func (c *steppingClock) Since(t time.Time) time.Duration {
	d := c.FakeClock.Since(t)
	if c.step {
		c.step = false
		c.FakeClock.Advance(time.Millisecond)
	}
	return d
}

// TestSchedulerClockStepsWhileArming: a clock stepped between the scheduler's reading
// and the timer's set does not leave the timer late by the step.
func TestSchedulerClockStepsWhileArming(t *testing.T) {
	c := &steppingClock{FakeClock: clockwork.NewFakeClockAt(time.Unix(0, 1_000_000_000))}
	s := NewScheduler(c)
	at := c.Now().Add(5 * time.Millisecond).UnixNano()
	s.Set(1, at)
	c.step = true
	s.Rearm() // reads the clock at 1 s; the clock is then at 1.001 s
	c.FakeClock.Advance(4 * time.Millisecond)
	select {
	case <-s.C():
	default:
		t.Fatalf("no wake at the deadline: the timer counted from the step")
	}
}
