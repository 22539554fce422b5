package sim

import "github.com/hangwatch/hangwatch/detector"

// msgKind is what a step of a call's timeline is.
type msgKind uint8

const (
	msgWelcome    msgKind = iota + 1 // the assistant's greeting
	msgUser                          // the first user turn of a turn
	msgHello                         // the caller speaks again while nobody has answered
	msgSilent                        // an assistant message with empty text: no reply
	msgReply                         // the assistant's reply
	msgToolCall                      // the model calls a tool (role tool_calls)
	msgToolResult                    // the tool's result (role tool_call_result)
	msgEnd                           // the end of the call; not a message
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
	// tool is, for a tool call and its result, the index of the tool call message: the
	// tool call id derives from it.
	tool int32
}

// turnKind is what happens in a turn.
type turnKind uint8

const (
	turnNormal    turnKind = iota // the reply comes in time
	turnStall                     // the reply comes past the turn timeout
	turnHello                     // nobody answers; the caller repeats until max-wait
	turnToolStall                 // the model calls a tool whose result comes past the deadline
	turnAfterTool                 // the tool's result comes in time, the reply past the turn timeout
)

// phase is what the next step of a call is.
type phase uint8

const (
	phWelcome phase = iota
	phUser          // the first user turn of the next turn
	phTurn          // the planned steps of the turn (tool call, result, empty message, repetition), then the reply or hang-up at replyAt
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
	// stalled turn, toolAt and resultAt the planned tool call and its result; 0 when
	// there is none (no step of a call is at 0: the status-update is).
	silentAt, helloAt, toolAt, resultAt int64
	toolIndex                           int32 // index of the turn's tool call message

	// The stretch: open while unanswered, hung once its deadline has passed. Its fields
	// keep describing it after a reply closes it, until the next user turn opens another.
	open, hung         bool
	reason             detector.Reason
	tool               toolState      // the tool calls of the stretch so far
	stage              detector.Stage // at the hang
	firstN, lastN      int32          // user numbers of its first turn and of its latest before the hang
	firstAt, lastAt    int64
	deadline           int64
	hungNow, closedNow bool // the latest step passed the deadline; it closed a hung stretch
	// stopped says the call was ended by the stop of a Runner (HangUpOnStop).
	stopped bool
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
	case phTurn:
		return c.turnStep(p)
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
	c.hellos, c.replyAt, c.silentAt, c.helloAt, c.toolAt, c.resultAt = 0, 0, 0, 0, 0, 0
	c.hangUp = chance(c.draw(k, saltHangUp), p.hangUp)
	switch h := c.draw(k, saltKind); {
	case chance(h, p.stall):
		c.kind = turnStall
	case chance(h, p.hello):
		c.kind = turnHello
	case chance(h, p.toolStall):
		c.kind = turnToolStall
	case chance(h, p.afterTool):
		c.kind = turnAfterTool
	default:
		c.kind = turnNormal
	}
	m := c.emit(p, msgUser, c.at+between(c.draw(k, saltThink), p.thinkMin, p.thinkMax))
	c.phase = phTurn
	reply := between(c.draw(k, saltReply), p.replyMin, p.replyMax) // in time, after the turn
	switch c.kind {
	case turnNormal:
		c.replyAt = m.at + reply
		if chance(c.draw(k, saltTool), p.tool) {
			// The model calls a tool and answers with its result, all in time.
			c.toolAt = m.at + reply/3
			c.resultAt = m.at + 2*reply/3
		}
	case turnStall:
		late := between(c.draw(k, saltLate), 0, p.lateMax)
		c.replyAt = c.deadline + p.margin + late
		if chance(c.draw(k, saltSilent), p.silent) {
			// A zero-token completion, well before the deadline; it answers nobody.
			c.silentAt = m.at + between(c.draw(k, saltSilentAt), p.replyMin, p.replyMax)
		}
		c.planPostHello(p, k, late)
	case turnToolStall:
		// The tool is called in time and its result comes past the deadline of a stretch
		// awaiting it; the reply follows the result. A caller who hangs up does so when
		// the result would have come.
		c.toolAt = m.at + reply/2
		due, _ := deadline(p, c.firstAt, c.lastAt, true)
		late := between(c.draw(k, saltLate), 0, p.lateMax)
		c.replyAt = due + p.margin + late
		if !c.hangUp {
			c.resultAt = c.replyAt
			c.replyAt += between(c.draw(k, saltToolReply), p.replyMin, p.replyMax)
		}
		c.planPostHello(p, k, late)
	case turnAfterTool:
		// The tool answers in time; the reply comes past the turn timeout.
		c.toolAt = m.at + reply/3
		c.resultAt = m.at + 2*reply/3
		late := between(c.draw(k, saltLate), 0, p.lateMax)
		c.replyAt = c.deadline + p.margin + late
		c.planPostHello(p, k, late)
	case turnHello:
		c.phase = phHello
	}
	return m
}

// planPostHello plans, for half the stalled turns, a repetition of the caller who
// hears nothing past the deadline, before the reply that comes late after it.
func (c *cursor) planPostHello(p *params, k uint64, late int64) {
	if late >= 2*minGap && chance(c.draw(k, saltPostHello), p.postHello) {
		c.helloAt = c.deadline + p.margin + between(c.draw(k, saltPostHelloAt), 0, late-minGap)
	}
}

// turnStep emits the next planned step of the turn, in time order: the tool call, the
// empty assistant message, the caller's repetition, the tool's result; then the reply
// (or the hang-up).
func (c *cursor) turnStep(p *params) message {
	next := func(t *int64, kind msgKind) message {
		at := *t
		*t = 0
		return c.emit(p, kind, at)
	}
	var (
		t    *int64
		kind msgKind
	)
	for _, s := range []struct {
		t    *int64
		kind msgKind
	}{{&c.toolAt, msgToolCall}, {&c.silentAt, msgSilent}, {&c.helloAt, msgHello}, {&c.resultAt, msgToolResult}} {
		if *s.t > 0 && (t == nil || *s.t < *t) {
			t, kind = s.t, s.kind
		}
	}
	if t != nil {
		return next(t, kind)
	}
	return c.reply(p, c.replyAt)
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
		c.stage = c.tool.stage()
	}
	switch kind {
	case msgUser, msgHello:
		c.users++
		m.user = c.users
		switch {
		case !c.open:
			c.open, c.firstN, c.firstAt, c.tool = true, c.users, t, toolNone
			c.lastN, c.lastAt = c.users, t
			c.rearm(p)
		case !c.hung:
			c.lastN, c.lastAt = c.users, t
			c.rearm(p)
		}
	case msgToolCall:
		c.toolIndex = c.msgs
		m.tool = c.toolIndex
		if c.open {
			c.tool = toolAwaiting
			if !c.hung {
				c.rearm(p)
			}
		}
	case msgToolResult:
		m.tool = c.toolIndex
		if c.open {
			c.tool = toolDone
			if !c.hung {
				c.rearm(p)
			}
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

// rearm sets the deadline of the open stretch from its turns and its stage. The turn
// plans keep every step clear of the deadline it moves to, so that no step makes a
// stretch hang at once.
func (c *cursor) rearm(p *params) {
	c.deadline, c.reason = deadline(p, c.firstAt, c.lastAt, c.tool == toolAwaiting)
}

// toolState is what the tool calls of a stretch say of its stage (SPEC §2).
type toolState uint8

const (
	toolNone     toolState = iota // no tool call since the first user turn
	toolAwaiting                  // a tool call has no result yet
	toolDone                      // every tool call has its result
)

func (s toolState) stage() detector.Stage {
	switch s {
	case toolAwaiting:
		return detector.StageAwaitingTool
	case toolDone:
		return detector.StageAfterTool
	}
	return detector.StageAwaitingAssistant
}

// deadline returns when a stretch whose first and latest user turns ended at first and
// last hangs, and why (SPEC §2): the earlier of the turn timeout from the latest turn (the
// tool timeout while the stretch awaits a tool) and the max wait from the first; on a
// tie, the turn timeout.
func deadline(p *params, first, last int64, awaitingTool bool) (int64, detector.Reason) {
	timeout := p.timeout
	if awaitingTool {
		timeout = p.toolTimeout
	}
	at, reason := last+timeout, detector.ReasonTurnTimeout
	if p.maxWait > 0 && first+p.maxWait < at {
		at, reason = first+p.maxWait, detector.ReasonMaxWait
	}
	return at, reason
}
