package detector

// A history is read in positions of Event.Messages (not of the messages array, which
// holds messages that detection skips). These functions are the reading of SPEC §2 over
// one snapshot; Call decides what they mean for the call.

// findUser returns the position of the last user turn with key k in msgs, or -1.
func findUser(msgs []Message, k uint64) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleUser && msgs[i].Key == k {
			return i
		}
	}
	return -1
}

// lastRole returns the position of the last message of role r in msgs[lo:hi], or -1.
func lastRole(msgs []Message, r Role, lo, hi int) int {
	for i := hi - 1; i >= max(lo, 0); i-- {
		if msgs[i].Role == r {
			return i
		}
	}
	return -1
}

// firstRole returns the position of the first message of role r in msgs[lo:], or -1.
func firstRole(msgs []Message, r Role, lo int) int {
	for i := max(lo, 0); i < len(msgs); i++ {
		if msgs[i].Role == r {
			return i
		}
	}
	return -1
}

// stageOf returns the stage of a stretch from its messages after the first user turn
// (SPEC §2): awaiting-tool while a tool call has no result, after-tool once every call
// has its result, awaiting-assistant when no tool was called. A result answers the call
// it names; one that names none answers a call that named none, else the oldest call
// still running. A result for a call not in msgs (cut from a windowed history) counts
// for nothing.
func stageOf(ev *Event, msgs []Message) Stage {
	var buf [8]uint64
	pending := buf[:0] // ids of the calls still running
	anonymous := 0     // calls without an id still running
	called := false
	for i := range msgs {
		m := &msgs[i]
		switch m.Role {
		case RoleToolCall:
			called = true
			ids := ev.ToolIDs(m)
			if len(ids) == 0 {
				anonymous++
			}
			pending = append(pending, ids...)
		case RoleToolResult:
			ids := ev.ToolIDs(m)
			switch {
			case len(ids) > 0:
				for j, id := range pending {
					if id == ids[0] {
						pending = append(pending[:j], pending[j+1:]...)
						break
					}
				}
			case anonymous > 0:
				anonymous--
			case len(pending) > 0:
				pending = pending[1:]
			}
		}
	}
	switch {
	case len(pending) > 0 || anonymous > 0:
		return StageAwaitingTool
	case called:
		return StageAfterTool
	}
	return StageAwaitingAssistant
}

// revealedHang reads, from their own timestamps, whether a stretch that was answered
// before it was ever seen unanswered hung: msgs[first] is its first user turn, msgs[reply]
// the reply, and th the thresholds. It replays the stretch as it would have run live: each
// user turn re-arms the turn timeout, each tool call or result moves it with the stage,
// and the first deadline that passes before the next of them is the hang. It returns that
// deadline (Unix ms), its reason, the stage then and the position of the user turn in force
// then; ok is false when the reply came in time, or when a user turn has no timestamp.
// A tool message without one is read as coming after the deadline.
func revealedHang(ev *Event, msgs []Message, first, reply int, th *Thresholds) (at int64, reason Reason, stage Stage, turn int, ok bool) {
	f, r := msgs[first].Time, msgs[reply].Time
	if f == 0 || r == 0 || th.Disabled {
		return 0, 0, 0, 0, false
	}
	ms := func(t int64) int64 { return t * 1e6 }
	turn = first
	at, reason = Deadline(ms(f), ms(f), th, stage)
	for i := first + 1; i < reply; i++ {
		m := &msgs[i]
		if m.Role != RoleUser && m.Role != RoleToolCall && m.Role != RoleToolResult {
			continue
		}
		if m.Role == RoleUser && m.Time == 0 {
			return 0, 0, 0, 0, false // a turn that cannot be placed: the deadline is unknown
		}
		if m.Time == 0 || ms(m.Time) >= at {
			break // the deadline passed before this message
		}
		if m.Role == RoleUser {
			turn = i
		} else {
			stage = stageOf(ev, msgs[first+1:i+1])
		}
		at, reason = Deadline(ms(f), ms(msgs[turn].Time), th, stage)
	}
	if ms(r) <= at {
		return 0, 0, 0, 0, false
	}
	return at / 1e6, reason, stage, turn, true
}
