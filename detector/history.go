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
	var t tools
	for i := range msgs {
		t.add(ev, &msgs[i])
	}
	return t.stage()
}

// tools follows the tool calls of a stretch message by message, in time linear in the
// ids it is given whatever a history holds (a publisher may send thousands of calls):
// the calls still running in the order they were made, and, past a few, an index of
// them by id.
type tools struct {
	calls     []toolCall         // in call order; answered ones stay, marked done
	head      int                // calls[:head] are all done
	running   int                // calls with an id still running
	byID      map[uint64][]int32 // positions in calls by id, once there are many
	anonymous int                // calls without an id still running
	called    bool
}

type toolCall struct {
	id   uint64
	done bool
}

// indexFrom is the number of calls past which tools indexes them by id.
const indexFrom = 16

// add applies one message of the stretch; those of other roles change nothing.
func (t *tools) add(ev *Event, m *Message) {
	switch m.Role {
	case RoleToolCall:
		t.called = true
		ids := ev.ToolIDs(m)
		if len(ids) == 0 {
			t.anonymous++
		}
		for _, id := range ids {
			t.calls = append(t.calls, toolCall{id: id})
			t.running++
			if t.byID != nil {
				t.byID[id] = append(t.byID[id], int32(len(t.calls)-1))
			}
		}
		if t.byID == nil && len(t.calls) > indexFrom {
			t.byID = make(map[uint64][]int32, len(t.calls))
			for i, c := range t.calls {
				if !c.done {
					t.byID[c.id] = append(t.byID[c.id], int32(i))
				}
			}
		}
	case RoleToolResult:
		ids := ev.ToolIDs(m)
		switch {
		case len(ids) > 0:
			t.answer(ids[0])
		case t.anonymous > 0:
			t.anonymous--
		case t.running > 0:
			for t.calls[t.head].done {
				t.head++
			}
			t.done(t.head)
		}
	}
}

// answer marks the oldest running call with id done, if there is one.
func (t *tools) answer(id uint64) {
	if t.byID == nil {
		for i := t.head; i < len(t.calls); i++ {
			if c := &t.calls[i]; !c.done && c.id == id {
				t.done(i)
				return
			}
		}
		return
	}
	at := t.byID[id]
	for len(at) > 0 && t.calls[at[0]].done {
		at = at[1:] // answered as the oldest running call
	}
	if len(at) > 0 {
		t.done(int(at[0]))
		at = at[1:]
	}
	if len(at) == 0 {
		delete(t.byID, id)
	} else {
		t.byID[id] = at
	}
}

func (t *tools) done(i int) {
	t.calls[i].done = true
	t.running--
	for t.head < len(t.calls) && t.calls[t.head].done {
		t.head++
	}
}

func (t *tools) stage() Stage {
	switch {
	case t.running > 0 || t.anonymous > 0:
		return StageAwaitingTool
	case t.called:
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
	var tl tools // the stage, message by message
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
			tl.add(ev, m)
			stage = tl.stage()
		}
		at, reason = Deadline(ms(f), ms(msgs[turn].Time), th, stage)
	}
	if ms(r) <= at {
		return 0, 0, 0, 0, false
	}
	return at / 1e6, reason, stage, turn, true
}
