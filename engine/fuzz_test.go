package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// FuzzEngine reads its input as the traffic of three calls: each op is a byte that
// picks a call and what happens to it, and the next byte its argument. The engine, on a
// fake clock, must never panic, must agree with the reference model of model_test.go,
// and its outputs must keep the invariants of SPEC §2.
func FuzzEngine(f *testing.F) {
	f.Add([]byte{0, 0, 18, 200, 18, 200, 3, 0})                         // a stall that hangs, then its reply
	f.Add([]byte{0, 0, 18, 60, 0, 0, 18, 60, 0, 0, 18, 60, 18, 250})    // hello? hello? hello?: max wait
	f.Add([]byte{0, 0, 6, 0, 18, 200, 21, 1, 12, 0})                    // empty reply, then the end
	f.Add([]byte{0, 0, 1, 0, 2, 0, 15, 0, 15, 3, 9, 1, 18, 255})        // interleaved calls, stale copies
	f.Add([]byte{0, 128, 0, 255, 0, 1, 18, 10, 3, 0, 24, 7, 18, 255})   // skewed clocks
	f.Add([]byte{21, 2, 0, 0, 18, 255, 3, 0, 18, 255, 18, 255, 18, 99}) // events after a forward
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 400 {
			return // long inputs add time, not coverage
		}
		fuzzEngine(t, data)
	})
}

// fuzzCall is the state of one call of the fuzzed traffic.
type fuzzCall struct {
	id    string
	hist  []wireMsg
	sent  [][]wireMsg // the snapshots published so far, to send again
	turns int
}

func fuzzEngine(t *testing.T, data []byte) {
	cfg := detector.Config{Timeout: 5 * time.Second, MaxWait: 10 * time.Second, MaxLag: time.Second, CallTTL: time.Minute}
	h := newHarness(t, WithConfig(cfg), WithShards(2))
	m := newModel(cfg)
	calls := []*fuzzCall{{id: "a"}, {id: "b"}, {id: "c"}}
	arg := func(i int) byte {
		if i+1 < len(data) {
			return data[i+1]
		}
		return 0
	}
	send := func(c *fuzzCall, ev wireEvent) {
		ev.callID, ev.name = c.id, fmt.Sprintf("e%d", h.seq)
		now := h.now()
		m.advance(now)
		m.apply(ev, now)
		h.send(toEvent(ev))
	}
	snapshot := func(c *fuzzCall, role, text string, a byte) {
		c.turns++
		msg := wireMsg{id: fmt.Sprintf("%s-%d", role, c.turns), role: role, text: text}
		if a%5 != 0 { // a fifth of the messages carry no timestamp
			msg.hasTS = true
			msg.ts = h.now()/int64(time.Millisecond) + (int64(a)-128)*20
		}
		c.hist = append(c.hist, msg)
		c.sent = append(c.sent, slices.Clone(c.hist))
		send(c, wireEvent{typ: detector.TypeConversationUpdate, status: detector.StatusOngoing, msgs: c.hist})
	}
	for i := 0; i < len(data); i += 2 {
		c, a := calls[int(data[i])%len(calls)], arg(i)
		switch (data[i] / 3) % 9 {
		case 0:
			snapshot(c, "user", "Hello?", a)
		case 1:
			snapshot(c, "assistant", "Sure.", a)
		case 2:
			snapshot(c, "assistant", " ", a) // an empty reply
		case 3:
			snapshot(c, []string{"tool", "system", "bot", "USER"}[a%4], []string{"x", "", "ok", " \n"}[a/4%4], a)
		case 4: // a stale or duplicate snapshot, arriving late
			if len(c.sent) > 0 {
				send(c, wireEvent{typ: detector.TypeConversationUpdate, msgs: c.sent[int(a)%len(c.sent)]})
			}
		case 5:
			status := []detector.Status{detector.StatusOngoing, detector.StatusQueued, detector.StatusFinished, detector.StatusForwarded}[a%4]
			send(c, wireEvent{typ: detector.TypeStatusUpdate, status: status})
		case 6:
			d := time.Duration(a) * 50 * time.Millisecond
			h.clock.Advance(d)
			m.advance(h.now())
			h.sync()
		case 7: // the report ends the call whatever its call.status says
			status := []detector.Status{detector.StatusFinished, detector.StatusOngoing, detector.StatusUnknown}[a%3]
			send(c, wireEvent{typ: detector.TypeEndOfCallReport, status: status, msgs: c.hist})
		case 8:
			send(c, wireEvent{typ: []detector.Type{detector.TypeOutput, detector.TypeOther}[a%2]})
		}
	}
	h.advance(time.Hour)
	m.advance(h.now())

	got := map[string][]string{}
	for _, p := range h.sink.take() {
		got[p.callID] = append(got[p.callID], render(p.out))
	}
	for _, c := range calls {
		if !slices.Equal(got[c.id], m.outs[c.id]) {
			t.Errorf("call %s: outputs differ\n got: %q\nwant: %q", c.id, got[c.id], m.outs[c.id])
		}
		checkInvariants(t, c.id, got[c.id], m.cuts[c.id])
		for _, s := range got[c.id] {
			if strings.Contains(s, "wait=-") {
				t.Errorf("call %s: a negative wait: %s", c.id, s)
			}
		}
	}
	if st := h.e.Stats(); st.Calls != 0 {
		t.Errorf("an hour after the last event %d calls are held", st.Calls)
	}
}
