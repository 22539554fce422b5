package transport

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
)

// jsEngine is the engine in JetStream mode, on a fake clock, as `hangwatch run
// --jetstream` builds it.
type jsEngine struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	eng    *engine.Engine
	src    *JetStreamSource
	sink   *JetStreamSink
	cancel context.CancelFunc
	done   chan error
}

// jsConfig has a turn timeout of a minute, so that wall-clock delays of a loaded test
// machine, which the stored times carry, never fire a deadline the test did not mean.
func jsConfig() detector.Config {
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait = time.Minute, 0
	return cfg
}

// startJSEngine runs an engine that replays, then consumes live; it returns once the
// engine is live.
func startJSEngine(t *testing.T, conn *Conn, now time.Time, co ConsumerOptions) *jsEngine {
	t.Helper()
	h := &jsEngine{t: t, clock: clockwork.NewFakeClockAt(now), done: make(chan error, 1)}
	h.src = newJSSource(t, conn, SourceOptions{}, StreamOptions{}, co)
	sink, err := NewJetStreamSink(testCtx(t), conn, SinkOptions{}, JetStreamSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.sink = sink
	h.eng, err = engine.New(h.src, h.sink, engine.WithClock(h.clock), engine.WithConfig(jsConfig()), engine.WithShards(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.eng.Run(ctx) }()
	t.Cleanup(h.stop)
	eventually(t, "engine live", h.src.Ready)
	return h
}

// stop shuts down as `hangwatch run` does: the source drains, the engine publishes what
// is due and returns, the sink flushes.
func (h *jsEngine) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("engine.Run() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.sink.Close(ctx); err != nil {
		h.t.Errorf("sink.Close() = %v", err)
	}
}

func (h *jsEngine) sync() {
	h.t.Helper()
	if err := h.eng.Sync(testCtx(h.t)); err != nil {
		h.t.Fatal(err)
	}
}

// hangSubjects returns how many outputs the hang stream holds per subject.
func hangSubjects(t testing.TB, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	got := streamInfo(t, js, DefaultHangStream, jetstream.WithSubjectFilter(">")).State.Subjects
	if got == nil {
		got = map[string]uint64{}
	}
	return got
}

// TestJetStreamRecovery kills the engine before two stalls reach their deadlines; while
// it is down, one call is answered and another ends; the clock moves past the
// deadlines. A new engine on the same streams reports the one stall left, once.
func TestJetStreamRecovery(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	now := time.Now()
	ms := now.UnixMilli()

	first := startJSEngine(t, conn, now, ConsumerOptions{})
	for _, id := range []string{"stalled", "answered", "ended"} {
		store(t, js, callSubject(id, "conversation-update"), convUpdate(id, ms, userTurn("user-1", ms)))
	}
	waitApplied(t, js, DefaultStream, DefaultDurable)
	first.sync()
	first.stop()
	if st := first.eng.Stats(); st.Armed != 3 || st.Hangs() != 0 {
		t.Fatalf("first engine Stats() = %+v, want 3 armed calls and no hang", st)
	}

	// While hangwatch is down.
	store(t, js, callSubject("answered", "conversation-update"),
		convUpdate("answered", ms+2000, userTurn("user-1", ms), replyTurn("user-1-r", ms+2000)))
	store(t, js, callSubject("ended", "end-of-call-report"), endOfCall("ended", ms+3000))

	second := startJSEngine(t, conn, now.Add(10*time.Minute), ConsumerOptions{})
	waitApplied(t, js, DefaultStream, DefaultDurable) // the live overlap too
	second.sync()
	second.stop()

	if got, want := hangSubjects(t, js), map[string]uint64{"voice.hang.team.stalled": 1}; !maps.Equal(got, want) {
		t.Errorf("hang stream holds %v, want %v", got, want)
	}
	st, err := js.Stream(testCtx(t), DefaultHangStream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetLastMsgForSubject(testCtx(t), "voice.hang.team.stalled"); err != nil || m.Header.Get(nats.MsgIdHdr) != "stalled:user-1:hang" {
		t.Errorf("hang = %v, %v; want Nats-Msg-Id stalled:user-1:hang", m, err)
	}
	if st := second.eng.Stats(); st.Hangs() != 1 || st.Resolved != 0 || st.Tombs != 1 {
		t.Errorf("second engine Stats() = %+v, want 1 hang, no resolved, 1 ended call", st)
	}
	if st := second.src.Stats(); st.Replayed != 4 {
		t.Errorf("second source replayed %d events, want 4 (3 snapshots and an end)", st.Replayed)
	}
}

// TestJetStreamRestartAfterHang restarts the engine after it published a hang: the new
// engine detects the stall again, and the hang stream drops it as a duplicate.
func TestJetStreamRestartAfterHang(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	now := time.Now()
	ms := now.UnixMilli()

	first := startJSEngine(t, conn, now, ConsumerOptions{})
	store(t, js, callSubject("stalled", "conversation-update"), convUpdate("stalled", ms, userTurn("user-1", ms)))
	waitApplied(t, js, DefaultStream, DefaultDurable)
	first.clock.Advance(2 * time.Minute)
	first.sync()
	first.stop()
	if st := first.sink.Stats(); st.Hangs != 1 || st.Duplicates != 0 {
		t.Fatalf("first sink Stats() = %+v, want 1 hang stored", st)
	}

	second := startJSEngine(t, conn, now.Add(10*time.Minute), ConsumerOptions{})
	second.sync()
	second.stop()
	if st := second.eng.Stats(); st.Hangs() != 1 {
		t.Errorf("second engine detected %d hangs, want the stall again", st.Hangs())
	}
	if st := second.sink.Stats(); st.Hangs != 1 || st.Duplicates != 1 {
		t.Errorf("second sink Stats() = %+v, want its hang dropped as a duplicate", st)
	}
	if got, want := hangSubjects(t, js), map[string]uint64{"voice.hang.team.stalled": 1}; !maps.Equal(got, want) {
		t.Errorf("hang stream holds %v, want %v", got, want)
	}
}

// TestJetStreamServerRestart restarts nats-server, same port and store, while a pipeline
// publishes calls, and while the engine has hangs to publish. Detection resumes, no
// event is lost, and every stalled call hangs exactly once in the hang stream.
func TestJetStreamServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startJetStream(t, dir, "")
	listen := listenOf(srv)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	now := time.Now()
	// A short ack wait, so that an event lost in flight with the server is delivered
	// again within the test.
	h := startJSEngine(t, conn, now, ConsumerOptions{AckWait: 2 * time.Second})

	const batchA, calls = 100, 300
	stalls := func(i int) bool { return i%3 != 0 }
	publish := func(ctx context.Context, i int) error {
		id := fmt.Sprintf("call-%03d", i)
		ms := time.Now().UnixMilli()
		turns := []chatTurn{userTurn("user-1", ms)}
		if !stalls(i) {
			turns = append(turns, replyTurn("user-1-r", ms))
		}
		_, err := js.Publish(ctx, callSubject(id, "conversation-update"), convUpdate(id, ms, turns...))
		return err
	}
	want := map[string]uint64{}
	for i := range calls {
		if stalls(i) {
			want[fmt.Sprintf("voice.hang.team.call-%03d", i)] = 1
		}
	}

	for i := range batchA {
		if err := publish(testCtx(t), i); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied(t, js, DefaultStream, DefaultDurable)

	// The pipeline keeps publishing through the restart, retrying until stored.
	var published atomic.Int64
	pubDone := make(chan struct{})
	pubCtx, stopPub := context.WithCancel(context.Background())
	t.Cleanup(func() { stopPub(); <-pubDone })
	go func() {
		defer close(pubDone)
		for i := batchA; i < calls; i++ {
			for pubCtx.Err() == nil {
				ctx, cancel := context.WithTimeout(pubCtx, time.Second)
				err := publish(ctx, i)
				cancel()
				if err == nil {
					break
				}
			}
			published.Add(1)
		}
	}()
	eventually(t, "the pipeline publishes", func() bool { return published.Load() >= 20 })
	srv.Shutdown()

	// Down: the stalls of the first calls are due, and the sink cannot publish them.
	h.clock.Advance(10 * time.Minute)
	h.sync()
	eventually(t, "the sink fails to publish and retries", func() bool { return h.sink.Stats().Errors > 0 })

	startJetStream(t, dir, listen)
	<-pubDone
	waitApplied(t, js, DefaultStream, DefaultDurable)
	h.sync()
	eventually(t, "every stall in the hang stream", func() bool { return len(hangSubjects(t, js)) == len(want) })
	h.stop()

	if got := hangSubjects(t, js); !maps.Equal(got, want) {
		var extra, missing []string
		for s, n := range got {
			if want[s] != n {
				extra = append(extra, fmt.Sprintf("%s×%d", s, n))
			}
		}
		for s := range want {
			if got[s] == 0 {
				missing = append(missing, s)
			}
		}
		slices.Sort(extra)
		slices.Sort(missing)
		t.Errorf("hang stream: %d subjects, want %d; unexpected %v, missing %v", len(got), len(want), extra, missing)
	}
	if st := h.eng.Stats(); st.Hangs() != int64(len(want)) || st.Resolved != 0 {
		t.Errorf("engine Stats() = %+v, want %d hangs, no resolved", st, len(want))
	}
	st := h.sink.Stats()
	if st.Hangs != int64(len(want)) || st.Errors == 0 || st.Unpublished != 0 {
		t.Errorf("sink Stats() = %+v, want %d hangs published after failed attempts", st, len(want))
	}
	if cs := conn.Stats(); cs.Reconnects == 0 {
		t.Errorf("conn Stats() = %+v, want a reconnection", cs)
	}
	t.Logf("source %+v", h.src.Stats())
	t.Logf("sink %+v", st)
}
