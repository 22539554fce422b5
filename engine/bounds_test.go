package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hangwatch/hangwatch/detector"
)

// This file checks SPEC §2, Bounds: live calls, calls per team, ended calls, retained
// bytes.

// TestEngineEndedCallsDoNotCount: calls that ended free their slot at once; only live
// calls count toward max-calls.
func TestEngineEndedCallsDoNotCount(t *testing.T) {
	tests := []struct {
		name    string
		give    int  // calls before the new one
		end     bool // they end
		want    int64
		refused int64
	}{
		{name: "100 ended calls, max-calls 40", give: 100, end: true, want: 1},
		{name: "40 live calls, max-calls 40", give: 40, want: 40, refused: 1},
		{name: "39 live calls, max-calls 40", give: 39, want: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, WithMaxCalls(40))
			for i := range tt.give {
				id := fmt.Sprint("c", i)
				h.in.Deliver(h.msg(conv(id, 1, user("user-1", 0), reply("r-1", 0))))
				if tt.end {
					h.in.Deliver(h.msg(endEvent(id)))
				}
			}
			h.sync() // the shards count the calls side by side: the new one comes after all
			h.send(conv("new", 1, user("user-1", 0)))
			st := h.e.Stats()
			if st.Calls != tt.want || st.RefusedMaxCalls != tt.refused {
				t.Errorf("calls/refused = %d/%d, want %d/%d", st.Calls, st.RefusedMaxCalls, tt.want, tt.refused)
			}
			if tt.end && (st.Ended != int64(tt.give) || st.Tombs != int64(tt.give)) {
				t.Errorf("ended/tombs = %d/%d, want %d/%d", st.Ended, st.Tombs, tt.give, tt.give)
			}
			h.advance(5 * time.Second)
			if n := h.e.Stats().Hangs(); (n == 1) != (tt.refused == 0) {
				t.Errorf("%d hangs: the new call was watched = %v, want %v; %q", n, n == 1, tt.refused == 0, briefs(h.sink.take()))
			}
		})
	}
}

// TestEngineEndsOfUnknownCalls: end-of-call reports for calls never seen cost a place in
// the FIFO of ended calls and nothing else: they never refuse a new call, and they stay
// within max-ended. (The figure is 1M reports; 100k here keep the test fast,
// and nothing in the path depends on the count but the FIFO, which max-ended bounds.)
func TestEngineEndsOfUnknownCalls(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const maxEnded = 1000
	h := newHarness(t, WithMaxCalls(10), WithMaxEnded(maxEnded))
	for i := range n {
		h.in.Deliver(&testMsg{data: fmt.Appendf(nil, "end:never-%d", i), received: h.clock.Now(), partition: -1, src: h.src})
	}
	h.send(conv("new", 1, user("user-1", 0)))
	st := h.e.Stats()
	if st.Calls != 1 || st.RefusedMaxCalls != 0 || st.Ended != 0 {
		t.Errorf("calls/refused/ended = %d/%d/%d, want 1/0/0", st.Calls, st.RefusedMaxCalls, st.Ended)
	}
	if st.Tombs > maxEnded || st.Tombs < maxEnded/2 {
		t.Errorf("%d ended calls remembered, want at most max-ended %d (and most of it)", st.Tombs, maxEnded)
	}
	if st.Ignored != int64(n) || st.Types[detector.TypeEndOfCallReport] != int64(n) {
		t.Errorf("ignored %d, end reports %d; want %d", st.Ignored, st.Types[detector.TypeEndOfCallReport], n)
	}
}

// TestEngineTombs: events for a remembered ended call are ignored (a late duplicate
// never resurrects it) until max-ended more calls have ended, or the call TTL has
// passed: then the call is forgotten, and its id starts a new call.
func TestEngineTombs(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.CallTTL = time.Minute
	late := func(h *harness) { h.send(conv("x", 2, user("user-1", 0), reply("r-1", 0), user("user-2", 1))) }
	tests := []struct {
		name string
		give func(h *harness)
		want int64 // calls after the late duplicate
	}{
		{name: "a late duplicate", give: late},
		{name: "a late duplicate after 59 s", give: func(h *harness) { h.advance(59 * time.Second); late(h) }},
		{name: "a late duplicate after max-ended-1 more ends", give: func(h *harness) {
			for i := range 2 {
				h.send(endEvent(fmt.Sprint("other-", i)))
			}
			late(h)
		}},
		{name: "after max-ended more ends", want: 1, give: func(h *harness) {
			for i := range 3 {
				h.send(endEvent(fmt.Sprint("other-", i)))
			}
			late(h)
		}},
		{name: "after the call TTL", want: 1, give: func(h *harness) { h.advance(time.Minute); late(h) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, WithShards(1), WithMaxEnded(3), WithConfig(cfg))
			h.send(conv("x", 1, user("user-1", 0), reply("r-1", 0)))
			h.send(endEvent("x"))
			tt.give(h)
			if st := h.e.Stats(); st.Calls != tt.want || st.Tombs > 3 {
				t.Errorf("calls %d (tombs %d), want %d (at most 3)", st.Calls, st.Tombs, tt.want)
			}
			h.advance(5 * time.Second)
			if n := h.e.Stats().Hangs(); n != tt.want {
				t.Errorf("%d hangs, want %d", n, tt.want)
			}
		})
	}
}

// TestEngineRefusals: past max-calls every new call is refused, past max-calls-per-team
// only that team's; known calls keep working; refusals are counted by reason and
// logged on the limited logger (which the process rate-limits), not the main one.
func TestEngineRefusals(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	mainCore, mainLogs := observer.New(zap.WarnLevel)
	h := newHarness(t, WithMaxCalls(5), WithMaxCallsPerTeam(2), WithLogger(zap.New(mainCore)), WithLimitedLogger(zap.New(core)))
	call := func(id, team string) { h.send(withTeam(conv(id, 1, user("user-1", 0)), team, "asst")) }
	call("a1", "A")
	call("a2", "A")
	call("a3", "A") // refused: team A has 2
	call("a3", "A")
	call("b1", "B")
	call("b2", "B")
	call("b3", "B") // refused: team B has 2
	call("c1", "C")
	call("c2", "C") // refused: 5 calls live
	st := h.e.Stats()
	if st.Calls != 5 || st.RefusedPerTeam != 3 || st.RefusedMaxCalls != 1 {
		t.Errorf("calls %d, refused per team %d, at max-calls %d; want 5, 3, 1", st.Calls, st.RefusedPerTeam, st.RefusedMaxCalls)
	}
	if n := logs.FilterMessage("call refused: max-calls-per-team").Len(); n != 3 {
		t.Errorf("logged %d per-team refusals on the limited logger, want 3", n)
	}
	if n := logs.FilterMessage("call refused: max-calls").Len(); n != 1 {
		t.Errorf("logged %d max-calls refusals on the limited logger, want 1", n)
	}
	if n := mainLogs.Len(); n != 0 {
		t.Errorf("logged %d refusals on the main logger, want none", n)
	}
	// A known call keeps working; an ended call makes room for its team.
	h.send(withTeam(conv("a1", 2, user("user-1", 0), reply("r-1", 0), user("user-2", 0)), "A", "asst"))
	h.send(withTeam(endEvent("a2"), "A", "asst"))
	call("a3", "A")
	call("c2", "C") // a2's place went to a3
	st = h.e.Stats()
	if st.Calls != 5 || st.RefusedPerTeam != 3 || st.RefusedMaxCalls != 2 {
		t.Errorf("after an end: calls %d, refused per team %d, at max-calls %d; want 5, 3, 2", st.Calls, st.RefusedPerTeam, st.RefusedMaxCalls)
	}
	h.advance(5 * time.Second)
	got := verdicts(h.sink.take())
	slices.Sort(got)
	want := []string{
		"hang a1 user-2/user-2 turn-timeout awaiting-assistant",
		"hang a3 user-1/user-1 turn-timeout awaiting-assistant",
		"hang b1 user-1/user-1 turn-timeout awaiting-assistant",
		"hang b2 user-1/user-1 turn-timeout awaiting-assistant",
		"hang c1 user-1/user-1 turn-timeout awaiting-assistant",
	}
	if !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
	// Refused messages are done too (a stream acknowledges them): they are not bad input.
	if done, st := h.src.doneCount(), h.e.Stats(); done != 13 || st.Events != 8 {
		t.Errorf("done %d, applied %d; want every message done (13), 8 applied", done, st.Events)
	}
}

// armedConv is a conversation-update of call id whose history has n messages of per
// bytes: user turns and replies in turn, and a user turn last.
func armedConv(id string, ts int64, n, per int, log *retainLog) *detector.Event {
	msgs := make([]m, 0, n)
	for i := range n - 1 {
		if i%2 == 0 {
			msgs = append(msgs, user(fmt.Sprint("user-", i), 0))
		} else {
			msgs = append(msgs, reply(fmt.Sprint("r-", i), 0))
		}
	}
	msgs = append(msgs, user(fmt.Sprint("user-", n-1), 0))
	ev := conv(id, ts, msgs...)
	ev.Payload = &retPayload{name: fmt.Sprintf("%s@%d", id, ts), n: n, per: per, asked: log}
	return ev
}

// TestEngineRetainedBudget: an armed call keeps a copy of what its hang carries; past
// max-retained-bytes a newly armed call keeps only the tail of its history (from the
// reply before its stretch), and Truncated counts the output that carries it.
func TestEngineRetainedBudget(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t, WithMaxRetainedBytes(1000))
	h.send(armedConv("c1", 1, 3, 200, log)) // 600 bytes: within the budget
	if got, want := log.take(), []string{"c1@1 -1"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 600 || st.Truncated != 0 {
		t.Errorf("retained %d, truncated %d; want 600, 0", st.Retained, st.Truncated)
	}
	h.send(armedConv("c2", 1, 5, 200, log)) // 1000 bytes: past the budget; the tail is r-3, user-4
	if got, want := log.take(), []string{"c2@1 3"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 1000 || st.Truncated != 0 {
		t.Errorf("retained %d, truncated %d; want 1000, 0 (counted when an output goes out)", st.Retained, st.Truncated)
	}
	// A status event: the call keeps its call object too.
	status := statusEvent("c1", detector.StatusOngoing)
	status.Payload = &retPayload{name: "c1-status", call: 50, asked: log}
	h.send(status)
	if got, want := log.take(), []string{"c1-status call"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 1050 {
		t.Errorf("retained %d, want 1050", st.Retained)
	}
	h.advance(5 * time.Second)
	outs := h.sink.take()
	if len(outs) != 2 {
		t.Fatalf("outputs %q, want two hangs", briefs(outs))
	}
	for _, p := range outs {
		snap, latest := p.out.Snapshot.(*retPayload), p.out.Latest.(*retPayload)
		switch p.callID {
		case "c1":
			if !snap.kept || !snap.whole || snap.n != 3 || latest.name != "c1-status" || !latest.kept {
				t.Errorf("c1's hang carries %+v, %+v; want its whole copy and the status's call", snap, latest)
			}
		case "c2":
			if !snap.kept || snap.whole || snap.n != 2 || snap.omitted != 3 || latest != snap {
				t.Errorf("c2's hang carries %+v, %+v; want the copy of its tail", snap, latest)
			}
		}
	}
	if st := h.e.Stats(); st.Truncated != 1 {
		t.Errorf("truncated %d, want 1: c2's hang", st.Truncated)
	}
}

// TestEngineRetainedReturns: the bytes a call keeps are given back when it is answered,
// ends, expires or is revoked.
func TestEngineRetainedReturns(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.CallTTL = time.Minute
	tests := []struct {
		name string
		give func(h *harness)
	}{
		{name: "answered", give: func(h *harness) {
			h.send(conv("c1", 2, user("user-0", 0), reply("r-1", 0), user("user-2", 0), reply("r-3", 0)))
		}},
		{name: "answered after its hang", give: func(h *harness) {
			h.advance(5 * time.Second)
			h.send(conv("c1", 6000, user("user-0", 0), reply("r-1", 0), user("user-2", 0), reply("r-3", 6000)))
		}},
		{name: "ended", give: func(h *harness) { h.send(endEvent("c1")) }},
		{name: "ended after its hang", give: func(h *harness) { h.advance(5 * time.Second); h.send(endEvent("c1")) }},
		{name: "expired", give: func(h *harness) { h.advance(time.Minute) }},
		{name: "revoked", give: func(h *harness) { h.in.Revoke(3); h.sync() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &retainLog{}
			h := newHarness(t, WithConfig(cfg), WithMaxRetainedBytes(1000))
			msg := h.msg(armedConv("c1", 1, 3, 200, log))
			msg.partition = 3
			h.in.Deliver(msg)
			h.sync()
			if st := h.e.Stats(); st.Retained != 600 {
				t.Fatalf("retained %d, want 600", st.Retained)
			}
			tt.give(h)
			if st := h.e.Stats(); st.Retained != 0 || st.Armed+st.Hung != 0 {
				t.Errorf("retained %d (armed %d, hung %d), want 0", st.Retained, st.Armed, st.Hung)
			}
		})
	}
}

// TestEngineRetainedOwnBytes: a call's own earlier snapshot does not count against the
// budget when a newer one replaces it: a call alone within the budget keeps its whole
// history.
func TestEngineRetainedOwnBytes(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t, WithMaxRetainedBytes(1000))
	h.send(armedConv("c1", 1, 3, 200, log))
	h.send(armedConv("c1", 2, 4, 200, log)) // 800 bytes replace 600
	if got, want := log.take(), []string{"c1@1 -1", "c1@2 -1"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 800 || st.Truncated != 0 {
		t.Errorf("retained %d, truncated %d; want 800, 0", st.Retained, st.Truncated)
	}
}

// TestEngineShapeless: a call whose histories never hold a message detection reads (a
// producer of the wrong shape) is counted once, and the first is logged with a hint; a
// call that opens with a system prompt only and then speaks is not.
func TestEngineShapeless(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	h := newHarness(t, WithLogger(zap.New(core)))
	shapeless := func(id string, ts int64) *detector.Event {
		ev := conv(id, ts)
		ev.Count = 2 // two messages, neither a user turn nor a reply nor a tool message
		return ev
	}
	for i := range 3 {
		h.send(shapeless("wrong", int64(i+1)))
	}
	h.send(shapeless("ends", 1))
	h.send(endEvent("ends"))
	h.send(shapeless("speaks", 1))
	h.send(conv("speaks", 2, user("user-1", 0)))
	h.send(shapeless("speaks", 3))
	h.send(shapeless("speaks", 4))
	if got := h.e.Stats().Shapeless; got != 2 {
		t.Errorf("Shapeless = %d, want 2 (wrong, ends)", got)
	}
	if n := logs.FilterMessageSnippet("drive nothing").Len(); n != 1 {
		t.Errorf("logged %d hints, want 1", n)
	}
}

// TestEngineTombsAcrossShards: --max-ended counts the ended calls of every shard: a shard
// that sees more than its share of ends keeps them while fewer than --max-ended calls
// have ended in all, so a late duplicate does not resurrect one. SPEC §2 Bounds.
func TestEngineTombsAcrossShards(t *testing.T) {
	h := newHarness(t, WithShards(2), WithMaxEnded(4))
	sh := h.e.shardOf("x")
	var others []string
	for i := 0; len(others) < 2; i++ {
		if id := fmt.Sprint("other-", i); h.e.shardOf(id) == sh {
			others = append(others, id)
		}
	}
	h.send(conv("x", 1, user("user-1", 0), reply("r-1", 0)))
	h.send(endEvent("x"))
	for _, id := range others { // 3 calls ended in all, below max-ended 4
		h.send(endEvent(id))
	}
	h.send(conv("x", 2, user("user-1", 0), reply("r-1", 0), user("user-2", 1))) // a late duplicate
	h.advance(10 * time.Second)
	if got := briefs(h.sink.take()); len(got) != 0 {
		t.Errorf("the ended call x was resurrected: outputs %q, want none", got)
	}
}
