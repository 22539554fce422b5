package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
)

// runStoppableEngine runs an engine on src until the returned stop is called (or the
// test ends): an instance of hangwatch that a test stops and replaces.
func runStoppableEngine(t *testing.T, src engine.Source, sink engine.Sink, cfg detector.Config) (*engine.Engine, func()) {
	t.Helper()
	eng, err := engine.New(src, decoder, sink, engine.WithShards(2), engine.WithDecoders(2), engine.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine.Run() = %v", err)
		}
	}
	t.Cleanup(stop)
	return eng, stop
}

// TestReviewStaleDuplicateThenRestart: SPEC §2 "Producers ... may deliver snapshots
// late, twice or never ... Detection gives the same verdicts in every case", §6
// "failover neither loses nor invents nor repeats a hang", README "restart of
// hangwatch: ... a call answered or ended meanwhile is not [reported]".
//
// A producer re-sends (late duplicate) an older snapshot of a call after the snapshot
// that holds the reply. Live, the engine ignores it (older). The events stream keeps one
// message per subject, so the stale snapshot replaces the answered one; after a restart
// of hangwatch the replay rebuilds the call from the stale snapshot alone, and a hang is
// published for a turn that was answered in time.
// TestJetStreamRestartEndedWhileDownAfterHang: an instance published a call's hang and
// stopped; the call ended while no instance ran (a Vapi status-update "ended", which
// carries no history). The next instance rebuilds the call from the stream and owes
// its hang-unresolved, once, and not the hang again (SPEC §2, §3 "Exactly once", §6).
func TestJetStreamRestartEndedWhileDownAfterHang(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	received := listen(t, srv, "voice.>")
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 500*time.Millisecond

	conn1 := connect(t, srv, ConnOptions{})
	src1 := newJSSource(t, conn1, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{}, ConsumerOptions{})
	sink1 := newJSSink(t, conn1, JetStreamSinkOptions{})
	closeSink1, _ := runSink(t, sink1)
	eng1, stop1 := runStoppableEngine(t, src1, sink1, cfg)
	eventually(t, "live", src1.Ready)

	now := time.Now().UnixMilli()
	store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
	eventually(t, "hang published by the first instance", func() bool { return eng1.Stats().Hangs() == 1 })
	stop1()
	if err := closeSink1(); err != nil {
		t.Fatal(err)
	}
	if got := received(); got["c1:user-1:hang"] != 1 {
		t.Fatalf("subscriber got %v, want the hang", got)
	}

	// While hangwatch is down the call ends.
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))

	conn2 := connect(t, srv, ConnOptions{})
	src2 := newJSSource(t, conn2, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{}, ConsumerOptions{})
	sink2 := newJSSink(t, conn2, JetStreamSinkOptions{})
	closeSink2, _ := runSink(t, sink2)
	eng2, stop2 := runStoppableEngine(t, src2, sink2, cfg)
	eventually(t, "live after restart", src2.Ready)
	time.Sleep(2 * time.Second)
	if err := eng2.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	stop2()
	if err := closeSink2(); err != nil {
		t.Fatal(err)
	}
	got := received()
	t.Logf("after the restart the subscriber got %v (engine: hangs %d, unresolved %d)", got, eng2.Stats().Hangs(), eng2.Stats().Unresolved())
	if got["c1:user-1:unresolved"] != 1 {
		t.Errorf("the call hung (its hang went out) and ended while hangwatch was down: got %v, want one c1:user-1:unresolved", got)
	}
}

// TestReviewHangLostWhenCallEndsDuringOutage: SPEC §6 "A hang whose deadline passed
// during the failover is published late, once" and README "a stall whose deadline passed
// while it was down is reported at once (with its true wait)". hangwatch is down from
// just after the user turn; the deadline passes, then the call ends (status-update,
// call.status "ended", as Vapi sends before its end-of-call-report). Live, the engine
// would have published hang then hang-unresolved; the restarted one publishes nothing.
// TestJetStreamRestartEndedWhileDownPastDeadline: hangwatch went down right after a
// user turn; its deadline passed and the call ended while no instance ran. The next
// instance publishes the hang late, then the hang-unresolved, once each (SPEC §6: "A hang
// whose deadline passed during the failover is published late, once").
func TestJetStreamRestartEndedWhileDownPastDeadline(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	received := listen(t, srv, "voice.>")
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 500*time.Millisecond

	conn1 := connect(t, srv, ConnOptions{})
	src1 := newJSSource(t, conn1, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{}, ConsumerOptions{})
	sink1 := newJSSink(t, conn1, JetStreamSinkOptions{})
	closeSink1, _ := runSink(t, sink1)
	eng1, stop1 := runStoppableEngine(t, src1, sink1, cfg)
	eventually(t, "live", src1.Ready)
	now := time.Now().UnixMilli()
	store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
	eventually(t, "armed", func() bool { return eng1.Stats().Armed == 1 })
	stop1() // hangwatch goes down before the deadline
	if err := closeSink1(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.UnixMilli(now).Add(2 * time.Second)))
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))

	conn2 := connect(t, srv, ConnOptions{})
	src2 := newJSSource(t, conn2, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{}, ConsumerOptions{})
	sink2 := newJSSink(t, conn2, JetStreamSinkOptions{})
	closeSink2, _ := runSink(t, sink2)
	eng2, stop2 := runStoppableEngine(t, src2, sink2, cfg)
	eventually(t, "live after restart", src2.Ready)
	time.Sleep(time.Second)
	if err := eng2.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	stop2()
	if err := closeSink2(); err != nil {
		t.Fatal(err)
	}
	got := received()
	if got["c1:user-1:hang"] != 1 || got["c1:user-1:unresolved"] != 1 {
		t.Errorf("the turn went unanswered 2 s past its 1 s deadline and the call ended: got %v, want c1:user-1:hang and c1:user-1:unresolved once each", got)
	}
}

// TestJetStreamRestartStaleDuplicate: the producer repeats an older snapshot late, after
// the one that answered the turn; the running engine ignores it (older), but a stream
// keeping one message per subject now holds only the stale copy. With two kept per
// subject, the restarted instance's rebuild reads both and applies the newest: no
// hang, as live (SPEC §2: snapshots late or twice give the same verdicts; §6).
func TestJetStreamRestartStaleDuplicate(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 500*time.Millisecond

	src1 := newJSSource(t, conn, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{PerSubject: 2}, ConsumerOptions{})
	sink1 := &recordingSink{}
	eng1, stop1 := runStoppableEngine(t, src1, sink1, cfg)
	eventually(t, "live", src1.Ready)

	now := time.Now().UnixMilli()
	subj := eventSubject("c1", "conversation-update")
	stale := convUpdate("c1", now, userTurn("user-1", now))
	store(t, js, subj, stale)
	store(t, js, subj, convUpdate("c1", now+200, userTurn("user-1", now), replyTurn("user-1-r", now+200)))
	store(t, js, subj, stale)           // the producer's late duplicate of the older snapshot
	time.Sleep(2500 * time.Millisecond) // past the turn's deadline
	if err := eng1.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if outs := sink1.all(); len(outs) != 0 {
		t.Fatalf("live engine published %v for a call answered in time", outs)
	}
	stop1()

	// hangwatch restarts: a new engine and source on the same stream and durable.
	src2 := newJSSource(t, conn, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{PerSubject: 2}, ConsumerOptions{})
	sink2 := &recordingSink{}
	eng2, _ := runStoppableEngine(t, src2, sink2, cfg)
	eventually(t, "live after restart", src2.Ready)
	time.Sleep(1500 * time.Millisecond)
	if err := eng2.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if outs := sink2.all(); len(outs) != 0 {
		t.Errorf("after a restart, published %v for a call whose turn was answered 200 ms after it (live: nothing)", outs)
	}
}

// vapiSpeech is a Vapi speech-update: role started/stopped speaking.
func vapiSpeech(call, role, status string, ts int64) []byte {
	return fmt.Appendf(nil, `{"message":{"type":"speech-update","timestamp":%d,"status":%q,"role":%q,"call":{"id":%q,"teamId":"team","status":"ongoing"}}}`,
		ts, status, role, call)
}

// TestJetStreamRestartEndAfterSpeechReplaced: a Vapi call whose user turn the assistant
// answered in time by speaking (speech-update started, SPEC §1); the caller hangs up
// mid-reply, past the turn's deadline, before any conversation-update holds the reply.
// The running instance publishes nothing. Later speech-updates of the call replace the
// "started" one in the stream. A restarted instance reads the latest conversation-update
// (the turn unanswered) and a status-update "ended" without a history: from a call that
// spoke, that is no evidence, and nothing is invented (SPEC §6).
func TestJetStreamRestartEndAfterSpeechReplaced(t *testing.T) {
	for _, perSubject := range []int64{1, 2} {
		t.Run(fmt.Sprintf("per-subject=%d", perSubject), func(t *testing.T) {
			srv := startJetStream(t)
			js := jsClient(t, srv)
			received := listen(t, srv, "voice.>")
			cfg := detector.DefaultConfig()
			cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 500*time.Millisecond
			so := StreamOptions{PerSubject: perSubject}

			conn1 := connect(t, srv, ConnOptions{})
			src1 := newJSSource(t, conn1, SourceOptions{ProbeEvery: 100 * time.Millisecond}, so, ConsumerOptions{})
			sink1 := newJSSink(t, conn1, JetStreamSinkOptions{})
			closeSink1, _ := runSink(t, sink1)
			eng1, stop1 := runStoppableEngine(t, src1, sink1, cfg)
			eventually(t, "live", src1.Ready)

			now := time.Now().UnixMilli()
			store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "assistant", "started", now+300))
			time.Sleep(time.Until(time.UnixMilli(now).Add(1600 * time.Millisecond)))
			// The caller says "bye" over the reply and hangs up; the assistant stops.
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "user", "started", time.Now().UnixMilli()))
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "assistant", "stopped", time.Now().UnixMilli()))
			store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))
			time.Sleep(500 * time.Millisecond)
			if err := eng1.Sync(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			stop1()
			if err := closeSink1(); err != nil {
				t.Fatal(err)
			}
			if got := outputsOf(received()); len(got) != 0 {
				t.Fatalf("live instance published %v for a turn answered in time (speech-update started)", got)
			}

			conn2 := connect(t, srv, ConnOptions{})
			src2 := newJSSource(t, conn2, SourceOptions{ProbeEvery: 100 * time.Millisecond}, so, ConsumerOptions{})
			sink2 := newJSSink(t, conn2, JetStreamSinkOptions{})
			closeSink2, _ := runSink(t, sink2)
			eng2, stop2 := runStoppableEngine(t, src2, sink2, cfg)
			eventually(t, "live after restart", src2.Ready)
			time.Sleep(500 * time.Millisecond)
			if err := eng2.Sync(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			st := eng2.Stats()
			t.Logf("eng2: events %d hangs %d unresolved %d calls %d", st.Events, st.Hangs(), st.Unresolved(), st.Calls)
			stop2()
			if err := closeSink2(); err != nil {
				t.Fatal(err)
			}
			if got := outputsOf(received()); len(got) != 0 {
				t.Errorf("restarted instance published %v for a call answered in time and already judged live (nothing)", got)
			}
		})
	}
}

// outputsOf keeps the outputs (with a Nats-Msg-Id) of what a listener of voice.> got.
func outputsOf(got map[string]int) map[string]int {
	delete(got, "")
	return got
}
