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

// instance is one hangwatch in JetStream mode on a server, as the binary wires it: a
// source on the events stream, a sink into the hang stream (or the test's), an engine
// with a turn timeout of 1 s. A test stops it and starts the next on the same streams
// and durable: a restart.
type instance struct {
	t          *testing.T
	eng        *engine.Engine
	stopEngine func()
	closeSink  func() error // nil with the test's sink
}

// startInstance starts an instance on srv and waits until it consumes live; sink nil
// gives it a JetStream sink of its own.
func startInstance(t *testing.T, srv *testServer, so StreamOptions, sink engine.Sink) *instance {
	t.Helper()
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 500*time.Millisecond
	conn := connect(t, srv, ConnOptions{})
	src := newJSSource(t, conn, SourceOptions{ProbeEvery: 100 * time.Millisecond}, so, ConsumerOptions{})
	in := &instance{t: t}
	if sink == nil {
		js := newJSSink(t, conn, JetStreamSinkOptions{})
		in.closeSink, _ = runSink(t, js)
		sink = js
	}
	in.eng, in.stopEngine = runStoppableEngine(t, src, sink, cfg)
	eventually(t, "live", src.Ready)
	return in
}

// settle waits d, then until the engine has applied what it was handed.
func (in *instance) settle(d time.Duration) {
	in.t.Helper()
	time.Sleep(d)
	if err := in.eng.Sync(testCtx(in.t)); err != nil {
		in.t.Fatal(err)
	}
}

// stop stops the instance as SIGTERM does: the engine, then its sink once it has stored
// what it holds.
func (in *instance) stop() {
	in.t.Helper()
	in.stopEngine()
	if in.closeSink != nil {
		if err := in.closeSink(); err != nil {
			in.t.Fatal(err)
		}
	}
}

// TestJetStreamRestartEndedWhileDownAfterHang: an instance published a call's hang and
// stopped; the call ended while no instance ran (a Vapi status-update "ended", which
// carries no history). The next instance rebuilds the call from the stream and owes
// its hang-unresolved, once, and not the hang again (SPEC §2, §3 "Exactly once", §6).
func TestJetStreamRestartEndedWhileDownAfterHang(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	received := listen(t, srv, "voice.>")

	first := startInstance(t, srv, StreamOptions{}, nil)
	now := time.Now().UnixMilli()
	store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
	eventually(t, "hang published by the first instance", func() bool { return first.eng.Stats().Hangs() == 1 })
	first.stop()
	if got := received(); got["c1:user-1:hang"] != 1 {
		t.Fatalf("subscriber got %v, want the hang", got)
	}

	// While hangwatch is down the call ends.
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))

	second := startInstance(t, srv, StreamOptions{}, nil)
	second.settle(2 * time.Second)
	second.stop()
	got := received()
	t.Logf("after the restart the subscriber got %v (engine: hangs %d, unresolved %d)", got, second.eng.Stats().Hangs(), second.eng.Stats().Unresolved())
	if got["c1:user-1:unresolved"] != 1 {
		t.Errorf("the call hung (its hang went out) and ended while hangwatch was down: got %v, want one c1:user-1:unresolved", got)
	}
}

// TestJetStreamRestartEndedWhileDownPastDeadline: hangwatch went down right after a
// user turn; its deadline passed and the call ended while no instance ran. The next
// instance publishes the hang late, then the hang-unresolved, once each (SPEC §6: "A hang
// whose deadline passed during the failover is published late, once").
func TestJetStreamRestartEndedWhileDownPastDeadline(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	received := listen(t, srv, "voice.>")

	first := startInstance(t, srv, StreamOptions{}, nil)
	now := time.Now().UnixMilli()
	store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
	eventually(t, "armed", func() bool { return first.eng.Stats().Armed == 1 })
	first.stop() // hangwatch goes down before the deadline
	time.Sleep(time.Until(time.UnixMilli(now).Add(2 * time.Second)))
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))

	second := startInstance(t, srv, StreamOptions{}, nil)
	second.settle(time.Second)
	second.stop()
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
	so := StreamOptions{PerSubject: 2}

	sink1 := &recordingSink{}
	first := startInstance(t, srv, so, sink1)
	now := time.Now().UnixMilli()
	subj := eventSubject("c1", "conversation-update")
	stale := convUpdate("c1", now, userTurn("user-1", now))
	store(t, js, subj, stale)
	store(t, js, subj, convUpdate("c1", now+200, userTurn("user-1", now), replyTurn("user-1-r", now+200)))
	store(t, js, subj, stale)             // the producer's late duplicate of the older snapshot
	first.settle(2500 * time.Millisecond) // past the turn's deadline
	if outs := sink1.all(); len(outs) != 0 {
		t.Fatalf("live engine published %v for a call answered in time", outs)
	}
	first.stop()

	// hangwatch restarts: a new engine and source on the same stream and durable.
	sink2 := &recordingSink{}
	second := startInstance(t, srv, so, sink2)
	second.settle(1500 * time.Millisecond)
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
			so := StreamOptions{PerSubject: perSubject}

			first := startInstance(t, srv, so, nil)
			now := time.Now().UnixMilli()
			store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "assistant", "started", now+300))
			time.Sleep(time.Until(time.UnixMilli(now).Add(1600 * time.Millisecond)))
			// The caller says "bye" over the reply and hangs up; the assistant stops.
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "user", "started", time.Now().UnixMilli()))
			store(t, js, eventSubject("c1", "speech-update"), vapiSpeech("c1", "assistant", "stopped", time.Now().UnixMilli()))
			store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ended", time.Now().UnixMilli()))
			first.settle(500 * time.Millisecond)
			first.stop()
			if got := outputsOf(received()); len(got) != 0 {
				t.Fatalf("live instance published %v for a turn answered in time (speech-update started)", got)
			}

			second := startInstance(t, srv, so, nil)
			second.settle(500 * time.Millisecond)
			second.stop()
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
