// Package detector is the hang detection state machine of one call: SPEC §2 and
// nothing else. It starts no goroutine, does no I/O and reads no clock: it is fed events
// with the time they were received and ticks with the current time, and it answers with a
// Step that says what to publish and when it next needs a tick.
package detector

import (
	"strconv"
	"strings"
	"time"
)

// Call is the detection state of one call. The zero value is a call that has seen no
// event yet. An idle call keeps 24 bytes and no history; a call with an unanswered
// stretch also keeps the payload of its latest snapshot, which its hang must carry.
// A Call is not safe for concurrent use.
type Call struct {
	last     int64 // Received of the latest event, Unix nanoseconds
	messages int32 // length of the latest applied snapshot
	ended    bool
	open     *stretch // the unanswered stretch; nil while idle
}

// stretch is the unanswered stretch of a call.
type stretch struct {
	first, last mark
	hung        bool
	// owned says that the ids of first and last are copies. Until then they may alias
	// snapshot, which keeps their bytes: the common stretch, answered before it hangs
	// or grows, copies nothing.
	owned  bool
	reason Reason // why it hung
	// snapshot and latest are what the hang will carry; they are let go once it has.
	snapshot, latest Payload
}

// own copies the ids of the stretch, before it lets go of the snapshot they may alias.
func (o *stretch) own() {
	if !o.owned {
		o.first.id, o.last.id = cloneIDs(o.first.id, o.last.id)
		o.owned = true
	}
}

// mark is a user turn as the stretch remembers it.
type mark struct {
	id     string
	index  int32
	anchor int64
}

// State is where a call stands.
type State uint8

// The states of a call.
const (
	StateIdle  State = iota // nothing unanswered
	StateArmed              // a stretch is unanswered and has not hung
	StateHung               // a stretch hung and is still unanswered
	StateEnded              // the call ended; it is remembered so late events are ignored
)

// Step is what the engine must do after an event or a tick.
type Step struct {
	// Output is the hang or hang-resolved to publish, nil when there is none. Outputs
	// are rare, so only they cost an allocation.
	Output *Output
	// Wake is when the call next needs a Tick, in Unix nanoseconds. An earlier tick is
	// harmless.
	Wake int64
	// Forget says that the call has expired: drop it.
	Forget bool
	// Ended says that this event ended the call.
	Ended bool
	// Ignored says that the event changed nothing: a stale snapshot, an event for an
	// ended call, or hangwatch's own output.
	Ignored bool
}

// State returns where the call stands.
func (c *Call) State() State {
	switch {
	case c.ended:
		return StateEnded
	case c.open == nil:
		return StateIdle
	case c.open.hung:
		return StateHung
	}
	return StateArmed
}

// Retained returns the number of payload bytes the call keeps.
func (c *Call) Retained() int {
	o := c.open
	if o == nil {
		return 0
	}
	n := 0
	if o.snapshot != nil {
		n = o.snapshot.Len()
	}
	if o.latest != nil && o.latest != o.snapshot {
		n += o.latest.Len()
	}
	return n
}

// Apply applies an event received at ev.Received. The strings of the event must alias
// its payload, whose bytes never change, or memory of their own: the call keeps them
// only while it keeps the payload, and copies those it needs longer.
func (c *Call) Apply(cfg *Config, ev *Event) Step {
	if ev.Type == TypeOutput {
		return Step{Wake: c.wake(cfg), Ignored: true}
	}
	c.last = max(c.last, ev.Received)
	switch {
	case c.ended:
		return Step{Wake: c.wake(cfg), Ignored: true}
	case ev.Ends():
		// Nothing more is published for an ended call, not even a resolved that this
		// last event might carry.
		c.ended, c.open = true, nil
		return Step{Wake: c.wake(cfg), Ended: true}
	case !ev.IsSnapshot():
		if o := c.open; o != nil && !o.hung {
			o.latest = ev.Payload
		}
		return Step{Wake: c.wake(cfg)}
	case ev.Messages < c.messages:
		return Step{Wake: c.wake(cfg), Ignored: true}
	}
	c.messages = ev.Messages

	var step Step
	if o := c.open; o != nil {
		s, ok := AnsweredAfter(ev.Stretches, o.first.index)
		if !ok {
			c.extend(cfg, ev)
			return Step{Wake: c.wake(cfg)}
		}
		if o.hung {
			step.Output = resolve(cfg, o, s, ev)
		}
		c.open = nil
	}
	// The unanswered stretch of the history, if any, starts after all of its replies (see
	// AddMessage), so after the one that answered the stretch the call had open.
	if u, ok := Unanswered(ev.Stretches); ok {
		c.open = &stretch{
			first:    newMark(u.First, ev.Received, cfg),
			last:     newMark(u.Last, ev.Received, cfg),
			snapshot: ev.Payload,
			latest:   ev.Payload,
		}
	}
	step.Wake = c.wake(cfg)
	return step
}

// extend applies a snapshot in which the open stretch is still unanswered: a new user
// turn re-arms the turn timeout, and the hang will carry the newest history.
func (c *Call) extend(cfg *Config, ev *Event) {
	o := c.open
	if o.hung {
		return
	}
	if u, ok := Unanswered(ev.Stretches); ok && u.Last.Index > o.last.index {
		o.last = newMark(u.Last, ev.Received, cfg)
		if o.owned {
			o.last.id = strings.Clone(o.last.id)
		}
	}
	// Copy the ids before letting go of the snapshot they may alias: the first time in
	// one allocation, a new latest turn's with the first's; after that, only a new
	// latest turn's (above).
	o.own()
	o.snapshot, o.latest = ev.Payload, ev.Payload
}

// resolve builds the hang-resolved of a hung stretch that s answered.
func resolve(cfg *Config, o *stretch, s Stretch, ev *Event) *Output {
	reply := Anchor(s.Reply, ev.Received, cfg.MaxLag)
	return &Output{
		Kind:               KindResolved,
		Reason:             o.reason,
		UserMessageID:      messageID(s.Last),
		FirstUserMessageID: o.first.id,
		ReplyMessageID:     messageID(s.Reply),
		At:                 ev.Received,
		Wait:               time.Duration(max(reply-o.first.anchor, 0)),
		Snapshot:           ev.Payload,
		Latest:             ev.Payload,
	}
}

// Tick tells the call that the time is now. It publishes the hang of a stretch whose
// deadline has passed, and forgets a call that has had no event for the call TTL.
func (c *Call) Tick(cfg *Config, now int64) Step {
	if o := c.open; o != nil && !o.hung {
		at, reason := Deadline(o.first.anchor, o.last.anchor, cfg)
		if now < at {
			return Step{Wake: at}
		}
		from, threshold := o.last.anchor, cfg.Timeout
		if reason == ReasonMaxWait {
			from, threshold = o.first.anchor, cfg.MaxWait
		}
		out := &Output{
			Kind:               KindHang,
			Reason:             reason,
			UserMessageID:      o.last.id,
			FirstUserMessageID: o.first.id,
			At:                 now,
			Deadline:           at,
			Wait:               time.Duration(now - from),
			Threshold:          threshold,
			Snapshot:           o.snapshot,
			Latest:             o.latest,
		}
		o.own()
		o.hung, o.reason, o.snapshot, o.latest = true, reason, nil, nil
		return Step{Output: out, Wake: c.wake(cfg)}
	}
	if now >= saturatingAdd(c.last, cfg.CallTTL) {
		return Step{Forget: true}
	}
	return Step{Wake: c.wake(cfg)}
}

// wake returns when the call next needs a tick: the deadline of a stretch that has not
// hung yet (it always comes before the TTL, which Config.Validate ensures), else the end
// of its TTL.
func (c *Call) wake(cfg *Config) int64 {
	if o := c.open; o != nil && !o.hung {
		at, _ := Deadline(o.first.anchor, o.last.anchor, cfg)
		return at
	}
	return saturatingAdd(c.last, cfg.CallTTL)
}

// newMark returns the mark of a user turn. Its id may alias the event's payload.
func newMark(t Turn, received int64, cfg *Config) mark {
	return mark{id: messageID(t), index: t.Index, anchor: Anchor(t, received, cfg.MaxLag)}
}

// cloneIDs copies the ids of the first and latest turn, which may alias a payload that
// the call lets go of, in one allocation.
func cloneIDs(first, last string) (string, string) {
	if first == last {
		first = strings.Clone(first)
		return first, first
	}
	both := first + last
	return both[:len(first)], both[len(first):]
}

// messageID returns the messageId of a turn, or "#<index>" for a message without one, so
// that every stretch of a call has a distinct id (it keys Nats-Msg-Id).
func messageID(t Turn) string {
	if t.ID != "" {
		return t.ID
	}
	return "#" + strconv.Itoa(int(t.Index))
}
