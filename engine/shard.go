package engine

import (
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// item is what a shard receives: an event, or a barrier (Sync, or the release of held
// deadlines after a replay). Both travel through one channel so that a barrier passes
// only after the events delivered before it.
type item struct {
	ev      *detector.Event
	synced  chan struct{} // closed once the barrier is handled
	release bool          // the replay is over: fire what is due and go live
}

// shard owns a share of the calls. Only its goroutine touches its calls and scheduler.
type shard struct {
	e      *Engine
	in     chan item
	stop   chan struct{} // closed when the source has returned
	exited chan struct{} // closed when run returns
	sched  *clock.Scheduler
	calls  map[string]uint32 // call id → slot
	slots  []slot            // indexed by slot; a slot is also the call's scheduler id
	free   []uint32          // slots to reuse
	fire   func(id uint32, at int64)
	stats  counters
	// held holds every deadline while a replay is applied: the wheel stays where it is
	// and the timer is off, until a release barrier.
	held bool

	// now is the time the ticks of the Advance under way use, read from the clock at
	// most once per Advance; 0 until read.
	now int64
}

// slot is a call held by a shard.
type slot struct {
	id   string
	call detector.Call
}

func newShard(e *Engine) *shard {
	s := &shard{
		e:      e,
		in:     make(chan item, e.queue),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		sched:  clock.NewScheduler(e.clock),
		calls:  make(map[string]uint32),
	}
	s.fire = s.tick
	return s
}

func (s *shard) run() {
	defer close(s.exited)
	defer s.sched.Stop()
	for {
		var timer <-chan time.Time
		if !s.held {
			timer = s.sched.C()
		}
		select {
		case it := <-s.in:
			s.handle(it)
		case <-timer:
			// Events already queued were received before this wake: apply them first,
			// each after the deadlines that passed before it arrived, so that a reply
			// that waited in the queue while the shard was busy is never outrun by its
			// deadline. Only what is queued now, so that a flood cannot hold the timer.
			for range len(s.in) {
				s.handle(<-s.in)
			}
			s.wake()
		case <-s.stop:
			s.drain()
			return
		}
		if !s.held {
			s.sched.Rearm()
		}
	}
}

// drain applies what was delivered before the source returned, then publishes every
// hang that is due.
func (s *shard) drain() {
	for {
		select {
		case it := <-s.in:
			s.handle(it)
		default:
			// Held means the replay never finished: firing from half a replay could
			// make false hangs, and the next start replays again.
			s.advance(s.e.clock.Now().UnixNano())
			return
		}
	}
}

func (s *shard) handle(it item) {
	if it.synced != nil {
		if it.release {
			s.held = false
		}
		s.advance(s.e.clock.Now().UnixNano())
		close(it.synced)
		return
	}
	s.apply(it.ev)
	if it.ev.Done != nil {
		it.ev.Done()
	}
}

func (s *shard) apply(ev *detector.Event) {
	if ev.Type == detector.TypeOutput {
		s.stats.ignored.Add(1)
		return
	}
	// A deadline that passed before the event arrived fires first: the caller was left
	// in silence before this event could change anything.
	s.advance(ev.Received)
	id, ok := s.calls[ev.CallID]
	if !ok {
		if !s.e.admit() {
			s.stats.refused.Add(1)
			s.e.limited.Warn("call refused: max-calls reached",
				zap.String("call_id", ev.CallID), zap.String("team_id", teamOf(ev.Payload)), zap.Int64("max_calls", s.e.maxCalls))
			return
		}
		id = s.alloc(strings.Clone(ev.CallID)) // the event's id may alias its payload
	}
	c := &s.slots[id].call
	before, retained := c.State(), c.Retained()
	st := c.Apply(&s.e.cfg, ev)
	s.stats.events.Add(1)
	switch {
	case st.Ignored:
		s.stats.ignored.Add(1)
	case st.Ended:
		s.stats.ended.Add(1)
	}
	s.account(before, c.State(), retained, c.Retained())
	s.step(id, st)
}

// advance moves the scheduler to t and ticks every call whose wake time has come;
// nothing while deadlines are held.
func (s *shard) advance(t int64) {
	if s.held {
		return
	}
	s.now = 0
	s.sched.Advance(t, s.fire)
}

// wake handles a receive from the scheduler's timer: it ticks every call whose wake time
// has come by the clock's now.
func (s *shard) wake() {
	s.now = 0
	s.sched.Wake(s.fire)
}

// tick is called by the scheduler for a call whose wake time has come.
func (s *shard) tick(id uint32, _ int64) {
	if s.now == 0 {
		// Never before the time the wheel moved to, so that a tick always finds its wake
		// time passed and makes progress, even if the wall clock stepped back since.
		s.now = max(s.e.clock.Now().UnixNano(), s.sched.Now())
	}
	c := &s.slots[id].call
	before, retained := c.State(), c.Retained()
	st := c.Tick(&s.e.cfg, s.now)
	if st.Forget {
		s.stats.expired.Add(1)
		s.stats.state[before].Add(-1)
		s.stats.retained.Add(-int64(retained))
	} else {
		s.account(before, c.State(), retained, c.Retained())
	}
	s.step(id, st)
}

// step carries out a Step of the call in slot id.
func (s *shard) step(id uint32, st detector.Step) {
	if st.Output != nil {
		s.publish(s.slots[id].id, st.Output)
	}
	if st.Forget {
		s.release(id)
		return
	}
	// A later wake than the one scheduled is left to a harmless early tick: the TTL moves
	// with every event, and rescheduling it each time would cost more than that tick.
	if at, ok := s.sched.Deadline(id); !ok || st.Wake < at {
		s.sched.Set(id, st.Wake)
	}
}

func (s *shard) publish(callID string, out *detector.Output) {
	switch out.Kind {
	case detector.KindHang:
		if out.Reason == detector.ReasonMaxWait {
			s.stats.hangsMaxWait.Add(1)
		} else {
			s.stats.hangsTurnTimeout.Add(1)
		}
		s.e.log.Info("hang", zap.String("call_id", callID), zap.String("team_id", teamOf(out.Latest)), zap.Stringer("reason", out.Reason),
			zap.String("user_message_id", out.UserMessageID), zap.Duration("wait", out.Wait.Round(time.Millisecond)))
	case detector.KindResolved:
		s.stats.resolved.Add(1)
		s.e.log.Info("hang resolved", zap.String("call_id", callID), zap.String("team_id", teamOf(out.Latest)), zap.Stringer("reason", out.Reason),
			zap.String("reply_message_id", out.ReplyMessageID), zap.Duration("wait", out.Wait.Round(time.Millisecond)))
	}
	if err := s.e.sink.Publish(callID, out); err != nil {
		s.stats.publishErrors.Add(1)
		s.e.limited.Error("publish", zap.String("call_id", callID), zap.Stringer("kind", out.Kind), zap.Error(err))
	}
}

// teamed is a payload that knows its call's team, for logs.
type teamed interface{ TeamID() string }

func teamOf(p detector.Payload) string {
	if t, ok := p.(teamed); ok {
		return t.TeamID()
	}
	return ""
}

// alloc takes a slot for a new call.
func (s *shard) alloc(callID string) uint32 {
	var id uint32
	if n := len(s.free); n > 0 {
		id, s.free = s.free[n-1], s.free[:n-1]
	} else {
		id = uint32(len(s.slots))
		s.slots = append(s.slots, slot{})
	}
	s.slots[id].id = callID
	s.calls[callID] = id
	s.stats.state[detector.StateIdle].Add(1)
	return id
}

// release frees the slot of a forgotten call.
func (s *shard) release(id uint32) {
	delete(s.calls, s.slots[id].id)
	s.sched.Cancel(id)
	s.slots[id] = slot{}
	s.free = append(s.free, id)
	s.e.calls.Add(-1)
}

// account updates the gauges after a call moved from one state to another.
func (s *shard) account(before, after detector.State, retainedBefore, retainedAfter int) {
	if before != after {
		s.stats.state[before].Add(-1)
		s.stats.state[after].Add(1)
	}
	if retainedBefore != retainedAfter {
		s.stats.retained.Add(int64(retainedAfter - retainedBefore))
	}
}
