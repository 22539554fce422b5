package engine

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// This file checks the engine against a reference model: SPEC §2 written out again, as
// plainly as possible, over each call's whole history in order, and driven by random
// traffic. The engine must give the model's outputs, to the nanosecond, when the
// traffic is delivered as it was sent; when every snapshot is also delivered again
// later, stale, or as a sliding window of its latest messages; and when the input is
// cut off at random points (what was published meanwhile is delivered once the input
// is back, each message after a mark at its stored time, as JetStream does).

// gmsg is a message of a generated history.
type gmsg struct {
	id   string
	role detector.Role
	ts   int64  // own timestamp, Unix ms; 0: none
	tool string // the tool call it makes or answers
}

// gevent is an event of the generated traffic.
type gevent struct {
	call, team string
	typ        detector.Type
	status     detector.Status
	ts         int64  // message.timestamp, Unix ms
	hist       []gmsg // the whole history, for a snapshot or an end report that has one
	name       string // its identity: the name of its payload, the same for every copy
	from       int    // a sliding window: the history from this index on
}

// event returns the detector event of g, as a decoder would make it.
func (g *gevent) event() *detector.Event {
	ev := &detector.Event{Type: g.typ, Status: g.status, CallID: g.call, TeamID: g.team, AssistantID: "assistant",
		Time: g.ts, Payload: payload(g.name)}
	if g.hist == nil {
		return ev
	}
	msgs := g.hist[g.from:]
	ev.HasHistory, ev.Count = true, int32(len(msgs))
	for i, x := range msgs {
		m := detector.Message{Role: x.role, Index: int32(i), ID: x.id, Key: key(x.id), Time: x.ts}
		m.ToolLo = int32(len(ev.Tools))
		if x.tool != "" {
			ev.Tools = append(ev.Tools, key(x.tool))
		}
		m.ToolHi = int32(len(ev.Tools))
		ev.Messages = append(ev.Messages, m)
	}
	return ev
}

// delivery is one delivery of an event: at is when it reached the input (ns after
// start); first says it is the event's first delivery, which the model applies.
type delivery struct {
	at    int64
	ev    *gevent
	first bool
}

// cutSpan is a time span, ns after start.
type cutSpan struct{ from, to int64 }

// traffic is what a run delivers: deliveries in order, extra clock steps (so that
// deadlines also fire between events), and the spans during which the input is cut off.
type traffic struct {
	deliveries []delivery
	steps      []int64
	cuts       []cutSpan
}

// times returns every moment the clock stops at, in order.
func (tr *traffic) times() []int64 {
	var ts []int64
	for _, d := range tr.deliveries {
		ts = append(ts, d.at)
	}
	ts = append(ts, tr.steps...)
	for _, c := range tr.cuts {
		ts = append(ts, c.to)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

// cutAt returns the cut that t falls in (from <= t < to), if any.
func (tr *traffic) cutAt(t int64) (cutSpan, bool) {
	for _, c := range tr.cuts {
		if c.from <= t && t < c.to {
			return c, true
		}
	}
	return cutSpan{}, false
}

// modelConfig is the engine's configuration in the model runs, and the thresholds of
// the teams.
func modelConfig() (detector.Config, map[string]detector.Thresholds) {
	cfg := detector.Config{MaxLag: time.Second, CallTTL: 2 * time.Minute,
		Thresholds: detector.Thresholds{Timeout: 5 * time.Second, MaxWait: 12 * time.Second, ToolTimeout: 9 * time.Second}}
	teams := map[string]detector.Thresholds{
		"std":  cfg.Thresholds,
		"fast": {Timeout: 3 * time.Second},
		"slow": {Timeout: 8 * time.Second, MaxWait: 14 * time.Second},
	}
	return cfg, teams
}

// --- The model ---

type modelStretch struct {
	first, last             int // positions in the history
	firstAnchor, lastAnchor int64
	th                      detector.Thresholds
	stage                   detector.Stage
	hung                    bool
	reason                  detector.Reason
	snapshot, latest        string
	latestTime              int64
}

type modelCall struct {
	hist     []gmsg // the latest history applied
	last     int64  // the latest event's arrival
	answered int    // position of the last user turn answered, -1 for none
	open     *modelStretch
	ended    bool
	endedAt  int64
}

type model struct {
	cfg   detector.Config
	teams map[string]detector.Thresholds
	calls map[string]*modelCall
	outs  map[string][]string
	lives map[string][]int // per call, the number of its outputs when it was forgotten
}

func newModel() *model {
	cfg, teams := modelConfig()
	return &model{cfg: cfg, teams: teams, calls: map[string]*modelCall{}, outs: map[string][]string{}, lives: map[string][]int{}}
}

func (m *model) emit(id, s string) { m.outs[id] = append(m.outs[id], s) }

// anchor clamps a message's own timestamp ts (Unix ms, 0: none) into
// [received-max-lag, received]; the fake clock's wall time is the engine's time.
func (m *model) anchor(ts, received int64) int64 {
	if ts == 0 {
		return received
	}
	return min(max(ts*int64(time.Millisecond), received-int64(m.cfg.MaxLag)), received)
}

// wait is the wait from the first turn of o to a moment of own time ts and anchor a.
func (m *model) wait(c *modelCall, ts, a int64) int64 {
	o := c.open
	if f := c.hist[o.first].ts; f != 0 && ts != 0 {
		return max(ts-f, 0) * int64(time.Millisecond)
	}
	return max(a-o.firstAnchor, 0)
}

func turnTimeout(th detector.Thresholds, s detector.Stage) time.Duration {
	if s == detector.StageAwaitingTool && th.ToolTimeout > 0 {
		return th.ToolTimeout
	}
	return th.Timeout
}

func (m *model) deadline(o *modelStretch) (int64, detector.Reason) {
	at := o.lastAnchor + int64(turnTimeout(o.th, o.stage))
	if o.th.MaxWait > 0 && o.firstAnchor+int64(o.th.MaxWait) < at {
		return o.firstAnchor + int64(o.th.MaxWait), detector.ReasonMaxWait
	}
	return at, detector.ReasonTurnTimeout
}

// fire fires what evidence e lets fire in call id, at now: its hang, or its end of life.
func (m *model) fire(id string, e, now int64) { m.fireOwn(id, e, now, false) }

// fireOwn is fire; own says that a stored message of the call comes next, which its end
// of life must wait for when the call is armed: as the engine leaves an armed call's
// deadline to the detector for a stored message of its own, the message is applied to
// the call as it stands, and its hang, if due, comes first.
func (m *model) fireOwn(id string, e, now int64, own bool) {
	c := m.calls[id]
	if c == nil || c.ended {
		return
	}
	armed := c.open != nil && !c.open.hung
	if o := c.open; o != nil && !o.hung {
		at, reason := m.deadline(o)
		if at > e {
			return
		}
		from, threshold := o.lastAnchor, turnTimeout(o.th, o.stage)
		if reason == detector.ReasonMaxWait {
			from, threshold = o.firstAnchor, o.th.MaxWait
		}
		o.hung, o.reason = true, reason
		m.emit(id, fmt.Sprintf("hang %v %v user=%s first=%s at=%d deadline=%d wait=%d threshold=%v snapshot=%s latest=%s",
			reason, o.stage, c.hist[o.last].id, c.hist[o.first].id, now-start.UnixNano(), at-start.UnixNano(), now-from,
			threshold, o.snapshot, o.latest))
	}
	if e >= c.last+int64(m.cfg.CallTTL) && !(own && armed) {
		delete(m.calls, id)
		m.lives[id] = append(m.lives[id], len(m.outs[id]))
	}
}

func (m *model) fireAll(e, now int64) {
	for _, id := range slices.Sorted(maps.Keys(m.calls)) {
		m.fire(id, e, now)
	}
}

// stage reads the stage of a stretch from the messages after its first user turn.
func stageOf(msgs []gmsg) detector.Stage {
	pending, called := map[string]int{}, false
	for _, x := range msgs {
		switch x.role {
		case detector.RoleToolCall:
			pending[x.tool]++
			called = true
		case detector.RoleToolResult:
			if pending[x.tool] > 0 {
				pending[x.tool]--
			}
		}
	}
	for _, n := range pending {
		if n > 0 {
			return detector.StageAwaitingTool
		}
	}
	if called {
		return detector.StageAfterTool
	}
	return detector.StageAwaitingAssistant
}

// apply applies the first delivery of ev, received at r (the clock at now; stored: the
// stored time of a stream). Copies of an event only touch the call (touch).
func (m *model) apply(ev *gevent, r, now int64, stored bool) {
	c := m.calls[ev.call]
	if c != nil && c.ended {
		if now-c.endedAt < int64(m.cfg.CallTTL) {
			return
		}
		delete(m.calls, ev.call) // forgotten: the id starts a new call
		m.lives[ev.call] = append(m.lives[ev.call], len(m.outs[ev.call]))
		c = nil
	}
	ends := ev.typ == detector.TypeEndOfCallReport || ev.status.Ends()
	if c == nil {
		switch {
		case ends:
			m.calls[ev.call] = &modelCall{ended: true, endedAt: now}
			return
		case ev.typ == detector.TypeOutput:
			return
		}
		c = &modelCall{answered: -1}
		m.calls[ev.call] = c
	}
	c.last = max(c.last, r)
	th := m.teams[ev.team]
	o := c.open
	switch {
	case ends:
		c.ended, c.endedAt, c.open = true, now, nil
		if o == nil || !o.hung {
			return
		}
		snapshot := o.snapshot
		if len(ev.hist) > 0 {
			snapshot = ev.name // in order, its history has no reply after the stretch
		}
		c.open = o // for wait
		m.emit(ev.call, fmt.Sprintf("hang-unresolved %v %v user=%s first=%s at=%d wait=%d snapshot=%s latest=%s",
			o.reason, o.stage, c.hist[o.last].id, c.hist[o.first].id, now-start.UnixNano(), m.wait(c, ev.ts, m.anchor(ev.ts, r)),
			snapshot, ev.name))
		c.open = nil
		return
	case ev.typ == detector.TypeOutput:
		return
	case ev.typ != detector.TypeConversationUpdate:
		if o != nil && ev.ts >= o.latestTime {
			o.latest, o.latestTime = ev.name, ev.ts
		}
		return
	}
	h := ev.hist
	followed := c.hist != nil // a snapshot of this life of the call came before
	c.hist = h
	lastReply := -1
	for i := range h {
		if h[i].role == detector.RoleReply {
			lastReply = i
		}
	}
	if o != nil {
		reply := -1
		for i := o.last + 1; i < len(h) && reply < 0; i++ {
			if h[i].role == detector.RoleReply {
				reply = i
			}
		}
		if reply < 0 {
			for i := o.last + 1; i < len(h); i++ {
				if h[i].role == detector.RoleUser {
					o.last, o.lastAnchor = i, m.anchor(h[i].ts, r)
					if !o.hung {
						o.th = th
					}
				}
			}
			if !o.hung {
				o.stage = stageOf(h[o.first+1:])
			}
			o.snapshot = ev.name
			if ev.ts >= o.latestTime {
				o.latest, o.latestTime = ev.name, ev.ts
			}
			return
		}
		u := o.last
		for i := o.last + 1; i < reply; i++ {
			if h[i].role == detector.RoleUser {
				u = i
			}
		}
		if o.hung {
			m.emit(ev.call, fmt.Sprintf("hang-resolved %v %v user=%s first=%s reply=%s at=%d wait=%d snapshot=%s latest=%s",
				o.reason, o.stage, h[u].id, h[o.first].id, h[reply].id, now-start.UnixNano(),
				m.wait(c, h[reply].ts, m.anchor(h[reply].ts, r)), ev.name, ev.name))
		}
		c.answered, c.open = u, nil
	}
	// User turns answered in this history that no snapshot showed unanswered (a call
	// forgotten, a stream that kept only the answered snapshot, a snapshot never
	// delivered): from a stream, or live after an earlier snapshot of the call, their own
	// timestamps tell whether the reply came after the deadline (SPEC §2, §6).
	u := -1
	for i := c.answered + 1; i < lastReply; i++ {
		if h[i].role == detector.RoleUser {
			u = i
		}
	}
	if u >= 0 {
		if stored || followed {
			m.revealed(ev, c, u, r, now, th)
		}
		c.answered = u
	}
	first := -1
	for i := max(c.answered, lastReply) + 1; i < len(h) && first < 0; i++ {
		if h[i].role == detector.RoleUser {
			first = i
		}
	}
	if first < 0 {
		return
	}
	last := first
	for i := first + 1; i < len(h); i++ {
		if h[i].role == detector.RoleUser {
			last = i
		}
	}
	c.open = &modelStretch{
		first: first, last: last, firstAnchor: m.anchor(h[first].ts, r), lastAnchor: m.anchor(h[last].ts, r),
		th: th, stage: stageOf(h[first+1:]), snapshot: ev.name, latest: ev.name, latestTime: ev.ts,
	}
}

// revealed publishes the late hang and the resolved of the stretch of h that ends with
// user turn u, when its own timestamps show the reply came after its deadline.
func (m *model) revealed(ev *gevent, c *modelCall, u int, r, now int64, th detector.Thresholds) {
	h := ev.hist
	first, reply := -1, -1
	for i := u - 1; i > c.answered && first < 0; i-- {
		if h[i].role == detector.RoleReply {
			first = i + 1
		}
	}
	first = max(first, c.answered+1)
	for first < u && h[first].role != detector.RoleUser {
		first++
	}
	for i := u + 1; i < len(h) && reply < 0; i++ {
		if h[i].role == detector.RoleReply {
			reply = i
		}
	}
	f, l, rt := h[first].ts, h[u].ts, h[reply].ts
	if f == 0 || l == 0 || rt == 0 {
		return
	}
	if r/ms-rt > m.cfg.CallTTL.Milliseconds() {
		return // a reply older than a call's life: its outputs, if any, went out then
	}
	o := &modelStretch{firstAnchor: f * ms, lastAnchor: l * ms, th: th, stage: stageOf(h[first+1 : u+1])}
	at, reason := m.deadline(o)
	// The deadline follows the tools that come before it.
	for i := u + 1; i < reply; i++ {
		if h[i].role != detector.RoleToolCall && h[i].role != detector.RoleToolResult {
			continue
		}
		if h[i].ts == 0 || h[i].ts*ms >= at {
			break
		}
		o.stage = stageOf(h[first+1 : i+1])
		at, reason = m.deadline(o)
	}
	if rt*ms <= at {
		return
	}
	toEngine := func(t int64) int64 { return m.anchor(rt, r) - (rt-t)*ms }
	from, threshold := l, turnTimeout(th, o.stage)
	if reason == detector.ReasonMaxWait {
		from, threshold = f, th.MaxWait
	}
	m.emit(ev.call, fmt.Sprintf("hang %v %v user=%s first=%s at=%d deadline=%d wait=%d threshold=%v snapshot=%s latest=%s late=true gap=0s",
		reason, o.stage, h[u].id, h[first].id, now-start.UnixNano(), toEngine(at/ms)-start.UnixNano(), max(now-toEngine(from), 0),
		threshold, ev.name, ev.name))
	m.emit(ev.call, fmt.Sprintf("hang-resolved %v %v user=%s first=%s reply=%s at=%d wait=%d snapshot=%s latest=%s",
		reason, o.stage, h[u].id, h[first].id, h[reply].id, now-start.UnixNano(), max(rt-f, 0)*ms, ev.name, ev.name))
}

// touch is a copy of an event delivered at r: it changes nothing but the time the call
// last heard of (for its TTL), unless the call ended.
func (m *model) touch(ev *gevent, r int64) {
	if c := m.calls[ev.call]; c != nil && !c.ended {
		c.last = max(c.last, r)
	}
}

// run runs the model over the traffic, up to end (ns after start).
func (m *model) run(tr *traffic, end int64) map[string][]string {
	byTime := deliveriesByTime(tr)
	var buffered []delivery
	for _, t := range tr.times() {
		now := start.UnixNano() + t
		if c, ok := tr.cutAt(t); ok && c.from <= t {
			buffered = append(buffered, byTime[t]...)
			continue
		}
		for _, d := range buffered { // the input is back: the backlog, each after its mark
			r := start.UnixNano() + d.at
			for _, id := range slices.Sorted(maps.Keys(m.calls)) {
				m.fireOwn(id, r, now, id == d.ev.call)
			}
			m.deliver(d, r, r, now, true)
		}
		buffered = nil
		m.fireAll(now, now)
		for _, d := range byTime[t] {
			m.deliver(d, now, now, now, false)
		}
	}
	m.fireAll(start.UnixNano()+end, start.UnixNano()+end)
	return m.outs
}

func (m *model) deliver(d delivery, r, e, now int64, stored bool) {
	if !d.first {
		m.touch(d.ev, r)
		return
	}
	m.apply(d.ev, r, now, stored)
	m.fire(d.ev.call, e, now) // a deadline the event moved into the past fires at once
}

func deliveriesByTime(tr *traffic) map[int64][]delivery {
	byTime := map[int64][]delivery{}
	for _, d := range tr.deliveries {
		byTime[d.at] = append(byTime[d.at], d)
	}
	return byTime
}

// --- The engine, driven the same way ---

// drive runs the traffic through the engine of h up to end, and returns its outputs
// rendered like the model's, by call.
func drive(h *harness, tr *traffic, end int64) map[string][]string {
	byTime := deliveriesByTime(tr)
	var buffered []delivery
	for _, t := range tr.times() {
		h.clock.Advance(time.Duration(start.UnixNano() + t - h.now()))
		if _, ok := tr.cutAt(t); ok {
			buffered = append(buffered, byTime[t]...)
			continue
		}
		for _, d := range buffered {
			when := at(time.Duration(d.at))
			h.in.Mark(when)
			h.in.Deliver(h.msgAt(d.ev.event(), when, true))
		}
		buffered = nil
		h.in.Mark(h.clock.Now())
		for _, d := range byTime[t] {
			h.in.Deliver(h.msg(d.ev.event()))
		}
		h.barrier()
	}
	h.clock.Advance(time.Duration(start.UnixNano() + end - h.now()))
	h.in.Mark(h.clock.Now())
	h.barrier()
	got := map[string][]string{}
	for _, p := range h.sink.take() {
		got[p.callID] = append(got[p.callID], render(p.out))
	}
	return got
}

// render renders an engine output like the model does.
func render(o detector.Output) string {
	name := func(p detector.Payload) string {
		if p == nil {
			return ""
		}
		return string(p.(payload))
	}
	at := o.At - start.UnixNano()
	switch o.Kind {
	case detector.KindHang:
		s := fmt.Sprintf("hang %v %v user=%s first=%s at=%d deadline=%d wait=%d threshold=%v snapshot=%s latest=%s",
			o.Reason, o.Stage, o.UserMessageID, o.FirstUserMessageID, at, o.Deadline-start.UnixNano(), int64(o.Wait),
			o.Threshold, name(o.Snapshot), name(o.Latest))
		if o.Late || o.InputGap != 0 {
			s += fmt.Sprintf(" late=%v gap=%v", o.Late, o.InputGap)
		}
		return s
	case detector.KindResolved:
		return fmt.Sprintf("hang-resolved %v %v user=%s first=%s reply=%s at=%d wait=%d snapshot=%s latest=%s",
			o.Reason, o.Stage, o.UserMessageID, o.FirstUserMessageID, o.ReplyMessageID, at, int64(o.Wait), name(o.Snapshot), name(o.Latest))
	}
	return fmt.Sprintf("hang-unresolved %v %v user=%s first=%s at=%d wait=%d snapshot=%s latest=%s",
		o.Reason, o.Stage, o.UserMessageID, o.FirstUserMessageID, at, int64(o.Wait), name(o.Snapshot), name(o.Latest))
}

// checkInvariants checks what must hold whatever the model says, within each life of a
// call (lives are where it was forgotten): one hang per stretch, a resolved or an
// unresolved only after the hang of its stretch, nothing after an unresolved.
func checkInvariants(t *testing.T, id string, outs []string, lives []int) {
	t.Helper()
	hung, hanged, over := "", map[string]bool{}, false
	for i, s := range outs {
		if slices.Contains(lives, i) {
			hung, hanged, over = "", map[string]bool{}, false
		}
		first := s[strings.Index(s, "first=")+6:]
		first = first[:strings.IndexByte(first, ' ')]
		switch {
		case over:
			t.Errorf("%s: an output after the unresolved: %q", id, outs)
		case strings.HasPrefix(s, "hang "):
			if hung != "" || hanged[first] {
				t.Errorf("%s: a second hang of a stretch, or before the last was answered: %q", id, outs)
			}
			hung, hanged[first] = first, true
		case strings.HasPrefix(s, "hang-unresolved "):
			if hung != first {
				t.Errorf("%s: an unresolved without the hang of its stretch: %q", id, outs)
			}
			over = true
		default:
			if hung != first {
				t.Errorf("%s: a resolved without the hang of its stretch: %q", id, outs)
			}
			hung = ""
		}
		if strings.Contains(s, "wait=-") {
			t.Errorf("%s: a negative wait: %s", id, s)
		}
	}
}

// --- The traffic ---

const ms = int64(time.Millisecond)

// callGen generates the traffic of one call, as its pipeline publishes it.
type callGen struct {
	rng   *rand.Rand
	id    string
	team  string
	skew  int64 // the pipeline's clock against the engine's, ns
	now   int64 // ns after start
	hist  []gmsg
	n     int
	snaps []*gevent // its snapshots so far
	out   []delivery
}

func (g *callGen) ts(jitter bool) int64 {
	t := (start.UnixNano() + g.now + g.skew) / ms
	if jitter {
		t -= g.rng.Int64N(150) // the turn ended a little before its event
	}
	return t
}

func (g *callGen) publish(ev *gevent) {
	ev.call, ev.team = g.id, g.team
	ev.name = fmt.Sprintf("%s#%d", g.id, len(g.out))
	ev.ts = g.ts(false)
	if ev.typ == detector.TypeConversationUpdate {
		g.snaps = append(g.snaps, ev)
	}
	g.out = append(g.out, delivery{at: g.now, ev: ev, first: true})
}

func (g *callGen) add(role detector.Role, id, tool string) {
	g.n++
	m := gmsg{id: fmt.Sprintf("%s-%d", id, g.n), role: role, tool: tool}
	if g.rng.IntN(10) != 0 { // a tenth carry no timestamp
		m.ts = g.ts(true)
	}
	g.hist = append(g.hist, m)
	g.publish(&gevent{typ: detector.TypeConversationUpdate, status: detector.StatusOngoing, hist: slices.Clone(g.hist)})
	if g.rng.IntN(8) == 0 {
		g.now += ms
		g.publish(&gevent{typ: detector.TypeStatusUpdate, status: detector.StatusOngoing})
	}
	if g.rng.IntN(30) == 0 {
		g.now += ms
		g.publish(&gevent{typ: detector.TypeOutput, status: detector.StatusOngoing})
	}
}

func (g *callGen) pass(lo, hi time.Duration) {
	g.now += int64(lo) + g.rng.Int64N(int64(hi-lo))/ms*ms
}

// genCall generates a conversation whose assistant is sometimes slow, sometimes silent,
// sometimes waits for a tool, with a caller who sometimes says "hello?" again and again;
// it ends with a report, a status, or not at all.
func genCall(rng *rand.Rand, id string, begin int64) []delivery {
	g := &callGen{rng: rng, id: id, team: []string{"std", "std", "fast", "slow"}[rng.IntN(4)],
		skew: (rng.Int64N(4000) - 3000) * ms, now: begin}
	if rng.IntN(2) == 0 {
		g.add(detector.RoleReply, "welcome", "")
	}
rounds:
	for range rng.IntN(6) + 1 {
		g.pass(200*time.Millisecond, 3*time.Second)
		g.add(detector.RoleUser, "user", "")
		if rng.IntN(4) == 0 {
			g.pass(200*time.Millisecond, 1500*time.Millisecond)
			tool := fmt.Sprint("tool-", g.n)
			g.add(detector.RoleToolCall, "call", tool)
			g.pass(500*time.Millisecond, 12*time.Second)
			g.add(detector.RoleToolResult, "result", tool)
		}
		if rng.IntN(6) == 0 { // "Hello? Hello?": only the max wait catches it
			for range rng.IntN(3) + 2 {
				g.pass(3*time.Second, 4500*time.Millisecond)
				g.add(detector.RoleUser, "user", "")
			}
		}
		switch {
		case rng.IntN(10) == 0:
			break rounds // nobody answers
		case rng.IntN(3) == 0:
			g.pass(300*time.Millisecond, 2300*time.Millisecond)
		default:
			g.pass(300*time.Millisecond, 14*time.Second)
		}
		g.add(detector.RoleReply, "reply", "")
	}
	g.pass(100*time.Millisecond, 5*time.Second)
	switch rng.IntN(5) {
	case 0: // the pipeline goes away: only the TTL frees the call
	case 1:
		g.publish(&gevent{typ: detector.TypeStatusUpdate, status: detector.StatusForwarded})
	case 2:
		g.publish(&gevent{typ: detector.TypeStatusUpdate, status: detector.StatusFinished})
	default: // the report ends the call whatever its call.status says
		status := []detector.Status{detector.StatusFinished, detector.StatusOngoing, detector.StatusUnknown}[rng.IntN(3)]
		g.publish(&gevent{typ: detector.TypeEndOfCallReport, status: status, hist: slices.Clone(g.hist)})
	}
	return g.out
}

// perturb delivers the traffic of one call as an imperfect producer does, without
// changing what it says: some snapshots as a sliding window of their latest messages
// (never cutting the last reply, so that what is unanswered is whole), some again later,
// some stale ones after newer ones.
func perturb(rng *rand.Rand, ds []delivery) []delivery {
	var out, snaps []delivery
	for _, d := range ds {
		if d.ev.typ == detector.TypeConversationUpdate {
			snaps = append(snaps, d)
			if rng.IntN(4) == 0 {
				d.ev = window(rng, d.ev)
			}
		}
		out = append(out, d)
		if rng.IntN(5) == 0 { // again, up to 3 s later, maybe as a window
			c := delivery{at: d.at + 1 + rng.Int64N(3000)*ms, ev: d.ev}
			if c.ev.typ == detector.TypeConversationUpdate && rng.IntN(2) == 0 {
				c.ev = window(rng, c.ev)
			}
			out = append(out, c)
		}
		if len(snaps) > 1 && rng.IntN(6) == 0 { // a stale snapshot after a newer one
			old := snaps[rng.IntN(len(snaps)-1)]
			out = append(out, delivery{at: d.at + rng.Int64N(1000)*ms, ev: old.ev})
		}
	}
	return out
}

// window returns a copy of snapshot ev that holds only its latest messages, from at
// most its last reply on.
func window(rng *rand.Rand, ev *gevent) *gevent {
	lastReply := 0
	for i, m := range ev.hist {
		if m.role == detector.RoleReply {
			lastReply = i
		}
	}
	w := *ev
	w.from = rng.IntN(lastReply + 1)
	return &w
}

// genTraffic generates the traffic of calls calls over a minute, perturbed, with extra
// clock steps and cuts cut-offs of the input.
func genTraffic(rng *rand.Rand, calls, cuts int) (*traffic, int64) {
	tr := &traffic{}
	var end int64
	for i := range calls {
		ds := genCall(rng, fmt.Sprint("call-", i), rng.Int64N(60_000)*ms)
		tr.deliveries = append(tr.deliveries, perturb(rng, ds)...)
	}
	for _, d := range tr.deliveries {
		end = max(end, d.at)
	}
	slices.SortStableFunc(tr.deliveries, func(a, b delivery) int { return cmp.Compare(a.at, b.at) })
	for range len(tr.deliveries) / 4 {
		tr.steps = append(tr.steps, rng.Int64N(end/ms)*ms)
	}
	// Cut-offs shorter than the shortest timeout (3 s), apart from each other.
	for i := range cuts {
		from := end * int64(i) / int64(cuts)
		from += rng.Int64N(end/int64(cuts)/2/ms) * ms
		tr.cuts = append(tr.cuts, cutSpan{from, from + (100+rng.Int64N(2800))*ms})
	}
	return tr, end + int64(time.Hour)
}

// plain returns the traffic as it was sent: every event once, whole, in order. The
// times of the copies stay as clock steps, so that the clock stops where it stops in
// the perturbed traffic.
func (tr *traffic) plain(cuts bool) *traffic {
	p := &traffic{steps: slices.Clone(tr.steps)}
	if cuts {
		p.cuts = tr.cuts
	}
	for _, d := range tr.deliveries {
		if !d.first {
			p.steps = append(p.steps, d.at)
			continue
		}
		ev := *d.ev
		ev.from = 0
		d.ev = &ev
		p.deliveries = append(p.deliveries, d)
	}
	return p
}

// runModel runs the traffic through an engine and through the model, and compares.
func runModel(t *testing.T, tr *traffic, end int64) (outs map[string][]string) {
	t.Helper()
	cfg, teams := modelConfig()
	th := newTestThresholds()
	th.def = cfg
	for name, x := range teams {
		th.set("team."+name, x)
	}
	h := newHarness(t, WithConfig(cfg), WithThresholds(th), WithShards(3))
	h.cut() // the marks come from the traffic
	got := drive(h, tr, end)
	m := newModel()
	want := m.run(tr, end)
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[id], want[id]) {
			t.Errorf("%s: outputs differ\n got: %q\nwant: %q", id, got[id], want[id])
		}
		checkInvariants(t, id, want[id], m.lives[id])
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: the engine published %q, the model nothing", id, g)
		}
	}
	if st := h.e.Stats(); st.Calls != 0 || st.Retained != 0 {
		t.Errorf("an hour after the traffic: %d calls, %d bytes retained; want 0, 0", st.Calls, st.Retained)
	}
	return got
}

// count counts the outputs by kind, reason and stage, to show the traffic has teeth.
func count(outs map[string][]string) map[string]int {
	n := map[string]int{}
	for _, os := range outs {
		for _, s := range os {
			f := strings.Fields(s)
			n[f[0]]++
			if f[0] == "hang" {
				n[f[1]]++
				n[f[2]]++
			}
		}
	}
	return n
}

// untimed drops when a hang was detected and its wait, which a cut-off delays.
func untimed(outs map[string][]string) map[string][]string {
	u := map[string][]string{}
	for id, os := range outs {
		for _, s := range os {
			f := strings.Fields(s)
			f = slices.DeleteFunc(f, func(x string) bool {
				// Every output is stamped when it is made; a hang's wait runs to then.
				return strings.HasPrefix(x, "at=") || (strings.HasPrefix(s, "hang ") && strings.HasPrefix(x, "wait="))
			})
			s = strings.Join(f, " ")
			u[id] = append(u[id], s)
		}
	}
	return u
}

// TestEngineMatchesModel runs random traffic of many calls through the engine on a
// fake clock and through the model: as it was sent; perturbed (duplicates, stale
// snapshots, sliding windows), which must change nothing at all; and with the input cut
// off at random points for less than a timeout, which must change no verdict, only
// when the hangs whose deadlines passed meanwhile are seen.
func TestEngineMatchesModel(t *testing.T) {
	seeds, calls := 3, 200
	if testing.Short() {
		seeds, calls = 1, 60
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			tr, end := genTraffic(rand.New(rand.NewPCG(seed, 0x5eed)), calls, 12)
			plain := runModel(t, tr.plain(false), end)
			n := count(plain)
			if n["hang"] < calls/5 || n["hang-resolved"] < calls/10 || n["hang-unresolved"] == 0 ||
				n["max-wait"] == 0 || n["awaiting-tool"] == 0 || n["after-tool"] == 0 {
				t.Errorf("the traffic lost its teeth: %v", n)
			}
			var copies, windows int
			for _, d := range tr.deliveries {
				if !d.first {
					copies++
				}
				if d.ev.from > 0 {
					windows++
				}
			}
			t.Logf("%d deliveries (%d copies, %d windows), %d calls: %v", len(tr.deliveries), copies, windows, calls, n)
			if t.Failed() {
				return
			}
			perturbed := *tr
			perturbed.cuts = nil
			if got := runModel(t, &perturbed, end); !maps.EqualFunc(got, plain, slices.Equal) {
				t.Errorf("perturbed delivery changed the outputs:\n%s", diff(got, plain))
			}
			if got := runModel(t, tr.plain(true), end); !maps.EqualFunc(untimed(got), untimed(plain), slices.Equal) {
				t.Errorf("cut-offs changed the verdicts:\n%s", diff(untimed(got), untimed(plain)))
			}
		})
	}
}

// diff shows the outputs of the first few calls where got and want differ.
func diff(got, want map[string][]string) string {
	var b strings.Builder
	n := 0
	for _, id := range slices.Sorted(maps.Keys(maps.Collect(func(yield func(string, bool) bool) {
		for k := range got {
			yield(k, true)
		}
		for k := range want {
			yield(k, true)
		}
	}))) {
		if slices.Equal(got[id], want[id]) {
			continue
		}
		if n++; n > 5 {
			b.WriteString("...\n")
			break
		}
		fmt.Fprintf(&b, "%s:\n got: %q\nwant: %q\n", id, got[id], want[id])
	}
	return b.String()
}
