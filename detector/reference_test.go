package detector

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refModel is SPEC §2 and §3 read plainly, for a call delivered in order with whole
// histories: no windows, no order to restore, no identity to keep across rewrites. It
// shares nothing with Call but the format of fallback ids (idOf, pinned by
// TestFallbackID) and the harness's reading of a message (roleOf, keyOf).
type refModel struct {
	cfg      Config
	clock    int64            // the time of the latest event, ms
	seen     map[uint64]int64 // when each message was first received, ms
	answered map[uint64]bool  // user turns that a reply has followed
	open     *refStretch
	ended    bool
	out      []verdict
}

type refStretch struct {
	first, last msg   // its first and latest user turn
	stage       Stage // now; once hung, the hang's
	hung        bool
	reason      Reason
}

// anchor is SPEC §2's anchor of a message, in ms: its own time clamped into
// [received-max-lag, received], received being when it was first received.
func (m *refModel) anchor(x msg) int64 {
	return m.clamp(x.ts, m.seen[keyOf(x, roleOf(x))])
}

func (m *refModel) clamp(ts, received int64) int64 {
	if ts == noTS {
		return received
	}
	return min(max(ts, received-m.cfg.MaxLag.Milliseconds()), received)
}

// deadline is when the open stretch hangs, and why.
func (m *refModel) deadline() (int64, Reason) {
	o := m.open
	turn := m.cfg.Timeout
	if o.stage == StageAwaitingTool && m.cfg.ToolTimeout > 0 {
		turn = m.cfg.ToolTimeout
	}
	at, reason := m.anchor(o.last)+turn.Milliseconds(), ReasonTurnTimeout
	if mw := m.anchor(o.first) + m.cfg.MaxWait.Milliseconds(); m.cfg.MaxWait > 0 && mw < at {
		at, reason = mw, ReasonMaxWait
	}
	return at, reason
}

// advance lets time run to t: the open stretch hangs if its deadline comes first. A
// deadline already past hangs at once, that is at the latest event.
func (m *refModel) advance(t int64) {
	if o := m.open; o != nil && !o.hung && !m.ended {
		if at, reason := m.deadline(); at <= t {
			now, from := max(at, m.clock), o.last
			if reason == ReasonMaxWait {
				from = o.first
			}
			o.hung, o.reason = true, reason
			m.out = append(m.out, verdict{kind: KindHang, reason: reason, stage: o.stage,
				user: idOf(o.last), first: idOf(o.first), wait: now - m.anchor(from)})
		}
	}
	m.clock = max(m.clock, t)
}

// wait is the time from the stretch's first turn to a moment known by its own time ts
// and when it was received: own times when both have one, else anchors; never below 0.
func (m *refModel) wait(ts, received int64) int64 {
	f := m.open.first
	if f.ts != noTS && ts != noTS {
		return max(ts-f.ts, 0)
	}
	return max(m.clamp(ts, received)-m.anchor(f), 0)
}

// stageAfter is the stage of a stretch whose first user turn is h[first].
func stageAfter(h []msg, first int) Stage {
	pending, called := map[string]bool{}, false
	for _, x := range h[first+1:] {
		switch roleOf(x) {
		case RoleToolCall:
			called = true
			for _, id := range x.tools {
				pending[id] = true
			}
		case RoleToolResult:
			for _, id := range x.tools {
				delete(pending, id)
			}
		}
	}
	switch {
	case len(pending) > 0:
		return StageAwaitingTool
	case called:
		return StageAfterTool
	}
	return StageAwaitingAssistant
}

func (m *refModel) snapshot(at int64, h []msg) {
	m.advance(at)
	if m.ended {
		return
	}
	for _, x := range h {
		if k := keyOf(x, roleOf(x)); roleOf(x) != 0 {
			if _, ok := m.seen[k]; !ok {
				m.seen[k] = at
			}
		}
	}
	index := func(x msg) int {
		return slices.IndexFunc(h, func(y msg) bool { return y.id == x.id && y.text == x.text && y.ts == x.ts && y.role == x.role })
	}
	// Every user turn before a reply is answered; the open stretch ends at the first reply
	// after its first turn.
	lastReply := -1
	for i, x := range h {
		if roleOf(x) == RoleReply {
			lastReply = i
			for _, y := range h[:i] {
				if roleOf(y) == RoleUser {
					m.answered[keyOf(y, RoleUser)] = true
				}
			}
		}
	}
	if o := m.open; o != nil {
		f := index(o.first)
		if r := slices.IndexFunc(h[f+1:], func(x msg) bool { return roleOf(x) == RoleReply }); r >= 0 {
			r += f + 1
			if o.hung {
				u := o.first
				for _, x := range h[f+1 : r] {
					if roleOf(x) == RoleUser {
						u = x
					}
				}
				m.out = append(m.out, verdict{kind: KindResolved, reason: o.reason, stage: o.stage,
					user: idOf(u), first: idOf(o.first), reply: idOf(h[r]), wait: m.wait(h[r].ts, at)})
			}
			m.open = nil
		}
	}
	// The unanswered stretch: the user turns after the last reply.
	var run []int
	for i := lastReply + 1; i < len(h); i++ {
		if roleOf(h[i]) == RoleUser && !m.answered[keyOf(h[i], RoleUser)] {
			run = append(run, i)
		}
	}
	if len(run) == 0 {
		return
	}
	if m.open == nil {
		m.open = &refStretch{first: h[run[0]]}
	}
	if o := m.open; !o.hung {
		o.last, o.stage = h[run[len(run)-1]], stageAfter(h, run[0])
	} else {
		o.last = h[run[len(run)-1]]
	}
}

func (m *refModel) end(at, ts int64, e *gend, h []msg) {
	m.advance(at)
	if m.ended {
		return
	}
	m.ended = true
	o := m.open
	if o == nil || !o.hung {
		return
	}
	last := o.last
	if f := slices.IndexFunc(h, func(x msg) bool { return x.id == o.first.id && x.ts == o.first.ts && x.text == o.first.text }); f >= 0 {
		for _, x := range h[f+1:] {
			switch roleOf(x) {
			case RoleReply:
				return // the end's own history shows it answered
			case RoleUser:
				last = x
			}
		}
	}
	m.out = append(m.out, verdict{kind: KindUnresolved, reason: o.reason, stage: o.stage,
		user: idOf(last), first: idOf(o.first), ended: e.reason, wait: m.wait(ts, at)})
}

// reference returns the verdicts of refModel on the in-order delivery of c.
func reference(c *gcall) []verdict {
	m := &refModel{cfg: c.cfg, seen: map[uint64]int64{}, answered: map[uint64]bool{}, clock: -1 << 62}
	for _, e := range c.inOrder() {
		if e.i == len(c.snaps) {
			ts := e.at // the end's own timestamp
			if !c.timed {
				ts = noTS
			}
			m.end(e.at, ts, c.end, e.msgs)
		} else {
			m.snapshot(e.at, e.msgs)
		}
	}
	m.advance(1 << 62)
	return m.out
}

// TestCallReference checks Call against refModel on random calls delivered in order.
// Here events may reach the engine up to 3 s after their messages' own times, past the
// max lag, so that anchors are clamped.
func TestCallReference(t *testing.T) {
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 12))
		c := genCall(rng, 3000)
		want := reference(&c)
		if got := c.verdicts(c.inOrder(), false); !slices.Equal(got, want) {
			t.Fatalf("seed %d: Call and the reference differ\n got: %v\nwant: %v\ncall:\n%v", seed, got, want, &c)
		}
	}
}

// TestReferenceModel pins the reference on the calls of the tables, so that a test that
// agrees with it cannot agree with a wrong model.
func TestReferenceModel(t *testing.T) {
	u1 := hello("user-1", 1000)
	tests := []struct {
		name string
		give gcall
		want []verdict
	}{
		{
			name: "turn timeout, resolved",
			give: gcall{cfg: DefaultConfig(), snaps: []gsnap{{1000, []msg{u1}}, {7000, []msg{u1, reply("r1", 6900)}}}},
			want: []verdict{
				{kind: KindHang, reason: ReasonTurnTimeout, user: "user-1", first: "user-1", wait: 5000},
				{kind: KindResolved, reason: ReasonTurnTimeout, user: "user-1", first: "user-1", reply: "r1", wait: 5900},
			},
		},
		{
			name: "a tool result moves the deadline into the past, then the call ends",
			give: gcall{
				cfg: conf(5*time.Second, 30*time.Second, 20*time.Second),
				snaps: []gsnap{
					{1000, []msg{u1}},
					{1500, []msg{u1, toolCalls("tc", 1500, "c")}},
					{8000, []msg{u1, toolCalls("tc", 1500, "c"), toolResult("tr", 8000, "c")}},
				},
				end: &gend{at: 9000, reason: "customer-ended-call"},
			},
			want: []verdict{
				{kind: KindHang, reason: ReasonTurnTimeout, stage: StageAfterTool, user: "user-1", first: "user-1", wait: 7000},
				{kind: KindUnresolved, reason: ReasonTurnTimeout, stage: StageAfterTool, user: "user-1", first: "user-1", ended: "customer-ended-call", wait: 8000},
			},
		},
		{
			name: "max wait, the end's history shows a later turn",
			give: gcall{
				cfg: DefaultConfig(),
				snaps: []gsnap{
					{1000, []msg{u1}},
					{5000, []msg{u1, hello("user-2", 5000)}},
					{9000, []msg{u1, hello("user-2", 5000), hello("user-3", 9000)}},
					{11_500, []msg{u1, hello("user-2", 5000), hello("user-3", 9000), hello("user-4", 11_500)}},
				},
				end: &gend{at: 12_000, report: true},
			},
			want: []verdict{
				{kind: KindHang, reason: ReasonMaxWait, user: "user-3", first: "user-1", wait: 10_000},
				{kind: KindUnresolved, reason: ReasonMaxWait, user: "user-4", first: "user-1", wait: 11_000},
			},
		},
		{
			name: "a filled message answers the turns before it; the turn after starts a stretch",
			give: gcall{
				cfg: DefaultConfig(),
				snaps: []gsnap{
					{1000, []msg{u1}},
					{2000, []msg{u1, silent("a", 2000)}},
					{7000, []msg{u1, silent("a", 2000), hello("user-2", 7000)}},
					{8000, []msg{u1, a("a", "Sure.", 6900), hello("user-2", 7000)}},
				},
			},
			want: []verdict{
				{kind: KindHang, reason: ReasonTurnTimeout, user: "user-1", first: "user-1", wait: 5000},
				{kind: KindResolved, reason: ReasonTurnTimeout, user: "user-1", first: "user-1", reply: "a", wait: 5900},
				{kind: KindHang, reason: ReasonTurnTimeout, user: "user-2", first: "user-2", wait: 5000},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reference(&tt.give); !slices.Equal(got, tt.want) {
				t.Errorf("reference\n got: %v\nwant: %v", got, tt.want)
			}
		})
	}
}
