package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// FuzzEngine reads its input as the traffic of three calls: each op is a byte that picks
// a call and what happens to it, the next byte its argument. Besides what a pipeline
// sends (turns, replies, tools, statuses, ends, own outputs, time passing) the ops
// deliver copies of earlier snapshots (late duplicates, stale ones, sliding windows)
// and cut the input off and bring it back. The engine, on a fake clock, must never
// panic, must agree with the reference model of model_test.go (which ignores the
// copies), and its outputs must keep the invariants of SPEC §2.
func FuzzEngine(f *testing.F) {
	f.Add([]byte{0, 0, 18, 200, 3, 0})                                         // a stall that hangs, then its reply
	f.Add([]byte{0, 0, 18, 90, 0, 0, 18, 90, 0, 0, 18, 90, 0, 0, 18, 250})     // hello? hello? hello?: max wait
	f.Add([]byte{0, 0, 6, 0, 18, 60, 9, 0, 18, 250, 3, 0})                     // a tool call, its result late, the reply
	f.Add([]byte{0, 0, 1, 0, 2, 0, 21, 5, 18, 200, 21, 0, 3, 0, 15, 0})        // interleaved calls, stale and duplicate copies
	f.Add([]byte{0, 0, 27, 0, 18, 200, 3, 0, 27, 0, 18, 40})                   // a cut across the deadline, the reply waiting in it
	f.Add([]byte{0, 0, 18, 200, 15, 1, 18, 20, 0, 0, 3, 0})                    // the call ends while hung; events after its end
	f.Add([]byte{0, 1, 3, 1, 0, 1, 18, 200, 30, 0x81, 33, 0x82, 21, 0x81})     // windowed snapshots and copies
	f.Add([]byte{12, 0, 0, 0, 18, 250, 18, 250, 18, 250, 18, 250, 18, 250, 0}) // a status, then a stall left for the TTL
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 300 {
			return // long inputs add time, not coverage
		}
		tr, end := fuzzTraffic(data)
		runModel(t, tr, end)
	})
}

// fuzzCall is a call of the fuzzed traffic as its pipeline sees it.
type fuzzCall struct {
	callGen
	pending []string // tool calls without a result
	snaps   []delivery
}

// fuzzSpan bounds the time the fuzzed traffic spans, below the model's call TTL (2 min).
const fuzzSpan = 100 * int64(time.Second)

// fuzzTraffic turns the fuzzer's bytes into traffic, and returns when to stop.
func fuzzTraffic(data []byte) (*traffic, int64) {
	tr := &traffic{}
	now := int64(0)
	calls := make([]*fuzzCall, 3)
	for i := range calls {
		calls[i] = &fuzzCall{callGen: callGen{id: string(rune('a' + i)), team: []string{"std", "fast", "slow"}[i],
			skew: []int64{-2000, 0, 500}[i] * ms}}
	}
	var cut *cutSpan
	arg := func(i int) byte {
		if i+1 < len(data) {
			return data[i+1]
		}
		return 0
	}
	send := func(c *fuzzCall, ev *gevent, a byte) {
		now += ms // events of one call never share a millisecond
		c.now = now
		c.publish(ev)
		d := c.out[len(c.out)-1]
		if ev.typ == detector.TypeConversationUpdate {
			c.snaps = append(c.snaps, d)
			if a&0x80 != 0 {
				d.ev = window2(ev, a)
			}
		}
		tr.deliveries = append(tr.deliveries, d)
	}
	add := func(c *fuzzCall, role detector.Role, name, tool string, a byte) {
		c.n++
		m := gmsg{id: fmt.Sprintf("%s-%d", name, c.n), role: role, tool: tool}
		if a%5 != 0 { // a fifth carry no timestamp
			m.ts = (start.UnixNano() + now + ms + c.skew) / ms
		}
		c.hist = append(c.hist, m)
		send(c, &gevent{typ: detector.TypeConversationUpdate, status: detector.StatusOngoing, hist: slices.Clone(c.hist)}, a)
	}
	for i := 0; i < len(data); i += 2 {
		c, a := calls[int(data[i])%len(calls)], arg(i)
		switch (data[i] / 3) % 12 {
		case 0, 10:
			add(c, detector.RoleUser, "user", "", a)
		case 1, 11:
			add(c, detector.RoleReply, "reply", "", a)
		case 2:
			tool := fmt.Sprint("tool-", c.n+1)
			c.pending = append(c.pending, tool)
			add(c, detector.RoleToolCall, "call", tool, a)
		case 3:
			tool := "tool-unknown"
			if len(c.pending) > 0 {
				tool, c.pending = c.pending[0], c.pending[1:]
			}
			add(c, detector.RoleToolResult, "result", tool, a)
		case 4:
			send(c, &gevent{typ: detector.TypeStatusUpdate, status: []detector.Status{detector.StatusOngoing, detector.StatusQueued}[a%2]}, 0)
		case 5:
			switch a % 4 {
			case 0: // the report ends the call whatever its call.status says
				send(c, &gevent{typ: detector.TypeEndOfCallReport, status: detector.StatusOngoing, hist: slices.Clone(c.hist)}, 0)
			case 1:
				send(c, &gevent{typ: detector.TypeStatusUpdate, status: detector.StatusFinished}, 0)
			case 2:
				send(c, &gevent{typ: detector.TypeStatusUpdate, status: detector.StatusForwarded}, 0)
			case 3: // a hang event whose call status ends the call
				send(c, &gevent{typ: detector.TypeOutput, status: detector.StatusFinished}, 0)
			}
		case 6:
			// Time passes, but the traffic stays within a call TTL: a call forgotten, or an
			// ended one remembered no more, while its traffic goes on (late copies, a
			// backlog older than the TTL) is a new life of it that the reference model
			// does not follow event for event; TestEngineTombs, TestEngineMatchesModel's
			// generated traffic and the expiry at the end of every run cover the TTL.
			now += min(int64(a)*40*ms, max(fuzzSpan-now, 0))
			tr.steps = append(tr.steps, now)
		case 7: // a copy of an earlier snapshot, at most 30 s old: a duplicate or a stale one
			if len(c.snaps) == 0 {
				break
			}
			d := c.snaps[int(a&0x7f)%len(c.snaps)]
			if now-d.at > int64(30*time.Second) {
				break
			}
			now += ms
			ev := d.ev
			if a&0x80 != 0 {
				ev = window2(ev, a)
			}
			tr.deliveries = append(tr.deliveries, delivery{at: now, ev: ev})
		case 8:
			send(c, &gevent{typ: detector.TypeOutput, status: detector.StatusOngoing}, 0)
		case 9:
			now += ms
			if cut == nil {
				cut = &cutSpan{from: now}
			} else {
				cut.to = now
				tr.cuts = append(tr.cuts, *cut)
				cut = nil
			}
		}
	}
	if cut != nil {
		now += ms
		cut.to = now
		tr.cuts = append(tr.cuts, *cut)
	}
	return tr, now + int64(time.Hour)
}

// window2 returns a copy of snapshot ev that holds only its latest messages, from at
// most its last reply on, chosen by a.
func window2(ev *gevent, a byte) *gevent {
	lastReply := 0
	for i, m := range ev.hist {
		if m.role == detector.RoleReply {
			lastReply = i
		}
	}
	w := *ev
	w.from = int(a&0x7f) % (lastReply + 1)
	return &w
}
