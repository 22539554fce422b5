package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/wire"
)

var (
	_ engine.Replayer = (*JetStreamSource)(nil)
	_ engine.Sink     = (*JetStreamSink)(nil)
)

// startJetStream starts an embedded server with JetStream, storing in dir, on listen
// (a random port when empty).
func startJetStream(t testing.TB, dir, listen string) *Embedded {
	t.Helper()
	return startServer(t, EmbeddedOptions{Listen: listen, JetStream: true, StoreDir: dir})
}

// listenOf returns the host:port a server listens on, to start it again there.
func listenOf(srv *Embedded) string { return strings.TrimPrefix(srv.ClientURL(), "nats://") }

// jsClient is a test's own JetStream client, as a pipeline would have; it reconnects
// quickly and forever, to ride out the server restarts of the tests.
func jsClient(t testing.TB, srv *Embedded) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func newJSSource(t testing.TB, conn *Conn, o SourceOptions, so StreamOptions, co ConsumerOptions) *JetStreamSource {
	t.Helper()
	src, err := NewJetStreamSource(testCtx(t), conn, o, so, co)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// newJSSink returns a sink that is closed when the test ends, unless the test did.
func newJSSink(t testing.TB, conn *Conn, jo JetStreamSinkOptions) *JetStreamSink {
	t.Helper()
	sink, err := NewJetStreamSink(testCtx(t), conn, SinkOptions{}, jo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = sink.Close(ctx)
	})
	return sink
}

// chatTurn is a message of a test conversation.
type chatTurn struct {
	id, role, text string
	ts             int64 // Unix ms
}

func userTurn(id string, ts int64) chatTurn { return chatTurn{id, "user", "hello?", ts} }
func replyTurn(id string, ts int64) chatTurn {
	return chatTurn{id, "assistant", "Sure, one moment.", ts}
}
func callSubject(id, typ string) string { return "voice.events." + id + "." + typ }

// convUpdate is a conversation-update of call id whose history is turns.
func convUpdate(id string, ts int64, turns ...chatTurn) []byte {
	msgs := make([]string, len(turns))
	for i, tu := range turns {
		msgs[i] = fmt.Sprintf(`{"messageId":%q,"role":%q,"text":%q,"timestamp":%d}`, tu.id, tu.role, tu.text, tu.ts)
	}
	return fmt.Appendf(nil, `{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"teamId":"team","status":"ongoing"},"assistant":{},"messages":[%s]}}`,
		ts, id, strings.Join(msgs, ","))
}

func statusUpdate(id, status string, ts int64) []byte {
	return fmt.Appendf(nil, `{"message":{"type":"status-update","timestamp":%d,"call":{"id":%q,"teamId":"team","status":%q}}}`, ts, id, status)
}

func endOfCall(id string, ts int64) []byte {
	return fmt.Appendf(nil, `{"message":{"type":"end-of-call-report","timestamp":%d,"call":{"id":%q,"teamId":"team","status":"finished"}}}`, ts, id)
}

// store publishes data through JetStream and returns its stream sequence.
func store(t testing.TB, js jetstream.JetStream, subject string, data []byte) uint64 {
	t.Helper()
	ack, err := js.Publish(testCtx(t), subject, data)
	if err != nil {
		t.Fatalf("publish on %s: %v", subject, err)
	}
	return ack.Sequence
}

// eventually polls cond, a look at a real server's state, until it holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not after %v: %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func consumerInfo(t testing.TB, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(testCtx(t), stream, name)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func streamInfo(t testing.TB, js jetstream.JetStream, name string, opts ...jetstream.StreamInfoOpt) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(testCtx(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitApplied waits until the durable has delivered everything the stream holds and
// every delivery is acknowledged: the engine has applied it all.
func waitApplied(t testing.TB, js jetstream.JetStream, stream, durable string) {
	t.Helper()
	eventually(t, "every stored event applied and acknowledged", func() bool {
		last := streamInfo(t, js, stream).State.LastSeq
		ci := consumerInfo(t, js, stream, durable)
		return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream >= last
	})
}

// hangOutput is a hang of call id, built on a fixture's payload.
func hangOutput(t testing.TB, kind detector.Kind, first string) *detector.Output {
	t.Helper()
	var ev detector.Event
	if err := wire.Decode(&ev, readFixture(t, "05-conversation-update-user-2.json"), wire.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return &detector.Output{Kind: kind, Reason: detector.ReasonTurnTimeout, UserMessageID: first, FirstUserMessageID: first,
		ReplyMessageID: first + "-r", At: time.Now().UnixNano(), Wait: 5 * time.Second, Threshold: 5 * time.Second,
		Snapshot: ev.Payload, Latest: ev.Payload}
}

// TestJetStreamStreams checks the streams and the durable: created as specified when
// missing, used as they are when they exist, and the hang stream's duplicate window.
func TestJetStreamStreams(t *testing.T) {
	t.Run("created when missing", func(t *testing.T) {
		srv := startJetStream(t, t.TempDir(), "")
		js := jsClient(t, srv)
		conn := connect(t, srv, ConnOptions{})
		newJSSource(t, conn, SourceOptions{Subjects: []string{"voice.events.>"}}, StreamOptions{MaxAge: 3 * time.Hour}, ConsumerOptions{})

		cfg := streamInfo(t, js, DefaultStream).Config
		if !slices.Equal(cfg.Subjects, []string{"voice.events.>"}) || cfg.Storage != jetstream.FileStorage ||
			cfg.MaxMsgsPerSubject != 1 || cfg.MaxAge != 3*time.Hour || cfg.Discard != jetstream.DiscardOld {
			t.Errorf("events stream config = %+v, want file storage over voice.events.>, 1 per subject, 3h, discard old", cfg)
		}
		cc := consumerInfo(t, js, DefaultStream, DefaultDurable).Config
		if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.DeliverPolicy != jetstream.DeliverNewPolicy ||
			cc.MaxAckPending < 100_000 || cc.FilterSubject != "voice.events.>" {
			t.Errorf("durable config = %+v, want explicit acks, deliver new, a large max ack pending, filtered", cc)
		}

		sink := newJSSink(t, conn, JetStreamSinkOptions{})
		hcfg := streamInfo(t, js, DefaultHangStream).Config
		if !slices.Equal(hcfg.Subjects, []string{"voice.hang.*.*", "voice.hang-resolved.*.*"}) || hcfg.Storage != jetstream.FileStorage ||
			hcfg.Duplicates != 10*time.Minute || hcfg.MaxAge != 7*24*time.Hour {
			t.Errorf("hang stream config = %+v, want file storage over the output wildcards, 10m duplicates, 7d", hcfg)
		}

		// The same stall detected twice is stored once.
		out := hangOutput(t, detector.KindHang, "user-2")
		for range 2 {
			if err := sink.Publish("call-1", out); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Close(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if st := sink.Stats(); st.Hangs != 2 || st.Duplicates != 1 {
			t.Errorf("sink Stats() = %+v, want 2 hangs acknowledged, 1 of them a duplicate", st)
		}
		if n := streamInfo(t, js, DefaultHangStream).State.Msgs; n != 1 {
			t.Errorf("hang stream holds %d messages, want 1", n)
		}
	})

	t.Run("used as they are", func(t *testing.T) {
		srv := startJetStream(t, t.TempDir(), "")
		js := jsClient(t, srv)
		conn := connect(t, srv, ConnOptions{})
		ctx := testCtx(t)
		events := jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"voice.>"}, Storage: jetstream.MemoryStorage, MaxMsgsPerSubject: 5}
		hangs := jetstream.StreamConfig{Name: "HANGS", Subjects: []string{"alerts.>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Hour}
		for _, cfg := range []jetstream.StreamConfig{events, hangs} {
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
		o := SourceOptions{Subjects: []string{"voice.events.>", "voice.legacy.>"}}
		newJSSource(t, conn, o, StreamOptions{Name: "EVENTS"}, ConsumerOptions{Durable: "hw"})
		got := streamInfo(t, js, "EVENTS").Config
		if got.Storage != jetstream.MemoryStorage || got.MaxMsgsPerSubject != 5 || !slices.Equal(got.Subjects, events.Subjects) {
			t.Errorf("existing events stream changed: %+v", got)
		}
		if cc := consumerInfo(t, js, "EVENTS", "hw").Config; !slices.Equal(cc.FilterSubjects, o.Subjects) {
			t.Errorf("durable filters on %v, want %v", cc.FilterSubjects, o.Subjects)
		}
		newJSSink(t, conn, JetStreamSinkOptions{Stream: "HANGS", Queue: 1})
		if got := streamInfo(t, js, "HANGS").Config; got.Storage != jetstream.MemoryStorage || got.Duplicates != time.Hour {
			t.Errorf("existing hang stream changed: %+v", got)
		}

		// An existing durable keeps its place and takes this run's settings.
		store(t, js, callSubject("a", "status-update"), statusUpdate("a", "ongoing", 1))
		newJSSource(t, conn, SourceOptions{Subjects: []string{"voice.events.>"}}, StreamOptions{Name: "EVENTS"}, ConsumerOptions{Durable: "hw", AckWait: time.Minute})
		ci := consumerInfo(t, js, "EVENTS", "hw")
		if ci.Config.AckWait != time.Minute || ci.Config.FilterSubject != "voice.events.>" || ci.NumPending != 1 {
			t.Errorf("resumed durable = %+v, want the new ack wait and filter, 1 event pending", ci)
		}
	})

	t.Run("short duplicate window", func(t *testing.T) {
		srv := startJetStream(t, t.TempDir(), "")
		_, err := NewJetStreamSink(testCtx(t), connect(t, srv, ConnOptions{}), SinkOptions{}, JetStreamSinkOptions{Duplicates: time.Minute})
		if !errors.Is(err, ErrJetStream) {
			t.Errorf("NewJetStreamSink() with a 1m duplicate window = %v, want ErrJetStream", err)
		}
	})
}

// TestJetStreamSinkOverlappingTemplates: when one output template's wildcard covers the
// other's, the hang stream is created over the wider alone; the server refuses a stream
// whose subjects overlap.
func TestJetStreamSinkOverlappingTemplates(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	o := SinkOptions{HangSubject: wire.MustParseSubjectTemplate("hw.{callId}"), ResolvedSubject: wire.MustParseSubjectTemplate("hw.resolved")}
	sink, err := NewJetStreamSink(testCtx(t), connect(t, srv, ConnOptions{}), o, JetStreamSinkOptions{})
	if err != nil {
		t.Fatalf("NewJetStreamSink() = %v", err)
	}
	if err := sink.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := streamInfo(t, js, DefaultHangStream).Config.Subjects; !slices.Equal(got, []string{"hw.*"}) {
		t.Errorf("hang stream subjects = %q, want [hw.*]", got)
	}
}

// held is a delivered event kept by a test, which calls Done when it chooses.
type held struct {
	received
	done func()
}

// TestJetStreamReplayThenLive checks that Replay delivers exactly the latest message of
// each subject in stream order, received at its stored time; that Run then delivers what
// is published after, also at its stored time; and that a live event is acknowledged
// only once Done is called.
func TestJetStreamReplayThenLive(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	// Three per subject, so that the stream itself does not pick the latest.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"voice.events.>"}, MaxMsgsPerSubject: 3}); err != nil {
		t.Fatal(err)
	}
	stored := []struct {
		subject string
		data    []byte
	}{
		{callSubject("a", "conversation-update"), convUpdate("a", 1, userTurn("user-1", 1))},
		{callSubject("b", "status-update"), statusUpdate("b", "queued", 2)},
		{callSubject("a", "conversation-update"), convUpdate("a", 3, userTurn("user-1", 1), replyTurn("user-1-r", 2), userTurn("user-2", 3))},
		{callSubject("b", "status-update"), statusUpdate("b", "ongoing", 4)},
		{callSubject("a", "status-update"), statusUpdate("a", "ongoing", 5)},
		{callSubject("b", "conversation-update"), convUpdate("b", 6, userTurn("user-1", 6), replyTurn("user-1-r", 6))},
		{callSubject("a", "conversation-update"), convUpdate("a", 7, userTurn("user-1", 1), replyTurn("user-1-r", 2), userTurn("user-2", 3), replyTurn("user-2-r", 7))},
	}
	seqs := make([]uint64, len(stored))
	for i, m := range stored {
		seqs[i] = store(t, js, m.subject, m.data)
	}
	st, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	storedAt := func(seq uint64) int64 {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		return m.Time.UnixNano()
	}

	src := newJSSource(t, conn, SourceOptions{DeadLetter: "voice.dead"}, StreamOptions{}, ConsumerOptions{})
	var replayed []received
	if err := src.Replay(ctx, func(ev *detector.Event) {
		replayed = append(replayed, received{ev.Type, ev.CallID, ev.Messages, ev.Received})
		ev.Done()
	}); err != nil {
		t.Fatal(err)
	}
	// The latest of each subject, in stream order: b's status (seq 4), a's status (5),
	// b's conversation (6), a's conversation (7).
	want := []received{
		{detector.TypeStatusUpdate, "b", 0, storedAt(seqs[3])},
		{detector.TypeStatusUpdate, "a", 0, storedAt(seqs[4])},
		{detector.TypeConversationUpdate, "b", 2, storedAt(seqs[5])},
		{detector.TypeConversationUpdate, "a", 4, storedAt(seqs[6])},
	}
	if !slices.Equal(replayed, want) {
		t.Errorf("Replay delivered\n%+v\nwant\n%+v", replayed, want)
	}
	if st := src.Stats(); st.Replayed != 4 || st.Acked != 0 {
		t.Errorf("Stats() after the replay = %+v, want 4 replayed, nothing acknowledged", st)
	}

	// Live: the events are held, as by an engine that is behind.
	got := make(chan held, 10)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(runCtx, func(ev *detector.Event) {
			got <- held{received{ev.Type, ev.CallID, ev.Messages, ev.Received}, ev.Done}
		})
	}()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	t.Cleanup(stop)
	eventually(t, "source ready", src.Ready)

	dead, err := conn.NATS().SubscribeSync("voice.dead")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	live := []uint64{
		store(t, js, callSubject("c", "conversation-update"), convUpdate("c", 8, userTurn("user-1", 8))),
		store(t, js, callSubject("bad", "x"), []byte("not json")),
		store(t, js, callSubject("c", "status-update"), statusUpdate("c", "ongoing", 9)),
	}
	var holds []held
	for _, w := range []received{
		{detector.TypeConversationUpdate, "c", 1, storedAt(live[0])},
		{detector.TypeStatusUpdate, "c", 0, storedAt(live[2])},
	} {
		select {
		case h := <-got:
			if h.received != w {
				t.Errorf("Run delivered %+v, want %+v", h.received, w)
			}
			holds = append(holds, h)
		case <-time.After(waitFor):
			t.Fatal("live event not delivered")
		}
	}
	if m, err := dead.NextMsg(waitFor); err != nil || m.Header.Get(HeaderBadInputReason) != wire.ReasonNotJSON.String() {
		t.Errorf("dead letter = %v, %v; want the bad event with its reason", m, err)
	}
	// Until Done, the two good events are pending; the bad one was terminated.
	eventually(t, "3 delivered, 2 pending", func() bool {
		ci := consumerInfo(t, js, DefaultStream, DefaultDurable)
		return ci.Delivered.Stream == live[2] && ci.NumAckPending == 2
	})
	if ci := consumerInfo(t, js, DefaultStream, DefaultDurable); ci.AckFloor.Stream >= live[0] {
		t.Errorf("ack floor %d before Done, want below %d", ci.AckFloor.Stream, live[0])
	}
	for _, h := range holds {
		h.done()
	}
	eventually(t, "acknowledged after Done", func() bool {
		ci := consumerInfo(t, js, DefaultStream, DefaultDurable)
		return ci.NumAckPending == 0 && ci.AckFloor.Stream == live[2]
	})
	stop()
	st2 := src.Stats()
	if st2.Acked != 3 || st2.Bad[wire.ReasonNotJSON] != 1 || st2.DeadLettered != 1 || st2.Events[detector.TypeConversationUpdate] != 3 {
		t.Errorf("Stats() = %+v, want 3 acknowledged (one terminated), 1 bad, 3 conversation-updates", st2)
	}
}

// TestJetStreamReplayEmpty checks that Replay returns at once when nothing is stored on
// its subjects.
func TestJetStreamReplayEmpty(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"voice.>"}}); err != nil {
		t.Fatal(err)
	}
	src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	deliver := func(ev *detector.Event) { t.Errorf("Replay delivered %s", ev.CallID); ev.Done() }
	if err := src.Replay(ctx, deliver); err != nil {
		t.Fatal(err)
	}
	store(t, js, "voice.other.x", statusUpdate("x", "ongoing", 1)) // outside the source's subjects
	if err := src.Replay(ctx, deliver); err != nil {
		t.Fatal(err)
	}
}

// TestJetStreamSinkClose checks that Close publishes what is queued, across an outage
// of the server and in order, and that it reports what is left when it gives up.
func TestJetStreamSinkClose(t *testing.T) {
	t.Run("drains in order", func(t *testing.T) {
		dir := t.TempDir()
		srv := startJetStream(t, dir, "")
		listen := listenOf(srv)
		conn := connect(t, srv, ConnOptions{})
		sink := newJSSink(t, conn, JetStreamSinkOptions{})
		srv.Shutdown()

		var want []string
		for i := range 20 {
			call := fmt.Sprintf("call-%02d", i)
			for _, kind := range []detector.Kind{detector.KindHang, detector.KindResolved} {
				out := hangOutput(t, kind, "user-1")
				if err := sink.Publish(call, out); err != nil {
					t.Fatal(err)
				}
				want = append(want, wire.MsgID(call, out))
			}
		}
		closed := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
			defer cancel()
			closed <- sink.Close(ctx)
		}()
		srv = startJetStream(t, dir, listen)
		if err := <-closed; err != nil {
			t.Fatalf("Close() = %v", err)
		}
		js := jsClient(t, srv)
		stream, err := js.Stream(testCtx(t), DefaultHangStream)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for seq := uint64(1); ; seq++ {
			m, err := stream.GetMsg(testCtx(t), seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Header.Get(nats.MsgIdHdr))
		}
		if !slices.Equal(got, want) {
			t.Errorf("hang stream holds, in order,\n%v\nwant\n%v", got, want)
		}
		if st := sink.Stats(); st.Hangs+st.Resolved != int64(len(want)) || st.Queued != 0 || st.Unpublished != 0 {
			t.Errorf("Stats() = %+v, want all %d published", st, len(want))
		}
	})

	t.Run("reports what is left", func(t *testing.T) {
		srv := startJetStream(t, t.TempDir(), "")
		sink := newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{})
		srv.Shutdown()
		for i := range 5 {
			if err := sink.Publish(fmt.Sprintf("call-%d", i), hangOutput(t, detector.KindHang, "user-1")); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := sink.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "5 outputs not published") {
			t.Errorf("Close() = %v, want 5 outputs not published", err)
		}
		if st := sink.Stats(); st.Unpublished != 5 {
			t.Errorf("Stats().Unpublished = %d, want 5", st.Unpublished)
		}
		if err := sink.Publish("x", hangOutput(t, detector.KindHang, "user-1")); !errors.Is(err, ErrSinkClosed) {
			t.Errorf("Publish() after Close = %v, want ErrSinkClosed", err)
		}
	})
}

// runJS runs src live until the test ends, or until it returns; every event is done
// at once.
func runJS(t *testing.T, src *JetStreamSource) (<-chan received, <-chan error) {
	t.Helper()
	got := make(chan received, 100)
	done := make(chan error, 1)
	exited := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(exited)
		done <- src.Run(ctx, func(ev *detector.Event) {
			got <- received{ev.Type, ev.CallID, ev.Messages, ev.Received}
			ev.Done()
		})
	}()
	t.Cleanup(func() { cancel(); <-exited })
	eventually(t, "source ready", src.Ready)
	return got, done
}

// TestJetStreamSourceResumes deletes the durable under a running source: when it is put
// back, the source keeps consuming; when it stays missing, Run says it is lost.
func TestJetStreamSourceResumes(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})

	t.Run("put back", func(t *testing.T) {
		src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "back"})
		got, done := runJS(t, src)
		store(t, js, callSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
		if r := next(t, got); r.callID != "c1" {
			t.Fatalf("delivered %+v, want c1", r)
		}
		cfg := consumerInfo(t, js, DefaultStream, "back").Config
		if err := js.DeleteConsumer(testCtx(t), DefaultStream, "back"); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateConsumer(testCtx(t), DefaultStream, cfg); err != nil {
			t.Fatal(err)
		}
		store(t, js, callSubject("c2", "status-update"), statusUpdate("c2", "ongoing", 2))
		select {
		case r := <-got:
			if r.callID != "c2" {
				t.Errorf("delivered %+v, want c2", r)
			}
		case err := <-done:
			t.Fatalf("Run() = %v, want it to resume", err)
		case <-time.After(waitFor):
			t.Fatal("nothing delivered after the durable was put back")
		}
		if st := src.Stats(); st.ConsumeErrors == 0 {
			t.Errorf("Stats() = %+v, want the closed consumer counted", st)
		}
	})

	t.Run("lost", func(t *testing.T) {
		src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "lost"})
		src.lostAfter = 0
		_, done := runJS(t, src)
		if err := js.DeleteConsumer(testCtx(t), DefaultStream, "lost"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, ErrDurableLost) {
				t.Errorf("Run() = %v, want ErrDurableLost", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Run() goes on without its durable")
		}
		if src.Ready() {
			t.Error("Ready() after Run returned")
		}
	})
}

// TestJetStreamSourceEndsWhenNATSClosesTheConnection is the twin of
// TestSourceEndsWhenNATSClosesTheConnection: Run ends with ErrConnClosed.
func TestJetStreamSourceEndsWhenNATSClosesTheConnection(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	conn, err := Connect(ConnOptions{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	_, done := runJS(t, src)
	// A subject over the server's control line limit is a protocol violation: the
	// server closes the connection, and nats.go does not reconnect.
	_ = conn.NATS().Publish(strings.Repeat("a", 5000), nil)
	_ = conn.NATS().Flush()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("Run() = %v, want ErrConnClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run still running on a closed connection")
	}
	if src.Ready() {
		t.Error("a source on a closed connection says it is ready")
	}
}

// TestJetStreamDrainTimeoutRunsFromCancel: the drain timeout runs from when Run's
// context is done, not from when a delivery that held the loop returns, so that it is
// one deadline with the rest of a shutdown.
func TestJetStreamDrainTimeoutRunsFromCancel(t *testing.T) {
	const drain = time.Second
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{DrainTimeout: drain}, StreamOptions{}, ConsumerOptions{})
	for i := range 50 {
		store(t, js, callSubject(fmt.Sprint("c", i), "status-update"), statusUpdate(fmt.Sprint("c", i), "ongoing", 1))
	}
	first, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(ev *detector.Event) {
			once.Do(func() { close(first); <-release }) // the engine is stuck at the signal
			time.Sleep(50 * time.Millisecond)           // then slow: the drain cannot finish
			ev.Done()
		})
	}()
	select {
	case <-first:
	case <-time.After(waitFor):
		t.Fatal("nothing delivered")
	}
	begin := time.Now()
	cancel()
	time.Sleep(900 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	// From the delivery's return, the drain would end at 1.9 s.
	if d := time.Since(begin); d > drain+500*time.Millisecond {
		t.Errorf("Run returned %v after its context was done, want about the drain timeout %v", d, drain)
	}
}

// TestJetStreamReceivedNeverAhead: an event is received at the time the server stored
// it, but never after the local clock, so that a server whose clock runs ahead cannot
// move the engine's deadlines into its future.
func TestJetStreamReceivedNeverAhead(t *testing.T) {
	srv := startJetStream(t, t.TempDir(), "")
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	local := time.Now().Add(-time.Hour) // our clock, an hour behind the server's
	src := newJSSource(t, conn, SourceOptions{Now: func() time.Time { return local }}, StreamOptions{}, ConsumerOptions{})
	store(t, js, callSubject("a", "conversation-update"), convUpdate("a", 1, userTurn("user-1", 1)))
	var got []int64
	if err := src.Replay(ctx, func(ev *detector.Event) { got = append(got, ev.Received); ev.Done() }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != local.UnixNano() {
		t.Errorf("replayed Received = %v, want the local clock %d", got, local.UnixNano())
	}
}
