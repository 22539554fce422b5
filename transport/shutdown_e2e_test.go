package transport

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/natstest"
)

// What the core source's last mark, given as hangwatch stops, lets fire: the hangs
// due by then when the server answered, nothing when it did not.

// unprobed is a source the engine cannot ask for proofs: its only marks are those it
// gives unasked (the first, and the last as it stops).
type unprobed struct{ src engine.Source }

func (s unprobed) Run(ctx context.Context, in engine.Intake) error { return s.src.Run(ctx, in) }

// shutdownE2E is core mode on a fake clock whose engine the test stops, as SIGTERM
// does.
type shutdownE2E struct {
	clock  *clockwork.FakeClock
	src    *Source
	rec    *recorder
	eng    *engine.Engine
	sink   *recordingSink
	pub    *testPublisher
	cancel context.CancelFunc
	done   chan error
}

// newShutdownE2E runs an engine on a core source connected through url (the server's
// own when empty); with probed false, the engine cannot ask the source for proofs.
func newShutdownE2E(t *testing.T, srv *testServer, url string, probed bool) *shutdownE2E {
	t.Helper()
	cfg := detector.DefaultConfig()
	cfg.MaxWait = 0
	h := &shutdownE2E{clock: clockwork.NewFakeClockAt(e2eStart), rec: newRecorder(), sink: &recordingSink{}, done: make(chan error, 1)}
	conn := connect(t, srv, ConnOptions{URL: url})
	h.src = NewSource(conn, SourceOptions{ProbeEvery: noProbes, Now: h.clock.Now})
	var src engine.Source = &tapped{h.src, h.rec}
	if !probed {
		src = unprobed{src}
	}
	var err error
	h.eng, err = engine.New(src, decoder, h.sink, engine.WithShards(1), engine.WithDecoders(1),
		engine.WithClock(h.clock), engine.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	h.rec.waitMark(t, 0, time.Time{})
	h.pub = &testPublisher{t: t, srv: srv, nc: plainClient(t, srv)} // straight to the server
	return h
}

// stop stops the engine as SIGTERM does, and waits for it.
func (h *shutdownE2E) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		if err != nil {
			t.Errorf("engine.Run() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the engine did not stop")
	}
}

// TestE2EShutdownFiresDueHangs: hangwatch stops while the server answers: the source's
// last mark, at the stop, lets the deadlines due by then fire, with their true wait,
// and no other. The engine cannot ask for proofs here, so that mark is the only one
// after the first.
func TestE2EShutdownFiresDueHangs(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	h := newShutdownE2E(t, srv, "", false)
	// Each event is handed over before the clock moves: it is received when published.
	publish := func(call string, data []byte) {
		n := count(h.rec.all(), isMessage)
		h.pub.publish(call, data)
		h.rec.wait(t, "the event handed over", func(es []entry) bool { return count(es, isMessage) > n })
	}
	publish("due", convUpdate("due", ms(0), userTurn("user-1", ms(0))))
	publish("answered", convUpdate("answered", ms(0), userTurn("user-1", ms(0))))
	h.clock.Advance(2 * time.Second)
	publish("answered", convUpdate("answered", ms(2*time.Second), userTurn("user-1", ms(0)), replyTurn("r1", ms(2*time.Second))))
	h.clock.Advance(2 * time.Second)
	publish("later", convUpdate("later", ms(4*time.Second), userTurn("user-1", ms(4*time.Second))))
	h.clock.Advance(2 * time.Second) // 6 s: due's deadline at 5 s passed, later's at 9 s not

	h.stop(t)
	outs := h.sink.all()
	if got, want := kinds(outs), []string{"hang due"}; !slices.Equal(got, want) {
		t.Fatalf("published %v on shutdown, want %v", outs, want)
	}
	if w := outs[0].out.Wait; w != 6*time.Second {
		t.Errorf("the hang's waitMs = %v, want its true wait at the stop, 6s", w)
	}
}

// TestE2EShutdownWhileServerSilent: a call is armed at 0 s; its reply is accepted by
// NATS at 2 s, but the link to hangwatch hangs (the server is paused, or the network)
// before it is delivered; the clock passes the deadline at 5 s; hangwatch is told to
// stop at 6 s. The reply was accepted before the deadline, and no round trip since the
// freeze has completed: no hang may be published (SPEC §2, Evidence before verdict).
func TestE2EShutdownWhileServerSilent(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	link := natstest.StartProxy(t, listenOf(srv.Embedded))
	h := newShutdownE2E(t, srv, link.URL(), true)

	h.pub.publish("c1", convUpdate("c1", ms(0), userTurn("user-1", ms(0))))
	from := h.rec.len()
	h.src.Probe()
	h.rec.waitMark(t, from, h.clock.Now())
	if err := h.eng.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if st := h.eng.Stats(); st.Armed != 1 {
		t.Fatalf("engine Stats() = %+v, want 1 armed call", st)
	}

	link.Freeze()
	defer link.Thaw()
	h.clock.Advance(2 * time.Second)
	h.pub.publish("c1", convUpdate("c1", ms(2*time.Second), userTurn("user-1", ms(0)), replyTurn("r1", ms(2*time.Second))))
	h.clock.Advance(4 * time.Second) // 6 s: the deadline at 5 s passed by the clock

	h.stop(t)
	if outs := h.sink.all(); len(outs) != 0 {
		t.Errorf("published %v on shutdown, while the server did not answer; the reply was accepted at 2 s, before the deadline", outs)
	}
}
