package detector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// A generated call: the whole history at each moment it changed, published (and, in
// order, received) at that moment, and how it ends.
type gcall struct {
	cfg   Config
	snaps []gsnap
	end   *gend // nil: the call never ends
	ids   bool  // its messages carry a messageId
	timed bool  // its events carry a timestamp

	decoded map[int]*Event // the snapshots' events, decoded once
}

type gsnap struct {
	at   int64 // published and received, ms after the start
	msgs []msg // the whole history then
}

type gend struct {
	at     int64
	report bool // an end-of-call-report with the whole history, else a status-update ended
	reason string
}

// gen builds a call event by event.
type gen struct {
	rng      *rand.Rand
	c        gcall
	h        []msg
	t        int64 // own time of the latest message
	pub      int64 // the latest publish time
	maxDelay int64 // the longest delay from a message to the snapshot that carries it
	n        int   // messages made, for ids
	vapi     bool  // tool shapes: tool_calls/tool_call_result, else assistant toolCalls/tool
	timeless bool  // messages without their own timestamp
}

func (g *gen) between(lo, hi int64) int64 { return lo + g.rng.Int64N(hi-lo+1) }

func (g *gen) id(prefix string) string {
	g.n++
	if !g.c.ids {
		return ""
	}
	return fmt.Sprintf("%s-%d", prefix, g.n)
}

func (g *gen) ts() int64 {
	if g.timeless {
		return noTS
	}
	return g.t
}

// emit publishes the history as it stands: a little after its latest change, or (when
// that change came before the latest publication) sometimes at the same instant.
func (g *gen) emit() {
	p := max(g.t+g.between(0, g.maxDelay), g.pub)
	if g.t <= g.pub && g.rng.IntN(3) == 0 {
		p = g.pub
	}
	g.pub = p
	g.c.snaps = append(g.c.snaps, gsnap{at: p, msgs: slices.Clone(g.h)})
}

func (g *gen) add(m msg) { g.h = append(g.h, m); g.emit() }

func (g *gen) after(lo, hi int64) *gen { g.t += g.between(lo, hi); return g }

func (g *gen) user() {
	g.after(300, 4000)
	texts := []string{"Hello?", "Are you there?", "I need to move my appointment.", "Thursday, please."}
	g.add(u(g.id("user"), texts[g.rng.IntN(len(texts))]+fmt.Sprint(" ", g.n), g.ts()))
}

func (g *gen) reply() { g.add(a(g.id("reply"), fmt.Sprint("Sure, ", g.n), g.ts())) }

// tool makes a tool call, and returns the function that adds its result.
func (g *gen) tool() func() {
	call := g.id("call")
	tc := fmt.Sprint("tool-", g.n)
	if g.vapi {
		g.add(toolCalls(call, g.ts(), tc))
		return func() { g.add(toolResult(g.id("result"), g.ts(), tc)) }
	}
	g.add(asstCalls(call, g.ts(), tc))
	return func() { g.add(toolMsg(g.id("result"), g.ts(), tc)) }
}

// placeholder adds an empty assistant message, and returns the function that fills it in
// place (under the same messageId, when there are ids).
func (g *gen) placeholder() func() {
	i, id := len(g.h), g.id("reply")
	g.add(silent(id, g.ts()))
	return func() {
		g.h[i] = a(id, fmt.Sprint("Sorry, ", g.n), g.ts())
		g.n++
		g.emit()
	}
}

// genCall makes a random call: user turns answered quickly or late, tool calls whose
// results come quickly or late, empty assistant messages filled later, callers who say
// "hello?" again and again, and an end, or none.
func genCall(rng *rand.Rand, maxDelay int64) gcall {
	cfgs := []Config{
		DefaultConfig(),
		conf(5*time.Second, 0, 0),
		conf(4*time.Second, 9*time.Second, 12*time.Second),
		conf(3*time.Second, 10*time.Second, 2*time.Second),
	}
	g := &gen{rng: rng, maxDelay: maxDelay, vapi: rng.IntN(2) == 0}
	g.c = gcall{cfg: cfgs[rng.IntN(len(cfgs))], ids: rng.IntN(2) == 0, timed: rng.IntN(4) != 0}
	// Messages without their own timestamps only with messageIds: without either, two
	// tool calls (which have no text) are one message by the identity of SPEC §2.
	g.timeless = g.c.ids && rng.IntN(4) == 0
	if rng.IntN(4) != 0 {
		g.after(0, 500).add(greeting(g.id("welcome"), g.ts()))
	}
	for range 2 + rng.IntN(6) {
		g.user()
		switch rng.IntN(7) {
		case 0: // a quick reply
			g.after(300, 3000).reply()
		case 1: // a slow one
			g.after(3000, 9000).reply()
		case 2: // a tool, then a reply
			result := g.after(100, 700).tool()
			g.after(500, 12_000)
			result()
			g.after(200, 3000).reply()
		case 3: // an empty message, filled later; the caller may speak again before
			fill := g.after(100, 500).placeholder()
			if rng.IntN(2) == 0 {
				g.user()
			}
			g.after(500, 8000)
			fill()
		case 4: // the caller says hello again and again, answered or not
			for range 1 + rng.IntN(4) {
				g.user()
			}
			if rng.IntN(3) != 0 {
				g.after(300, 4000).reply()
			}
		case 5: // a tool, the caller speaks while it runs, its result, a reply
			result := g.after(100, 700).tool()
			g.user()
			g.after(200, 6000)
			result()
			g.after(200, 3000).reply()
		case 6: // silence: the next turn continues the stretch
		}
		if rng.IntN(10) == 0 {
			g.after(0, 300).add(other(g.id("note"), "system", g.ts()))
		}
	}
	if rng.IntN(4) != 0 {
		g.after(500, 15_000)
		reasons := []string{"customer-ended-call", "silence-timed-out", ""}
		g.c.end = &gend{at: g.t + g.between(0, maxDelay), report: rng.IntN(2) == 0, reason: reasons[rng.IntN(len(reasons))]}
	}
	return g.c
}

// delivery is one event of a delivery of a generated call: snapshot i (len(snaps): the
// end) received at `at`, with the history msgs.
type delivery struct {
	at   int64
	i    int
	msgs []msg
}

// inOrder returns the delivery of every snapshot at its publish time, then the end.
func (c *gcall) inOrder() []delivery {
	var d []delivery
	for i, s := range c.snaps {
		d = append(d, delivery{at: s.at, i: i, msgs: s.msgs})
	}
	if c.end != nil {
		var h []msg
		if c.end.report && len(c.snaps) > 0 {
			h = c.snaps[len(c.snaps)-1].msgs
		}
		d = append(d, delivery{at: c.end.at, i: len(c.snaps), msgs: h})
	}
	return d
}

// ops turns a delivery into the harness's ops, ending with a tick after every deadline.
func (c *gcall) ops(d []delivery) []op {
	var ops []op
	last := int64(0)
	for _, e := range d {
		var o op
		if end := c.end; e.i == len(c.snaps) {
			if end.report {
				o = endReport(end.at, e.msgs...)
			} else {
				o = status(end.at, StatusEnded)
			}
			o = o.ended(end.reason)
		} else {
			o = op{ev: c.event(e)}
		}
		o.at, o.due = e.at, e.at
		o.name = "@" + strconv.FormatInt(o.ev.Time-t0, 10)
		if !c.timed {
			o.ev.Time = 0
		}
		ops = append(ops, o)
		last = max(last, e.at)
	}
	return append(ops, tick(last+time.Hour.Milliseconds()))
}

// event returns the conversation-update of a delivered snapshot, sent at its publish
// time: a copy of the one decoded before when it carries the whole snapshot.
func (c *gcall) event(e delivery) *Event {
	orig := c.snaps[e.i].msgs
	whole := len(e.msgs) == len(orig) && (len(orig) == 0 || &e.msgs[0] == &orig[0])
	if !whole {
		return conv(e.at, e.msgs...).sent(c.snaps[e.i].at).ev
	}
	if c.decoded == nil {
		c.decoded = map[int]*Event{}
	}
	ev, ok := c.decoded[e.i]
	if !ok {
		ev = conv(e.at, e.msgs...).sent(c.snaps[e.i].at).ev
		c.decoded[e.i] = ev
	}
	dup := *ev
	return &dup
}

// verdicts runs a delivery and returns what its outputs claim; payloads too when
// withPayloads.
func (c *gcall) verdicts(d []delivery, withPayloads bool) []verdict {
	outs, _, _ := run(c.cfg, c.ops(d))
	v := make([]verdict, len(outs))
	for i, o := range outs {
		v[i] = o.verdict()
		if !withPayloads {
			v[i].snapshot, v[i].latest = "", ""
		}
	}
	return v
}

func (c *gcall) String() string {
	var b []byte
	b = fmt.Appendf(b, "config %+v ids=%v timed=%v\n", c.cfg.Thresholds, c.ids, c.timed)
	for _, s := range c.snaps {
		b = fmt.Appendf(b, "  %6d:", s.at)
		for _, m := range s.msgs {
			ts := "-"
			if m.ts != noTS {
				ts = fmt.Sprint(m.ts)
			}
			b = fmt.Appendf(b, " %s/%s@%s%q%v", m.role, m.id, ts, m.text, m.tools)
		}
		b = append(b, '\n')
	}
	if c.end != nil {
		b = fmt.Appendf(b, "  end %+v\n", *c.end)
	}
	return string(b)
}
