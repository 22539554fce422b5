package sim

import (
	"iter"
	"strconv"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// Script is one simulated call started at a given time: its events in time order and
// the ground truth of its hangs. It is a small value computed from the simulation, the
// call's index and its start; copying it is cheap, and its methods regenerate what
// they return.
type Script struct {
	sim   *Sim
	index uint64
	cs    uint64 // the call's seed
	start int64  // Unix milliseconds
	turns int32
}

// Index returns the index of the call.
func (sc Script) Index() uint64 { return sc.index }

// CallID returns the call id.
func (sc Script) CallID() string { return sc.sim.CallID(sc.index) }

// Start returns when the call starts: the time of its status-update.
func (sc Script) Start() time.Time { return time.UnixMilli(sc.start) }

// Turns returns the number of turns planned for the call; a caller who hangs up on a
// stall ends it after fewer.
func (sc Script) Turns() int { return int(sc.turns) }

// Duration returns the time from the start to the end-of-call-report.
func (sc Script) Duration() time.Duration {
	return time.Duration(sc.scan(nil, nil)) * time.Millisecond
}

func (sc *Script) cursor() cursor { return newCursor(sc.cs, sc.turns) }

// Event is an event of a call as its publisher sends it.
type Event struct {
	// At is when it is published, after the start of the call. It is also its
	// message.timestamp, and the timestamp of the message it adds to the history.
	At time.Duration
	// Type is message.type: TypeStatusUpdate, TypeConversationUpdate or
	// TypeEndOfCallReport.
	Type    string
	Subject string
	// Data is the payload. It is reused by the next event: copy it to keep it.
	Data []byte
	// Messages is the length of the history that a conversation-update carries.
	Messages int
}

// Events returns the events of the call in time order: a status-update, one
// conversation-update per message (each carrying the whole history so far), and an
// end-of-call-report.
func (sc Script) Events() iter.Seq[Event] {
	return func(yield func(Event) bool) {
		c := sc.cursor()
		var data, subject []byte
		for {
			typ, at := c.pending()
			data = sc.appendEvent(data[:0], &c)
			subject = sc.appendSubject(subject[:0], typ)
			ev := Event{
				At:      time.Duration(at) * time.Millisecond,
				Type:    typ.String(),
				Subject: string(subject),
				Data:    data,
			}
			if typ == evUpdate {
				ev.Messages = int(c.msgs)
			}
			if !yield(ev) || typ == evEnd {
				return
			}
			c.next(&sc.sim.p)
		}
	}
}

// appendSubject appends the subject of an event of the call.
func (sc *Script) appendSubject(b []byte, typ eventType) []byte {
	for _, p := range sc.sim.subject {
		switch p.hole {
		case 'c':
			b = sc.sim.AppendCallID(b, sc.index)
		case 't':
			b = append(b, typ.String()...)
		default:
			b = append(b, p.lit...)
		}
	}
	return b
}

// Stall is a stretch of a call that must hang (SPEC §2): the ground truth that a
// detector with the configured thresholds is checked against.
type Stall struct {
	CallID string
	// Start is the start of the call; Deadline, Reply and End are measured from it.
	Start time.Time
	// FirstUserMessageID is the first user turn of the stretch, UserMessageID the
	// latest one when it hangs: the hang's firstUserMessageId and userMessageId.
	FirstUserMessageID, UserMessageID string
	// Reason is the deadline that fires: the earlier of the turn timeout (the tool
	// timeout while a tool runs) from the latest user turn and the max wait from the
	// first; on a tie, the turn timeout.
	Reason detector.Reason
	// Stage is what the caller was waiting for when the stretch hung.
	Stage detector.Stage
	// Deadline is when it hangs, after the start of the call.
	Deadline time.Duration
	// Resolved reports whether a reply ends the stretch. It does not when the caller
	// hangs up first: the call then ends at End, with a hang-unresolved whose
	// endedReason is EndedReason.
	Resolved    bool
	EndedReason string
	// Reply is when the reply comes (when Resolved), End when the call ends otherwise.
	Reply, End time.Duration
	// ReplyMessageID is the reply (when Resolved). LastUserMessageID is the latest user
	// turn before the reply or the end (the caller may have spoken again after the
	// hang): the userMessageId of the hang-resolved or hang-unresolved. Wait is the
	// time from the first user turn to the reply, or to the end: their waitMs.
	ReplyMessageID, LastUserMessageID string
	Wait                              time.Duration
}

// At returns when the stretch hangs.
func (s Stall) At() time.Time { return s.Start.Add(s.Deadline) }

// Stalls returns the stretches of the call that must hang, in order.
func (sc Script) Stalls() []Stall {
	var out []Stall
	sc.scan(nil, func(r stallRec) { out = append(out, sc.stall(r)) })
	return out
}

// stallRec is a Stall as scan finds it: numbers only, so that Tally can walk millions
// of calls without building strings.
type stallRec struct {
	first, user, last int32 // user numbers: first turn, latest at the hang, latest before the reply or end
	reply             int32 // message index of the reply
	reason            detector.Reason
	stage             detector.Stage
	resolved          bool
	firstAt           int64 // time of the first user turn
	deadline          int64
	end               int64 // time of the reply, or of the end of the call
}

// scan walks the whole call. It calls turn with the time of the first user turn of
// every turn, and stall with every stretch that hangs once that stretch has ended (by
// a reply or by the end of the call); either may be nil. It returns the time of the
// end of the call.
func (sc *Script) scan(turn func(at int64), stall func(stallRec)) int64 {
	p := &sc.sim.p
	c := sc.cursor()
	var (
		r    stallRec
		open bool
	)
	for {
		m := c.next(p)
		if c.hungNow {
			r = stallRec{first: c.firstN, user: c.lastN, reason: c.reason, stage: c.stage, firstAt: c.firstAt, deadline: c.deadline}
			open = true
		}
		switch {
		case m.kind == msgUser && turn != nil:
			turn(m.at)
		case c.closedNow:
			r.resolved, r.last, r.reply, r.end = true, m.user, m.index, m.at
			open = false
			if stall != nil {
				stall(r)
			}
		case m.kind == msgEnd:
			if open && stall != nil {
				r.last, r.end = m.user, m.at
				stall(r)
			}
			return m.at
		}
	}
}

// stall returns the Stall of a record.
func (sc *Script) stall(r stallRec) Stall {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	s := Stall{
		CallID:             sc.CallID(),
		Start:              sc.Start(),
		FirstUserMessageID: userID(r.first),
		UserMessageID:      userID(r.user),
		Reason:             r.reason,
		Stage:              r.stage,
		Deadline:           ms(r.deadline),
		Resolved:           r.resolved,
		LastUserMessageID:  userID(r.last),
	}
	if !r.resolved {
		// A stretch left hung is ended by the caller hanging up in silence.
		s.End, s.Wait, s.EndedReason = ms(r.end), ms(r.end-r.firstAt), EndedByCustomer
		return s
	}
	s.Reply, s.Wait = ms(r.end), ms(r.end-r.firstAt)
	m := message{kind: msgReply, index: r.reply, user: r.last, at: r.end}
	id := sc.appendReplyID(nil, &m, sc.gen(r.reply))
	s.ReplyMessageID = string(id[1 : len(id)-1])
	return s
}

func userID(n int32) string { return "user-" + strconv.Itoa(int(n)) }
