// Package detector is the hang detection state machine of one call: SPEC §2 and
// nothing else. It starts no goroutine, does no I/O and reads no clock: it is fed events
// with the time they were received and ticks with the current time, and it answers with a
// Step that says what to publish and when it next needs a tick.
//
// Times are engine nanoseconds (a monotonic clock, so that no step of the wall clock
// fires or delays a deadline), but for the messages' own timestamps, which are Unix
// milliseconds of the pipeline's clock and are read against the wall clock at the
// event's arrival (Event.Wall).
package detector

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Call is the detection state of one call. The zero value is a call that has seen no
// event yet. An idle call keeps no history; a call with an unanswered or hung stretch
// also keeps the payload of its latest snapshot, which its output must carry.
// A Call is not safe for concurrent use.
type Call struct {
	last int64 // Received of the latest event
	// The order of the latest snapshot applied (see order): a snapshot older than it is
	// ignored. Its fields are held inline, so that its count and flag share their word
	// with ended: a call takes 64 bytes rather than 72, and a shard holds a million.
	// Before the first snapshot, orderTime is the Received of the call's first event:
	// since when it is watched (see apply).
	orderTime int64
	orderTail uint64
	// answered is the latest user turn seen answered: it and every user turn before it
	// never arm again, even when a later snapshot no longer shows the reply.
	answered turnRef
	// speech is the own time (Unix ms) of the latest start of the assistant's speech
	// (Vapi's speech-update): a user turn that ended before it was answered.
	speech     int64
	open       *stretch // the unanswered or hung stretch; nil while idle
	orderCount int16    // saturated at maxCount
	ended      bool
	flags      uint8  // flagOwn, flagSeen, flagSpoke, flagEvent
	orderKeys  uint32 // the messages of the latest snapshot applied, as a filter (keyBits)
}

// maxCount is the length of a snapshot as its order keeps it: longer ones count as this
// long, and lengths are compared as kept.
const maxCount = math.MaxInt16

// keptCount returns n as an order keeps it.
func keptCount(n int32) int32 { return min(n, maxCount) }

// The flags of a Call.
const (
	// flagOwn says orderTime is the own time of the tail, not message.timestamp.
	flagOwn uint8 = 1 << iota
	// flagSeen says a snapshot of the call was applied.
	flagSeen
	// flagSpoke says a speech-update of the call was applied (Vapi): a reply may then
	// have come as speech, in a message a stream keeping few per subject has replaced
	// since.
	flagSpoke
	// flagEvent says an event of the call was applied: it was watched since then.
	flagEvent
)

// order returns the order of the latest snapshot applied.
func (c *Call) order() order {
	return order{time: c.orderTime, own: c.flags&flagOwn != 0, tail: c.orderTail, count: int32(c.orderCount),
		keys: c.orderKeys, seen: c.flags&flagSeen != 0}
}

// setOrder makes o the order of the latest snapshot applied.
func (c *Call) setOrder(o order) {
	c.orderTime, c.orderTail, c.orderCount, c.orderKeys = o.time, o.tail, int16(keptCount(o.count)), o.keys
	c.flags &^= flagOwn | flagSeen
	if o.own {
		c.flags |= flagOwn
	}
	if o.seen {
		c.flags |= flagSeen
	}
}

// keyBits returns the four bits of a message key in the 32-bit filter of a snapshot's
// messages (order.keys), a Bloom filter: one that lacks any bit of a key lacks the
// message. It may hold a key it lacks: 1 in 250 for a window of two messages, 1 in 100
// of three, 1 in 20 of five; a filter of many messages holds most bits. (A window of
// one is told exactly, by its last message: see placed.)
func keyBits(key uint64) uint32 {
	h := key * 0x9E3779B97F4A7C15 // keys are hashes, but of ids that differ by a digit
	return 1<<(h>>59) | 1<<(h>>54&31) | 1<<(h>>49&31) | 1<<(h>>44&31)
}

// mayHold reports whether a snapshot whose filter is keys may hold the message key:
// false is certain, true may be wrong.
func mayHold(keys uint32, key uint64) bool {
	b := keyBits(key)
	return keys&b == b
}

// order is the place of a snapshot among those of its call (SPEC §2).
type order struct {
	// time is message.timestamp, Unix ms; without one, the own time of its tail (own
	// set); 0 for neither.
	time  int64
	own   bool
	tail  uint64 // key of its last message that detection reads
	count int32  // its length
	keys  uint32 // the keys of its messages, as a filter (keyBits)
	seen  bool
}

// turnRef identifies a user turn: its key, and its own time for histories that no longer
// hold it.
type turnRef struct {
	key  uint64
	time int64
}

// stretch is the unanswered stretch of a call.
type stretch struct {
	first, last mark
	th          Thresholds // in force when the deadline was armed
	stage       Stage
	hung        bool
	reason      Reason // why it hung
	// snapshot is the payload of the latest snapshot, latest that of the latest event
	// (latestTime its message.timestamp): what the outputs will carry.
	snapshot, latest Payload
	latestTime       int64
}

// mark is a user turn as the stretch remembers it. Its id is the call's own copy.
type mark struct {
	id     string
	key    uint64
	anchor int64 // engine ns
	time   int64 // own timestamp, Unix ms; 0 for none
}

func (m *mark) ref() turnRef { return turnRef{m.key, m.time} }

// State is where a call stands.
type State uint8

// The states of a call.
const (
	StateIdle  State = iota // nothing unanswered
	StateArmed              // a stretch is unanswered and has not hung
	StateHung               // a stretch hung and is still unanswered
	StateEnded              // the call ended
)

var stateNames = [...]string{"idle", "armed", "hung", "ended"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Step is what the engine must do after an event or a tick.
type Step struct {
	// Outputs are the outputs to publish, in order; nil when there are none (nearly
	// always), so that only they cost an allocation.
	Outputs []*Output
	// Wake is when the call next needs a Tick, in engine nanoseconds. An earlier tick
	// changes nothing but costs (the engine proves its input before any tick), so the
	// engine schedules exactly this.
	Wake int64
	// Forget says that the call has expired: drop it.
	Forget bool
	// Ended says that this event ended the call.
	Ended bool
	// Ignored says that the event changed nothing: a stale snapshot, an event for an
	// ended call, hangwatch's own output.
	Ignored bool
	// Kept says that the call now keeps the event's payload, as its snapshot or its
	// latest event or both (see Call.Kept): the engine may replace it with a compact
	// copy. Tail is then the index, in the snapshot's messages array, of the first
	// message of the tail that an output must carry at the least: the last reply before
	// the unanswered stretch, else its first user turn.
	Kept bool
	Tail int32
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

// Kept returns the payloads the call keeps for its outputs: that of the latest
// snapshot, and that of the latest event.
func (c *Call) Kept() (snapshot, latest Payload) {
	if c.open == nil {
		return nil, nil
	}
	return c.open.snapshot, c.open.latest
}

// Keep replaces the payloads the call keeps, with copies the engine made of those Kept
// returned (of what the outputs carry, or only the tail of the history).
func (c *Call) Keep(snapshot, latest Payload) {
	if c.open != nil {
		c.open.snapshot, c.open.latest = snapshot, latest
	}
}

// Apply applies an event; now is the engine's time, which an output made on the spot is
// stamped with. The strings of the event may alias its payload: the call copies those
// it keeps.
func (c *Call) Apply(cfg *Config, ev *Event, now int64) Step {
	if o := c.open; o != nil && !o.hung && !c.ended {
		// The event comes after the stretch's deadline: read back in stored order
		// (Stored), or by the clock while the evidence lags. Whether the stretch hung is
		// for the event to tell when it answers it: by the pipeline's own clock, the
		// answer came before the deadline or after. An event that does not answer it, read
		// in stored order, is evidence that it hung. (The engine leaves this call's
		// deadline to Apply for a stored event: a stream that keeps one message per
		// subject may have replaced the snapshot that held the reply with this later one.)
		// In a rebuild (Held) only the latest message of each subject is read, so an event
		// that does not answer is no evidence: a reply may have stood in a message since
		// replaced. An end is when its own history shows the stretch unanswered; and one
		// without a history when the call never spoke (Vapi's speech-update): the latest
		// snapshot read shows the stretch unanswered, and a reply would have come in a
		// later one, which would have replaced it. A call that ended during a failover or
		// restart, past its deadline, gets its hang late and its hang-unresolved (SPEC
		// §6). Speech is a second way for a reply to come, which a later speech-update of
		// the call replaces in the stream: then only the end's history tells.
		stage := o.stage
		if st, ok := c.stageBeforeReply(ev); ok && st != stage {
			// The snapshot holds the tool's result before the reply (the one with the
			// result alone was lost, or came at the same instant): the result moved the
			// deadline back, maybe into the past, before the reply came.
			if back, _ := Deadline(o.first.anchor, o.last.anchor, &o.th, st); back <= now {
				o.stage = st
			}
		}
		at, _ := Deadline(o.first.anchor, o.last.anchor, &o.th, o.stage)
		if ev.Stored && at <= ev.Received || at <= now {
			answers, inTime := c.answersBy(cfg, ev, at)
			history := ev.HasHistory && ev.Count > 0
			proves := !ev.Held || ev.Ends() && (history && !c.repliedIn(ev.Messages) || !history && c.flags&flagSpoke == 0)
			if answers && !inTime || !answers && (ev.Stored && at <= ev.Received && proves || c.movedOn(ev)) {
				hang := c.Tick(cfg, at, now)
				step := c.apply(cfg, ev, now)
				step.Outputs = append(hang.Outputs, step.Outputs...)
				return step
			}
		}
		o.stage = stage
	}
	return c.apply(cfg, ev, now)
}

func (c *Call) apply(cfg *Config, ev *Event, now int64) Step {
	// Since when the call is known to have been watched, before this event: always, when
	// a snapshot of it was applied (watchAll); since its first event, when only other
	// events were (a status-update); never (watchNone) for its first event.
	watched := int64(watchNone)
	switch {
	case c.flags&flagSeen != 0:
		watched = watchAll
	case c.flags&flagEvent != 0:
		watched = c.orderTime // the first event's Received, until a snapshot is applied
	default:
		c.orderTime = ev.Received
	}
	c.last = max(c.last, ev.Received)
	c.flags |= flagEvent
	switch {
	case c.ended:
		return Step{Wake: c.wake(cfg), Ignored: true}
	case ev.Ends():
		return c.end(cfg, ev, now)
	case ev.Type == TypeOutput:
		return Step{Wake: c.wake(cfg), Ignored: true}
	case ev.Type == TypeSpeechUpdate:
		c.flags |= flagSpoke
		return c.speak(cfg, ev, now)
	case !ev.IsSnapshot():
		kept := c.latest(ev)
		return Step{Wake: c.wake(cfg), Kept: kept}
	case !c.newer(ev):
		return Step{Wake: c.wake(cfg), Ignored: true}
	}
	return c.snapshot(cfg, ev, now, watched)
}

// The watched of apply and snapshot that are not a time: a call watched since before its
// past, and one never watched before.
const (
	watchAll  = math.MinInt64
	watchNone = math.MaxInt64
)

// newer reports whether a snapshot is newer than the one applied, and if so takes its
// place (SPEC §2): by message.timestamp; without one (or on a tie), when it ends with a
// message the applied one did not end with and holds that one before its end, else,
// when both ends carry their own times, when its end is the later message (a sliding
// window that moved past the applied one's end, after a snapshot lost or with several
// messages at once), else when it ends with a message the applied one lacks (the same
// without own times), else when it is longer. The same snapshot again is newer:
// applying it changes nothing.
func (c *Call) newer(ev *Event) bool {
	next, newer := c.placed(ev)
	if newer {
		for i := range ev.Messages { // placed has no use for them: only the applied one's
			next.keys |= keyBits(ev.Messages[i].Key)
		}
		c.setOrder(next)
	}
	return newer
}

// placed returns the order of a snapshot, and whether it is newer than the one applied.
func (c *Call) placed(ev *Event) (order, bool) {
	n := len(ev.Messages)
	var tail uint64
	var tailTime int64 // the own time of its tail, Unix ms; 0 for none
	if n > 0 {
		tail, tailTime = ev.Messages[n-1].Key, ev.Messages[n-1].Time
	}
	next := order{time: ev.Time, tail: tail, count: keptCount(ev.Count), seen: true}
	if ev.Time == 0 && tailTime != 0 {
		next.time, next.own = tailTime, true
	}
	o := c.order()
	switch {
	case !o.seen:
		return next, true
	case !o.own && o.time != 0 && ev.Time != 0 && o.time != ev.Time:
		return next, ev.Time > o.time
	case o.tail == tail:
		return next, next.count >= o.count
	case o.tail != 0 && tail != 0 && holds(ev.Messages[:n-1], o.tail):
		return next, true
	case o.own && o.time != 0 && tailTime != 0 && o.time != tailTime:
		return next, tailTime > o.time
	case tail != 0 && (o.count <= 1 || !mayHold(o.keys, tail)):
		// It ends with a message the applied one lacks (which, of one message or none,
		// holds none but its last): a sliding window that moved past the applied one's
		// end (a snapshot lost, swapped with it, or a window of one).
		return next, true
	}
	return next, next.count > o.count
}

// answersBy reports whether ev answers the open stretch, whose deadline is at: a newer
// snapshot holding a reply after it, or the assistant's speech; and if so whether in
// time. In time means accepted by NATS by the deadline (SPEC §2). For an event read back
// in stored order that is its stored time, when the answer is what the event brought.
// Where that time is not known — a reply that more messages followed came in an earlier
// snapshot, which a stream keeping one message per subject may have replaced; a rebuild
// (Held) sees only the latest message of each subject; an event read live while the
// evidence lagged arrived who knows how late — the pipeline's own clock tells (the
// deadline moved onto it through the turns' own times), and without those times nothing
// shows a hang.
func (c *Call) answersBy(cfg *Config, ev *Event, at int64) (answers, inTime bool) {
	o := c.open
	var t int64 // the answer's own time, Unix ms
	brought := true
	switch {
	case ev.Type == TypeSpeechUpdate && ev.Speech:
		if ev.Time != 0 && o.last.time != 0 && ev.Time < o.last.time {
			return false, false // it started before the stretch's latest turn ended
		}
		t = ev.Time
	case ev.IsSnapshot():
		if _, newer := c.placed(ev); !newer {
			return false, false
		}
		msgs := ev.Messages
		_, r := c.replyTo(o, msgs)
		if r < 0 {
			return false, false
		}
		t = msgs[r].Time
		brought = firstRole(msgs, RoleUser, r+1) < 0 && firstRole(msgs, RoleReply, r+1) < 0
	default:
		return false, false
	}
	switch {
	case ev.Stored && brought && !ev.Held:
		return true, ev.Received <= at
	case t != 0 && o.first.time != 0 && o.last.time != 0:
		return true, t*int64(time.Millisecond) <= o.ownDeadline()
	}
	return true, true
}

// ownDeadline is the stretch's deadline by its turns' own timestamps (engine-ns scale),
// which the caller checks are both present: what the pipeline's own clock says, when the
// arrival of an event tells nothing (the evidence lagged, or a stream replaced it).
func (o *stretch) ownDeadline() int64 {
	ms := int64(time.Millisecond)
	at, _ := Deadline(o.first.time*ms, o.last.time*ms, &o.th, o.stage)
	return at
}

// movedOn reports whether ev, which does not answer the open stretch and is read live
// while the evidence lags, shows by its own times that the stretch went unanswered past
// its deadline: the caller spoke again after it (a new turn would otherwise re-arm the
// timeout from itself), or the call ended after it (the end would otherwise free the call
// before the deadline may fire). Without own times, or in a rebuild, nothing shows it.
func (c *Call) movedOn(ev *Event) bool {
	o := c.open
	if ev.Stored || ev.Held || o.first.time == 0 || o.last.time == 0 {
		return false
	}
	var t int64 // when the call moved on, Unix ms
	switch {
	case ev.Ends():
		if ev.HasHistory && ev.Count > 0 && c.repliedIn(ev.Messages) {
			return false // its history tells, in end
		}
		t = ev.Time
	case ev.IsSnapshot():
		if _, newer := c.placed(ev); !newer {
			return false
		}
		// The earliest user turn spoken after the stretch's latest: a window may have cut
		// the stretch's own turns, so by time, not by position.
		for i := range ev.Messages {
			if m := &ev.Messages[i]; m.Role == RoleUser && m.Time > o.last.time && (t == 0 || m.Time < t) {
				t = m.Time
			}
		}
	}
	return t != 0 && t*int64(time.Millisecond) > o.ownDeadline()
}

// holds reports whether msgs holds a message with key k. It looks from the end, where
// the tail of the snapshot applied before stands in the next one.
func holds(msgs []Message, k uint64) bool {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Key == k {
			return true
		}
	}
	return false
}

// latest keeps the payload of a status-only event as the call's latest, unless it is
// older than the latest: the call object the outputs carry is the newest.
func (c *Call) latest(ev *Event) bool {
	o := c.open
	if o == nil || (ev.Time != 0 && ev.Time < o.latestTime) {
		return false
	}
	o.latest, o.latestTime = ev.Payload, max(o.latestTime, ev.Time)
	return true
}

// snapshot applies a snapshot newer than the one applied before.
func (c *Call) snapshot(cfg *Config, ev *Event, now int64, watched int64) Step {
	msgs := ev.Messages
	// Every user turn up to f is answered already, whatever this history says.
	f := c.answeredIn(msgs)
	lastReply := lastRole(msgs, RoleReply, f+1, len(msgs))
	var step Step

	prev := c.open // the stretch the call had open, if any
	if o := c.open; o != nil {
		// s is where the stretch starts in this history, p where it stands: its first and
		// its latest turn, each falling back on the other; -1 when a window cut both, and
		// every message here is newer than they are.
		s, p := findUser(msgs, o.first.key), findUser(msgs, o.last.key)
		if s < 0 {
			s = p
		}
		if p < 0 {
			p = s
		}
		// The first reply after its first turn answers it, even one before its latest turn
		// (an empty message filled in place after the caller spoke again): the turns after
		// that reply are a stretch of their own. When this history shows neither turn (a
		// window cut them, or a turn without messageId was rewritten, which changes its
		// identity), a reply answers it unless its own time says it came before the
		// stretch began (a greeting before a rewritten turn).
		if _, r := c.replyTo(o, msgs); r >= 0 {
			u := lastRole(msgs, RoleUser, max(s, f)+1, r)
			if u < 0 && s < r {
				u = s
			}
			// A reply before the turn shown (a window cut the first turn, and the reply
			// was filled in place after the caller spoke again) answers the turns before
			// it: the first turn, as far as this history tells.
			answered := o.last
			if u < 0 && s > r {
				answered = o.first
			}
			if o.hung {
				step.Outputs = append(step.Outputs, c.resolve(cfg, ev, msgs, u, r, &answered, now))
			}
			if u >= 0 {
				c.answered = turnRef{msgs[u].Key, msgs[u].Time}
			} else {
				c.answered = answered.ref()
			}
			c.open = nil
		} else {
			c.extend(cfg, ev, msgs, p, f, &step)
			if lastReply > f {
				// A reply before the stretch that no snapshot showed: the turns before it
				// are answered.
				if u := lastRole(msgs, RoleUser, f+1, lastReply); u >= 0 && (s < 0 || u < s) {
					c.answered = turnRef{msgs[u].Key, msgs[u].Time}
				}
			}
			step.Wake = c.wake(cfg)
			return step
		}
	}

	// The stretches this history answers beyond the one the call had open: the latest
	// of them never seen unanswered may have hung, which its timestamps tell. Read
	// back from a stream, or live when it came after a snapshot of the call (the one
	// that showed it unanswered was never delivered), or after another event of the
	// call that came before its deadline (a status-update: the call was watched when it
	// hung): not live in the first event seen of a call, whose past was before
	// hangwatch watched it.
	f = c.answeredIn(msgs)
	if u := lastRole(msgs, RoleUser, f+1, lastReply); u >= 0 {
		if ev.Stored {
			watched = watchAll
		}
		if watched != watchNone && !cfg.Disabled {
			first := firstRole(msgs, RoleUser, max(lastRole(msgs, RoleReply, f+1, u), f)+1)
			r := firstRole(msgs, RoleReply, u+1)
			step.Outputs = append(step.Outputs, c.revealed(cfg, ev, msgs, first, u, r, now, watched)...)
		}
		c.answered = turnRef{msgs[u].Key, msgs[u].Time}
		f = u
	}

	// The unanswered stretch of the history, if any: the user turns after its last reply.
	if first := firstRole(msgs, RoleUser, max(f, lastReply)+1); first >= 0 && !cfg.Disabled {
		last := lastRole(msgs, RoleUser, first, len(msgs))
		if t := msgs[last].Time; c.speech != 0 && t != 0 && t <= c.speech {
			// The assistant started speaking after the turn ended (a speech-update came
			// before the snapshot that holds the turn): answered.
			c.answered = turnRef{msgs[last].Key, t}
		} else {
			c.open = &stretch{
				first:      prev.mark(ev, &msgs[first], cfg),
				th:         cfg.Thresholds,
				stage:      stageOf(ev, msgs[first+1:]),
				snapshot:   ev.Payload,
				latest:     ev.Payload,
				latestTime: ev.Time,
			}
			if last == first {
				c.open.last = c.open.first
			} else {
				c.open.last = prev.mark(ev, &msgs[last], cfg)
			}
			step.Kept, step.Tail = true, tailFrom(msgs, first)
		}
	}
	step.Wake = c.wake(cfg)
	return step
}

// answeredIn returns the position in msgs of the last user turn that is answered
// already: the latest seen answered, or one whose own time is not after its time; -1
// when there is none.
func (c *Call) answeredIn(msgs []Message) int {
	a := c.answered
	if a.key == 0 {
		return -1
	}
	// From the end: the answered turn is usually among the latest messages.
	for i := len(msgs) - 1; i >= 0; i-- {
		m := &msgs[i]
		if m.Role == RoleUser && (m.Key == a.key || (a.time != 0 && m.Time != 0 && m.Time <= a.time)) {
			return i
		}
	}
	return -1
}

// extend applies a snapshot in which the open stretch is still unanswered; p is where
// the stretch stands in it (-1: not shown), f the last turn answered already. A new
// user turn re-arms the turn timeout, the stage follows the tools, and the outputs will
// carry the newest history.
func (c *Call) extend(cfg *Config, ev *Event, msgs []Message, p, f int, step *Step) {
	o := c.open
	if u := lastRole(msgs, RoleUser, max(p, f)+1, len(msgs)); u >= 0 && msgs[u].Key != o.last.key {
		o.last = newMark(ev, &msgs[u], cfg)
		if !o.hung {
			if cfg.Disabled {
				// A new turn arms a new deadline with the thresholds in force, and these
				// watch nothing: the call is not watched until a snapshot arms it again.
				c.open = nil
				return
			}
			o.th = cfg.Thresholds
		}
	}
	// Where the stretch starts in this history: its first turn, else (a window cut it)
	// the first user turn after every reply, which all stand before the stretch.
	first := findUser(msgs, o.first.key)
	// The stage follows the messages after the first turn; when a window cut it, every
	// message after the last reply (and the turns answered already) is of the stretch, a
	// tool call before its remaining turns included.
	from := first + 1
	if first < 0 {
		from = max(f, lastRole(msgs, RoleReply, 0, len(msgs))) + 1
		first = firstRole(msgs, RoleUser, from)
	}
	if first < 0 {
		first = len(msgs)
	}
	if !o.hung {
		o.stage = stageOf(ev, msgs[min(from, len(msgs)):])
	}
	o.snapshot = ev.Payload
	if ev.Time == 0 || ev.Time >= o.latestTime {
		o.latest, o.latestTime = ev.Payload, max(o.latestTime, ev.Time)
	}
	step.Kept, step.Tail = true, tailFrom(msgs, first)
}

// tailFrom returns the index in the messages array where the tail of a history starts,
// for a stretch whose first user turn is msgs[first]: at the last reply before it, else at
// that turn.
func tailFrom(msgs []Message, first int) int32 {
	if first >= len(msgs) {
		return 0
	}
	if r := lastRole(msgs, RoleReply, 0, first); r >= 0 {
		return msgs[r].Index
	}
	return msgs[first].Index
}

// resolve builds the hang-resolved of the open stretch, answered by msgs[r] after the user
// turn msgs[u] (u < 0: not shown), at now.
func (c *Call) resolve(cfg *Config, ev *Event, msgs []Message, u, r int, answered *mark, now int64) *Output {
	o := c.open
	user := answered.id
	if u >= 0 && msgs[u].Key != answered.key {
		user = messageID(&msgs[u])
	}
	reply := &msgs[r]
	return &Output{
		Kind:               KindResolved,
		Reason:             o.reason,
		Stage:              o.stage,
		UserMessageID:      user,
		FirstUserMessageID: o.first.id,
		ReplyMessageID:     messageID(reply),
		At:                 now,
		Armed:              o.first.anchor,
		Wait:               waitBetween(&o.first, reply.Time, Anchor(reply.Time, ev.Received, ev.Wall, cfg.MaxLag)),
		Snapshot:           ev.Payload,
		Latest:             ev.Payload,
	}
}

// waitBetween returns the wait from the first turn of a stretch to a moment known by its
// own time t (Unix ms, 0 for none) and its anchor: the difference of the own times when
// both have one (one clock, the pipeline's, so skew cancels out), else of the anchors;
// never below zero.
func waitBetween(first *mark, t, anchor int64) time.Duration {
	if first.time != 0 && t != 0 {
		return time.Duration(max(t-first.time, 0)) * time.Millisecond
	}
	return time.Duration(max(anchor-first.anchor, 0))
}

// revealed returns the hang and hang-resolved of a stretch first seen answered,
// msgs[first..last] answered by msgs[r], when its timestamps show it hung. The hang names
// the turn in force at its deadline, the resolved the last turn before the reply.
func (c *Call) revealed(cfg *Config, ev *Event, msgs []Message, first, last, r int, now, watched int64) []*Output {
	if first < 0 || r < 0 {
		return nil
	}
	at, reason, stage, turn, ok := revealedHang(ev, msgs, first, r, &cfg.Thresholds)
	if !ok {
		return nil
	}
	reply := &msgs[r]
	if ev.Wall/int64(time.Millisecond)-reply.Time > cfg.CallTTL.Milliseconds() {
		// A reply older than a call's life: this history is of a call forgotten since,
		// whose outputs, if any, went out then.
		return nil
	}
	// Pipeline time to engine time, through the reply's anchor.
	toEngine := func(t int64) int64 {
		return Anchor(reply.Time, ev.Received, ev.Wall, cfg.MaxLag) - (reply.Time-t)*int64(time.Millisecond)
	}
	if toEngine(at) < watched {
		return nil // it hung before the call was watched
	}
	fm := newMark(ev, &msgs[first], cfg)
	from, threshold := msgs[turn].Time, cfg.turn(stage)
	if reason == ReasonMaxWait {
		from, threshold = msgs[first].Time, cfg.MaxWait
	}
	hang := &Output{
		Kind:               KindHang,
		Reason:             reason,
		Stage:              stage,
		UserMessageID:      messageID(&msgs[turn]), // the turn in force at the deadline
		FirstUserMessageID: fm.id,
		At:                 now,
		Deadline:           toEngine(at),
		Armed:              toEngine(msgs[first].Time),
		Wait:               time.Duration(max(now-toEngine(from), 0)),
		Threshold:          threshold,
		Late:               true,
		Snapshot:           ev.Payload,
		Latest:             ev.Payload,
	}
	res := *hang
	res.Kind, res.ReplyMessageID = KindResolved, messageID(reply)
	res.UserMessageID = messageID(&msgs[last])
	res.Deadline, res.Threshold, res.Late = 0, 0, false
	res.Wait = waitBetween(&fm, reply.Time, 0)
	return []*Output{hang, &res}
}

// speak applies a speech-update: the assistant started speaking. It answers the open
// stretch, unless it started before the stretch's latest turn ended.
func (c *Call) speak(cfg *Config, ev *Event, now int64) Step {
	if !ev.Speech {
		return Step{Wake: c.wake(cfg)}
	}
	c.speech = max(c.speech, ev.Time)
	o := c.open
	if o == nil || (ev.Time != 0 && o.last.time != 0 && ev.Time < o.last.time) {
		return Step{Wake: c.wake(cfg)}
	}
	var step Step
	if o.hung {
		step.Outputs = []*Output{{
			Kind:               KindResolved,
			Reason:             o.reason,
			Stage:              o.stage,
			UserMessageID:      o.last.id,
			FirstUserMessageID: o.first.id,
			At:                 now,
			Armed:              o.first.anchor,
			Wait:               waitBetween(&o.first, ev.Time, Anchor(ev.Time, ev.Received, ev.Wall, cfg.MaxLag)),
			Snapshot:           o.snapshot,
			Latest:             ev.Payload,
		}}
	}
	c.answered = o.last.ref()
	c.open = nil
	step.Wake = c.wake(cfg)
	return step
}

// end applies the event that ends the call: a hung stretch that its history does not
// show answered publishes its hang-unresolved; nothing else is published, and the call
// ignores every later event.
func (c *Call) end(cfg *Config, ev *Event, now int64) Step {
	o := c.open
	c.ended, c.open = true, nil
	step := Step{Wake: c.wake(cfg), Ended: true}
	if o == nil || !o.hung {
		return step
	}
	snapshot, user := o.snapshot, o.last.id
	if ev.HasHistory && ev.Count > 0 {
		msgs := ev.Messages
		s, from := c.stretchIn(o, msgs)
		if _, r := c.replyTo(o, msgs); r >= 0 {
			// Answered after all, from the first turn on as in snapshot: nothing more is
			// published for an ended call.
			return step
		}
		snapshot = ev.Payload
		// The history it carries may hold a later turn of the stretch than any snapshot did.
		if u := lastRole(msgs, RoleUser, from, len(msgs)); s >= 0 && u >= 0 {
			user = messageID(&msgs[u])
		}
	}
	step.Outputs = []*Output{{
		Kind:               KindUnresolved,
		Reason:             o.reason,
		Stage:              o.stage,
		UserMessageID:      user,
		FirstUserMessageID: o.first.id,
		EndedReason:        strings.Clone(ev.EndedReason),
		At:                 now,
		Armed:              o.first.anchor,
		Wait:               waitBetween(&o.first, ev.Time, Anchor(ev.Time, ev.Received, ev.Wall, cfg.MaxLag)),
		Snapshot:           snapshot,
		Latest:             ev.Payload,
	}}
	return step
}

// stretchIn returns where stretch o starts in msgs (its first turn, else its latest;
// -1 when neither is there), and from where a message after it would answer it.
func (c *Call) stretchIn(o *stretch, msgs []Message) (start, from int) {
	start = findUser(msgs, o.first.key)
	if start < 0 {
		start = findUser(msgs, o.last.key)
	}
	return start, max(start, c.answeredIn(msgs)) + 1
}

// replyTo returns where stretch o starts in msgs (-1: not shown) and the reply that
// answers it (-1: none): the first reply after its start and after every turn answered
// already. When msgs shows neither of its turns (a window cut them, or a turn without
// messageId was rewritten, which changes its identity), a reply whose own time says it
// came before the stretch began (a greeting) answers nothing.
func (c *Call) replyTo(o *stretch, msgs []Message) (start, r int) {
	start, from := c.stretchIn(o, msgs)
	if start >= 0 && msgs[start].Key != o.first.key && o.first.time != 0 {
		// A window cut the first turn and shows a later one: a reply filled in place
		// after the caller spoke again may stand before it, its own time after the first.
		for i := c.answeredIn(msgs) + 1; i < start; i++ {
			if m := &msgs[i]; m.Role == RoleReply && m.Time != 0 && m.Time >= o.first.time {
				return start, i
			}
		}
	}
	r = firstRole(msgs, RoleReply, from)
	for start < 0 && r >= 0 && msgs[r].Time != 0 && o.first.time != 0 && msgs[r].Time < o.first.time {
		r = firstRole(msgs, RoleReply, r+1)
	}
	return start, r
}

// stageBeforeReply returns the stage of the open stretch that a newer snapshot shows
// just before its reply to it, when it holds the stretch's first turn and a reply: the
// stage its deadline had when the reply came.
func (c *Call) stageBeforeReply(ev *Event) (Stage, bool) {
	o := c.open
	if o.stage != StageAwaitingTool || !ev.IsSnapshot() {
		return 0, false
	}
	msgs := ev.Messages
	start, r := c.replyTo(o, msgs)
	if start < 0 || r < 0 || r <= start || msgs[start].Key != o.first.key {
		return 0, false
	}
	if _, newer := c.placed(ev); !newer {
		return 0, false
	}
	return stageOf(ev, msgs[start+1:r]), true
}

// repliedIn reports whether msgs holds a reply to the open stretch.
func (c *Call) repliedIn(msgs []Message) bool {
	_, r := c.replyTo(c.open, msgs)
	return r >= 0
}

// Tick tells the call that every deadline up to due may fire (the input has caught up
// with it) and that the time is now (due <= now). It publishes the hang of a stretch
// whose deadline is due, measured to now, and forgets a call that has had no event for
// the call TTL.
func (c *Call) Tick(cfg *Config, due, now int64) Step {
	if o := c.open; o != nil && !o.hung {
		at, reason := Deadline(o.first.anchor, o.last.anchor, &o.th, o.stage)
		if due < at {
			return Step{Wake: at}
		}
		from, threshold := o.last.anchor, o.th.turn(o.stage)
		if reason == ReasonMaxWait {
			from, threshold = o.first.anchor, o.th.MaxWait
		}
		o.hung, o.reason = true, reason
		out := &Output{
			Kind:               KindHang,
			Reason:             reason,
			Stage:              o.stage,
			UserMessageID:      o.last.id,
			FirstUserMessageID: o.first.id,
			At:                 now,
			Deadline:           at,
			Armed:              o.first.anchor,
			Wait:               time.Duration(max(now-from, 0)),
			Threshold:          threshold,
			Snapshot:           o.snapshot,
			Latest:             o.latest,
		}
		return Step{Outputs: []*Output{out}, Wake: c.wake(cfg)}
	}
	if due >= saturatingAdd(c.last, cfg.CallTTL) {
		return Step{Forget: true}
	}
	return Step{Wake: c.wake(cfg)}
}

// wake returns when the call next needs a tick: the deadline of a stretch that has not
// hung yet (it comes before the TTL, which Config.Validate ensures), else the end of its
// TTL.
func (c *Call) wake(cfg *Config) int64 {
	if o := c.open; o != nil && !o.hung {
		at, _ := Deadline(o.first.anchor, o.last.anchor, &o.th, o.stage)
		return at
	}
	return saturatingAdd(c.last, cfg.CallTTL)
}

// mark returns the mark of a user turn: the one the stretch s (nil: none) has of it, which
// keeps the anchor of the event that first showed it, else a new one. A turn between s's
// first and latest (a stretch split by a reply filled in place starts at it) reached the
// engine between them: its anchor is placed by its own time between theirs, not at this
// event, which may come much later.
func (s *stretch) mark(ev *Event, m *Message, cfg *Config) mark {
	switch {
	case s == nil:
	case m.Key == s.last.key:
		return s.last
	case m.Key == s.first.key:
		return s.first
	case m.Time != 0 && s.first.time != 0 && s.first.time <= m.Time && m.Time <= s.last.time:
		k := newMark(ev, m, cfg)
		between := s.first.anchor + (m.Time-s.first.time)*int64(time.Millisecond)
		k.anchor = min(k.anchor, max(s.first.anchor, min(between, s.last.anchor)))
		return k
	}
	return newMark(ev, m, cfg)
}

// newMark returns the mark of a user turn, with a copy of its id.
func newMark(ev *Event, m *Message, cfg *Config) mark {
	return mark{
		id:     strings.Clone(messageID(m)),
		key:    m.Key,
		anchor: Anchor(m.Time, ev.Received, ev.Wall, cfg.MaxLag),
		time:   m.Time,
	}
}

// messageID returns the messageId of a message, or for one without it a fallback that is
// unique within the call: its role, its own time and its key, as in
// "user-1772700008300-9c1d2e3f". It may alias the payload.
func messageID(m *Message) string {
	if m.ID != "" {
		return m.ID
	}
	role := "assistant"
	if m.Role == RoleUser {
		role = "user"
	}
	b := make([]byte, 0, 48)
	b = append(b, role...)
	if m.Time != 0 {
		b = strconv.AppendInt(append(b, '-'), m.Time, 10)
		b = appendHex(append(b, '-'), m.Key>>32, 8)
	} else {
		b = appendHex(append(b, '-'), m.Key, 16)
	}
	return string(b)
}

func appendHex(b []byte, v uint64, n int) []byte {
	const digits = "0123456789abcdef"
	for i := n - 1; i >= 0; i-- {
		b = append(b, digits[(v>>(4*uint(i)))&0xf])
	}
	return b
}
