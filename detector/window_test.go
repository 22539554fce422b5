package detector

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestWindowCutsFirstTurnStage: a sliding window that no longer shows the stretch's
// user turn shows only messages newer than it, so the tool call and its result still
// tell the stage (and the tool timeout that goes with it). SPEC §2: stage from the
// messages after the first user turn; verdicts the same however the history is windowed.
func TestWindowCutsFirstTurnStage(t *testing.T) {
	u1 := hello("user-1", 1000)
	tc := toolCalls("tc", 1500, "call-1")
	tr := toolResult("tr", 2000, "call-1")
	long := conf(5*time.Second, 30*time.Second, 20*time.Second)
	runCallTests(t, []callTest{
		{
			name: "window of 2 cuts user-1 once the result arrives: still after-tool",
			give: []op{
				conv(1000, u1),
				conv(1500, u1, tc),
				conv(2000, tc, tr), // window(2)
				tick(6000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 6000, wait: 5000,
				threshold: 5000, deadline: 6000, snapshot: "e2", latest: "e2"}},
		},
		{
			name: "window of 1 shows only the pending tool call: the tool timeout still holds",
			cfg:  &long,
			give: []op{
				conv(1000, u1),
				conv(1500, u1, tc),
				conv(1600, tc, other("sys", "system", 1600)), // window(2) of [u1 tc sys]
				tick(6000),
				tick(21_000),
			},
			want: []out{{kind: hang, reason: turnTO, stage: awaitTool, user: "user-1", first: "user-1", at: 21_000, wait: 20_000,
				threshold: 20_000, deadline: 21_000, snapshot: "e2", latest: "e2"}},
		},
	})
}

// TestWindowFilledReplyBeforeLatestTurn: an empty assistant message filled in place
// after the caller spoke again answers the stretch from its first turn, even standing
// before its latest turn; with a window that no longer shows the first turn too, by the
// reply's own time: hang-resolved, then the hang of user-2's own stretch, as with the whole
// history. SPEC §2: the same verdicts with a sliding window, with rewrites in place.
func TestWindowFilledReplyBeforeLatestTurn(t *testing.T) {
	u1, a1, u2 := hello("user-1", 1000), silent("a1", 1100), hello("user-2", 3000)
	a1filled := a("a1", "Sorry.", 1100)
	give := func(cut func([]msg) []msg) []op {
		return []op{
			conv(1000, cut([]msg{u1})...),
			conv(1100, cut([]msg{u1, a1})...),
			conv(3000, cut([]msg{u1, a1, u2})...),
			tick(8000),
			conv(9000, cut([]msg{u1, a1filled, u2})...),
			tick(20_000),
			endReport(30_000).ended("customer-ended-call"),
		}
	}
	want, _, _ := run(DefaultConfig(), give(full))
	got, _, _ := run(DefaultConfig(), give(window(2)))
	if !slices.Equal(got, want) {
		t.Errorf("window 2 differs from the whole history\n got: %v\nwant: %v", got, want)
	}
}

// TestSplitStretchKeepsMiddleTurnAnchor: a reply filled in place between user-1 and
// user-2 splits the stretch: user-2 starts a stretch of its own. Its anchor is where it
// reached the engine, between user-1's and user-3's (by its own time), not the splitting
// event's arrival, which would postpone its max wait by 5 s. SPEC §2: max wait runs from
// anchor(first user turn of the stretch); an anchor is fixed when the turn reaches the
// engine.
func TestSplitStretchKeepsMiddleTurnAnchor(t *testing.T) {
	u1, a1, u2, u3, u4 := hello("user-1", 1000), silent("a1", 1100), hello("user-2", 3000), hello("user-3", 5000), hello("user-4", 9500)
	a1f := a("a1", "Sorry.", 1100)
	runCallTests(t, []callTest{
		{
			name: "max wait of the split-off stretch runs from user-2's first anchor",
			give: []op{
				conv(1000, u1),
				conv(1100, u1, a1),
				conv(3000, u1, a1, u2),
				conv(5000, u1, a1, u2, u3),
				conv(9000, u1, a1f, u2, u3),
				conv(9500, u1, a1f, u2, u3, u4),
				tick(13_000),
				tick(20_000),
			},
			want: []out{{kind: hang, reason: mw, user: "user-4", first: "user-2", at: 13_000, wait: 10_000, threshold: 10_000, deadline: 13_000, snapshot: "e5", latest: "e5"}},
		},
	})
}

// TestNeverDeliveredSnapshotLive: the producer never delivers the snapshot that shows
// user-1 unanswered; the next one shows user-1 answered 7 s later by the turns' own
// timestamps: hang + hang-resolved (late), live as read back from a stream. SPEC §2:
// snapshots may be delivered "late, twice or never" with the same verdicts. (Not in the
// first snapshot seen of a call, whose past came before hangwatch watched it.)
func TestNeverDeliveredSnapshotLive(t *testing.T) {
	u1 := hello("user-1", 1000)
	runCallTests(t, []callTest{
		{
			name: "live: the unanswered snapshot never came",
			give: []op{
				conv(500, greeting("w", 500)),
				conv(8000, greeting("w", 500), u1, reply("r1", 8000)),
				tick(30_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 8000, wait: 7000, threshold: 5000, deadline: 6000, late: true, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "live: the first snapshot seen of a call holds a late reply of its past",
			give: []op{
				conv(8000, greeting("w", 500), u1, reply("r1", 8000)),
				tick(30_000),
			},
		},
		{
			name: "live: a status-update came before the deadline, the snapshot of the turn never",
			give: []op{
				status(500, StatusOngoing),
				conv(8000, u1, reply("r1", 8000)),
				tick(30_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 8000, wait: 7000, threshold: 5000, deadline: 6000, late: true, snapshot: "e1", latest: "e1"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e1", latest: "e1"},
			},
		},
		{
			name: "live: watched since the first status-update, whatever came after the deadline",
			give: []op{
				status(500, StatusOngoing),
				status(7000, StatusOngoing),
				typed(7900, TypeOther),
				conv(8000, u1, reply("r1", 8000)),
				tick(30_000),
			},
			want: []out{
				{kind: hang, reason: turnTO, user: "user-1", first: "user-1", at: 8000, wait: 7000, threshold: 5000, deadline: 6000, late: true, snapshot: "e3", latest: "e3"},
				{kind: res, reason: turnTO, user: "user-1", first: "user-1", reply: "r1", at: 8000, wait: 7000, snapshot: "e3", latest: "e3"},
			},
		},
		{
			name: "live: a status-update came after the deadline: the hang was before hangwatch watched",
			give: []op{
				status(6500, StatusOngoing),
				conv(8000, u1, reply("r1", 8000)),
				tick(30_000),
			},
		},
	})
}

// TestWindowMovedPastAppliedEnd: a producer that sends a sliding window of the latest
// two messages without message.timestamp, and loses a snapshot or brings two messages
// at once: the next window no longer holds the end of the one applied, and is no
// longer than it. It ends with a message the applied one lacks (SPEC §2), which the
// own times of the two ends tell: it is newer, and so is every later one. A late
// window that ends with an earlier message is still older.
func TestWindowMovedPastAppliedEnd(t *testing.T) {
	w, u1, r1 := greeting("w", 0), hello("user-1", 1000), reply("r1", 2000)
	u2, u3 := hello("user-2", 3000), hello("user-3", 3500)
	runCallTests(t, []callTest{
		{
			name: "a window after a lost one",
			give: []op{
				conv(1000, w, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				// lost: conv(3000, r1, u2)
				conv(3500, u2, u3).sent(noTS),
				tick(8500),
			},
			want: []out{timeoutHang("user-3", "user-2", 8500, "e2")},
		},
		{
			name: "an update that brings two messages at once",
			give: []op{
				conv(1000, w, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				conv(3000, r1, u2).sent(noTS), // it holds r1 before its end
				conv(4000, reply("r2", 3900), hello("user-4", 4000)).sent(noTS),
				tick(9000),
			},
			want: []out{timeoutHang("user-4", "user-4", 9000, "e3")},
		},
		{
			name: "a late window that ends earlier is older",
			give: []op{
				conv(1000, w, u1).sent(noTS),
				conv(3500, u2, u3).sent(noTS),
				conv(2000, u1, r1).sent(noTS), // late: ignored
				tick(8500),
			},
			want: []out{timeoutHang("user-3", "user-1", 8500, "e1")},
		},
	})
}

// TestWindowWithoutAnyTimestamp: without message.timestamp and without the messages' own
// times, a snapshot that ends with a message the applied one lacks is newer (SPEC §2):
// a window of one message, a window after a lost snapshot, two windows swapped in
// transit; one that ends with a message the applied one holds is older. Before, such a
// window was ignored unless it was longer or held the applied one's last message: the
// call stayed on the old snapshot, a reply was missed (a false hang) and so was every
// later turn.
func TestWindowWithoutAnyTimestamp(t *testing.T) {
	u1, r1, u2 := hello("user-1", noTS), reply("r1", noTS), hello("user-2", noTS)
	r2, u3 := reply("r2", noTS), hello("user-3", noTS)
	runCallTests(t, []callTest{
		{
			name: "a window of one message",
			give: []op{
				conv(1000, u1).sent(noTS),
				conv(2000, r1).sent(noTS),
				conv(3000, u2).sent(noTS),
				tick(8000),
			},
			want: []out{timeoutHang("user-2", "user-2", 8000, "e2")},
		},
		{
			name: "a window of two after a lost one",
			give: []op{
				conv(1000, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				// lost: conv(3000, r1, u2)
				conv(4000, u2, r2).sent(noTS),
				conv(5000, r2, u3).sent(noTS),
				tick(10_000),
			},
			want: []out{timeoutHang("user-3", "user-3", 10_000, "e3")},
		},
		{
			name: "two windows swapped in transit",
			give: []op{
				conv(1000, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				conv(3500, u2, r2).sent(noTS),
				conv(3600, r1, u2).sent(noTS), // late: it ends with user-2, which the applied one holds
				conv(5000, r2, u3).sent(noTS),
				tick(10_000),
			},
			want: []out{timeoutHang("user-3", "user-3", 10_000, "e4")},
		},
		{
			name: "a late window that ends with a message the applied one holds is older",
			give: []op{
				conv(1000, u1).sent(noTS),
				conv(2000, u1, r1).sent(noTS),
				conv(3000, r1, u2).sent(noTS),
				conv(3100, u1, r1).sent(noTS), // late: ignored
				tick(8000),
			},
			want: []out{timeoutHang("user-2", "user-2", 8000, "e2")},
		},
	})
}

// TestWindowMixedTimestampsAfterLoss: the snapshots applied carried message.timestamp,
// the next one does not and the one between them was lost; its last message is one the
// applied one lacks, so it is newer (SPEC §2), whatever the times it cannot be compared
// by.
func TestWindowMixedTimestampsAfterLoss(t *testing.T) {
	u1, r1 := hello("user-1", 100), reply("r1", 1000)
	u2, u3 := hello("user-2", 2000), hello("user-3", 3000)
	runCallTests(t, []callTest{{
		name: "window of two, message.timestamp until the loss",
		give: []op{
			conv(100, u1),
			conv(1000, u1, r1),
			// lost: conv(2000, r1, u2).sent(noTS)
			conv(3000, u2, u3).sent(noTS),
			tick(8000),
		},
		want: []out{timeoutHang("user-3", "user-2", 8000, "e2")},
	}})
}

// TestWindowOfOneAfterUnreadFirst: a window of one message whose first snapshot holds
// nothing detection reads (the system prompt, an empty greeting): every later window
// ends with a message it lacks, and is newer (SPEC §2). Before, the call stayed on that
// first snapshot, and every hang of the call was missed.
func TestWindowOfOneAfterUnreadFirst(t *testing.T) {
	want := []out{timeoutHang("user-2", "user-2", 8000, "e4")}
	runCallTests(t, []callTest{
		{
			name: "no timestamps, the first window the system prompt",
			give: []op{
				conv(0, other("sys", "system", noTS)).sent(noTS),
				conv(100, greeting("w", noTS)).sent(noTS),
				conv(1000, hello("user-1", noTS)).sent(noTS),
				conv(2000, reply("r1", noTS)).sent(noTS),
				conv(3000, hello("user-2", noTS)).sent(noTS),
				tick(8000),
			},
			want: want,
		},
		{
			name: "own timestamps, no message.timestamp, the first window the system prompt",
			give: []op{
				conv(0, other("sys", "system", 0)).sent(noTS),
				conv(100, greeting("w", 100)).sent(noTS),
				conv(1000, hello("user-1", 1000)).sent(noTS),
				conv(2000, reply("r1", 2000)).sent(noTS),
				conv(3000, hello("user-2", 3000)).sent(noTS),
				tick(8000),
			},
			want: want,
		},
		{
			name: "no timestamps, the greeting first empty, then filled in place",
			give: []op{
				conv(0, silent("w", noTS)).sent(noTS),
				conv(100, a("w", "Hi, how can I help?", noTS)).sent(noTS),
				conv(1000, hello("user-1", noTS)).sent(noTS),
				conv(2000, reply("r1", noTS)).sent(noTS),
				conv(3000, hello("user-2", noTS)).sent(noTS),
				tick(8000),
			},
			want: want,
		},
	})
}

// TestWindowOfOneExact: a window of one message without timestamps is told from the next
// exactly, whatever the ids (the filter of the applied snapshot's messages may hold a
// key it lacks; one of a single message is not asked): a reply a second after each turn
// never gives a hang. The ids are those a review found colliding in a 16-bit filter,
// then a thousand more.
func TestWindowOfOneExact(t *testing.T) {
	ids := []string{"user-1-WcIrvV6mE7-1772702495642", "user-1-reply"}
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("user-1-WcIrvV6mE7-%d", 1772702495000+i))
	}
	for _, id := range ids {
		var c Call
		cfg := DefaultConfig()
		for _, o := range []op{
			conv(1000, hello("user-1", noTS)).sent(noTS),
			conv(2000, reply(id, noTS)).sent(noTS),
		} {
			if st := c.Apply(&cfg, o.ev, eng(o.at)); len(st.Outputs) > 0 {
				t.Fatalf("reply %q: outputs on apply", id)
			}
		}
		if st := c.Tick(&cfg, eng(20_000), eng(20_000)); len(st.Outputs) > 0 {
			t.Fatalf("reply %q: a %v although the reply came a second after the turn", id, st.Outputs[0].Kind)
		}
	}
}

// TestResultAndReplyInOneSnapshot: the snapshot with the tool's result alone is lost (or
// one with the reply comes at the same instant); the next holds the result and then the
// reply, both past the turn timeout and before the tool timeout. The result moved the
// deadline back to the turn timeout, past already (SPEC §2: "then it fires at once"),
// before the reply came: the hang, after-tool, then its hang-resolved, as in order.
// Before, the deadline was read at the tool timeout, and the reply looked in time.
func TestResultAndReplyInOneSnapshot(t *testing.T) {
	u1 := hello("user-1", 1000)
	tc, tr := toolCalls("tc", 1500, "call-1"), toolResult("tr", 8000, "call-1")
	long := conf(5*time.Second, 30*time.Second, 20*time.Second)
	runCallTests(t, []callTest{{
		name: "result and reply in one snapshot",
		cfg:  &long,
		give: []op{
			conv(1000, u1),
			conv(1500, u1, tc),
			// lost: conv(8000, u1, tc, tr)
			conv(8200, u1, tc, tr, reply("r1", 8200)),
			tick(40_000),
		},
		want: []out{
			{kind: hang, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", at: 8200, wait: 7200,
				threshold: 5000, deadline: 6000, snapshot: "e1", latest: "e1"},
			{kind: res, reason: turnTO, stage: afterTool, user: "user-1", first: "user-1", reply: "r1", at: 8200, wait: 7200,
				snapshot: "e2", latest: "e2"},
		},
	}})
}

// timeoutHang is the hang of a stretch whose latest turn, user, went unanswered for the
// default turn timeout (5 s) until at, carrying event (its snapshot and latest).
func timeoutHang(user, first string, at int64, event string) out {
	return out{kind: hang, reason: turnTO, user: user, first: first, at: at, wait: 5000, threshold: 5000,
		deadline: at, snapshot: event, latest: event}
}
