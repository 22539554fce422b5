package sim

import "github.com/hangwatch/hangwatch/detector"

// msgKind is what a step of a call's timeline is.
type msgKind uint8

const (
	msgWelcome msgKind = iota + 1 // the assistant's greeting
	msgUser                       // the first user turn of a turn
	msgHello                      // the caller speaks again while nobody has answered
	msgSilent                     // an assistant message with empty text: no reply
	msgReply                      // the assistant's reply
	msgEnd                        // the end of the call; not a message
)

// message is one step of a call's timeline, with what it takes to render it.
type message struct {
	kind  msgKind
	index int32 // position in the messages array
	// user is the N of user-N: a user turn's own, and for an assistant message the
	// latest user turn before it (the one a reply's messageId starts with).
	user int32
	at   int64 // milliseconds after the call's start
	prev int64 // at of the previous step
}

// turnKind is what happens in a turn.
type turnKind uint8

const (
	turnNormal turnKind = iota // the reply comes in time
	turnStall                  // the reply comes past the turn timeout
	turnHello                  // nobody answers; the caller repeats until max-wait
)

// phase is what the next step of a call is.
type phase uint8

const (
	phWelcome phase = iota
	phUser          // the first user turn of the next turn
	phReply         // the reply in time, at replyAt
	phSilent        // the empty assistant message at silentAt, then phLate
	phLate          // the repetition at helloAt if any, then the late reply or hang-up at replyAt
	phHello         // a repetition, or the reply
	phEnd           // the end of the call
	phDone          // nothing: the call has ended
)

// cursor walks the timeline of one call, one step at a time. It is a small value (the
// whole per-call state of a running simulation), and walking a fresh cursor again gives
// the same steps: that is how a history is regenerated instead of stored.
//
// The cursor also follows the unanswered stretch by the rules of SPEC §2 (this is the
// ground truth, computed apart from the detector it checks) and places every step at
// least Margin away from the stretch's deadline.
type cursor struct {
	cs      uint64 // the call's seed
	turns   int32  // turns planned; a caller who hangs up ends the call sooner
	turn    int32  // index of the current turn, -1 before the first
	msgs    int32  // messages so far
	users   int32  // user messages so far: the N of the latest user-N
	replies int32  // replies so far
	hellos  int32  // repetitions in the current turn
	at      int64  // time of the latest step
	phase   phase
	kind    turnKind
	hangUp  bool  // the caller hangs up if the current turn stalls
	replyAt int64 // the planned reply, or hang-up; 0 while not planned
	// silentAt and helloAt are the planned empty assistant message and repetition of a
	// stalled turn; 0 when there is none (no step of a call is at 0: the status-update
	// is).
	silentAt, helloAt int64

	// The stretch: open while unanswered, hung once its deadline has passed. Its fields
	// keep describing it after a reply closes it, until the next user turn opens another.
	open, hung         bool
	reason             detector.Reason
	firstN, lastN      int32 // user numbers of its first turn and of its latest before the hang
	firstAt, lastAt    int64
	deadline           int64
	hungNow, closedNow bool // the latest step passed the deadline; it closed a hung stretch
}

func newCursor(cs uint64, turns int32) cursor {
	return cursor{cs: cs, turns: turns, turn: -1}
}

// draw returns the draw of key and salt of the call.
func (c *cursor) draw(key, salt uint64) uint64 { return draw(c.cs, key, salt) }

// next returns the next step of the call; after msgEnd it keeps returning msgEnd.
func (c *cursor) next(p *params) message {
	c.hungNow, c.closedNow = false, false
	switch c.phase {
	case phWelcome:
		c.phase = phUser
		return c.emit(p, msgWelcome, between(c.draw(0, saltWelcome), 200, 400))
	case phUser:
		return c.startTurn(p)
	case phReply:
		return c.reply(p, c.replyAt)
	case phSilent:
		c.phase = phLate
		return c.emit(p, msgSilent, c.silentAt)
	case phLate:
		if c.helloAt > 0 {
			t := c.helloAt
			c.helloAt = 0
			return c.emit(p, msgHello, t)
		}
		return c.reply(p, c.replyAt)
	case phHello:
		return c.repeat(p)
	case phEnd:
		return c.emit(p, msgEnd, c.at+between(c.draw(0, saltEnd), 1000, 4000))
	}
	return message{kind: msgEnd, index: c.msgs, user: c.users, at: c.at, prev: c.at}
}

// startTurn emits the first user turn of the next turn and plans the turn.
func (c *cursor) startTurn(p *params) message {
	c.turn++
	k := uint64(c.turn)
	c.hellos, c.replyAt, c.silentAt, c.helloAt = 0, 0, 0, 0
	c.hangUp = chance(c.draw(k, saltHangUp), p.hangUp)
	switch h := c.draw(k, saltKind); {
	case chance(h, p.stall):
		c.kind = turnStall
	case chance(h, p.hello):
		c.kind = turnHello
	default:
		c.kind = turnNormal
	}
	m := c.emit(p, msgUser, c.at+between(c.draw(k, saltThink), p.thinkMin, p.thinkMax))
	switch c.kind {
	case turnNormal:
		c.phase = phReply
		c.replyAt = m.at + between(c.draw(k, saltReply), p.replyMin, p.replyMax)
	case turnStall:
		c.phase = phLate
		late := between(c.draw(k, saltLate), 0, p.lateMax)
		c.replyAt = c.deadline + p.margin + late
		if chance(c.draw(k, saltSilent), p.silent) {
			// A zero-token completion, well before the deadline; it answers nobody.
			c.phase = phSilent
			c.silentAt = m.at + between(c.draw(k, saltSilentAt), p.replyMin, p.replyMax)
		}
		if late >= 2*minGap && chance(c.draw(k, saltPostHello), p.postHello) {
			// The caller, hearing nothing past the deadline, speaks again.
			c.helloAt = c.deadline + p.margin + between(c.draw(k, saltPostHelloAt), 0, late-minGap)
		}
	case turnHello:
		c.phase = phHello
	}
	return m
}

// repeat emits the next repetition of a caller whom nobody answers, or the reply.
func (c *cursor) repeat(p *params) message {
	k := uint64(c.turn)
	gap := between(c.draw(k<<20|uint64(c.hellos), saltHelloGap), p.gapMin, p.gapMax)
	if p.maxWait == 0 {
		// Without max-wait nothing catches the repeating caller: after a few
		// repetitions the reply comes, in time for the latest one.
		if int64(c.hellos) < between(c.draw(k, saltHelloCount), 2, 4) {
			c.hellos++
			return c.emit(p, msgHello, c.at+gap)
		}
		return c.reply(p, c.at+between(c.draw(k, saltReply), p.replyMin, p.replyMax))
	}
	t := c.place(p, c.at+gap)
	if c.replyAt == 0 && c.open && !c.hung && t >= c.deadline {
		// This repetition comes past the deadline: the stretch hangs there, and the late
		// reply is planned from it.
		c.replyAt = c.deadline + p.margin + between(c.draw(k, saltLate), 0, p.lateMax)
	}
	if c.replyAt != 0 && t > c.replyAt-minGap {
		return c.reply(p, c.replyAt)
	}
	c.hellos++
	return c.emit(p, msgHello, t)
}

// reply emits the reply at t, or the end of the call if the caller hangs up on a hung
// stretch, and moves on to the next turn or to the end.
func (c *cursor) reply(p *params, t int64) message {
	if c.hangUp && c.kind != turnNormal && c.open && (c.hung || c.place(p, t) >= c.deadline) {
		return c.emit(p, msgEnd, t)
	}
	c.phase = phEnd
	if c.turn+1 < c.turns {
		c.phase = phUser
	}
	return c.emit(p, msgReply, t)
}

// place returns when a step planned for t happens: at least minGap after the previous
// step, and not within Margin of the deadline of an armed stretch (it is pushed past).
func (c *cursor) place(p *params, t int64) int64 {
	t = max(t, c.at+minGap)
	if c.open && !c.hung && t > c.deadline-p.margin && t < c.deadline+p.margin {
		t = c.deadline + p.margin
	}
	return t
}

// emit places a step planned for t, applies it to the stretch and returns it.
func (c *cursor) emit(p *params, kind msgKind, t int64) message {
	t = c.place(p, t)
	m := message{kind: kind, index: c.msgs, user: c.users, at: t, prev: c.at}
	c.at = t
	if c.open && !c.hung && t >= c.deadline {
		c.hung, c.hungNow = true, true
	}
	switch kind {
	case msgUser, msgHello:
		c.users++
		m.user = c.users
		switch {
		case !c.open:
			c.open, c.firstN, c.firstAt = true, c.users, t
			c.lastN, c.lastAt = c.users, t
			c.deadline, c.reason = deadline(p, c.firstAt, c.lastAt)
		case !c.hung:
			c.lastN, c.lastAt = c.users, t
			c.deadline, c.reason = deadline(p, c.firstAt, c.lastAt)
		}
	case msgReply:
		c.replies++
		c.closedNow = c.hung
		c.open, c.hung = false, false
	case msgEnd:
		c.phase = phDone
		return m
	}
	c.msgs++
	return m
}

// deadline returns when a stretch whose first and latest user turns ended at first and
// last hangs, and why (SPEC §2): the earlier of the turn timeout from the latest turn and
// the max wait from the first; on a tie, the turn timeout.
func deadline(p *params, first, last int64) (int64, detector.Reason) {
	at, reason := last+p.timeout, detector.ReasonTurnTimeout
	if p.maxWait > 0 && first+p.maxWait < at {
		at, reason = first+p.maxWait, detector.ReasonMaxWait
	}
	return at, reason
}
