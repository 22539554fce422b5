package transport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// fixtureTeam is the team of the fixtures' call, the team token of the outputs' subjects.
const fixtureTeam = "team-7a31c9"

func newJSSink(t testing.TB, conn *Conn, jo JetStreamSinkOptions) *JetStreamSink {
	t.Helper()
	sink, err := NewJetStreamSink(testCtx(t), conn, SinkOptions{}, jo)
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// runSink runs sink until the test ends; close seals it and returns Run's error once
// it has drained.
func runSink(t testing.TB, sink *JetStreamSink) (close func() error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sink.Run(ctx) }()
	close = sync.OnceValue(func() error {
		sink.Close()
		select {
		case err := <-done:
			return err
		case <-time.After(waitFor):
			cancel()
			<-done
			return errors.New("Run did not return after Close")
		}
	})
	t.Cleanup(func() {
		cancel()
		_ = close()
	})
	return close, cancel
}

// hangOutput is an output of call for the stretch that starts at first.
func hangOutput(t testing.TB, kind detector.Kind, first string) *detector.Output {
	out := fixtureOutput(t, first)
	out.Kind = kind
	if kind == detector.KindResolved {
		out.ReplyMessageID = first + "-r"
	}
	return out
}

// storedIDs returns the Nats-Msg-Id of every message of a stream, in stored order, by
// subject.
func storedIDs(t testing.TB, js jetstream.JetStream, stream string) (ids []string, subjects []string) {
	t.Helper()
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	last := streamInfo(t, js, stream).State.LastSeq
	for seq := uint64(1); seq <= last; seq++ {
		m, err := st.GetMsg(testCtx(t), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get(nats.MsgIdHdr))
		subjects = append(subjects, m.Subject)
	}
	return ids, subjects
}

// listen subscribes a plain client to subject; the function it returns collects what
// arrived since the last call: each output's Nats-Msg-Id, and how many times.
func listen(t testing.TB, srv *testServer, subject string) func() map[string]int {
	t.Helper()
	nc := plainClient(t, srv)
	sub := subscribe(t, nc, subject)
	return func() map[string]int {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for {
			m, err := sub.NextMsg(0)
			if err != nil {
				return got
			}
			got[m.Header.Get(nats.MsgIdHdr)]++
		}
	}
}

// TestJetStreamSinkExactlyOnce: a plain subscriber of the outputs' subjects receives
// each output once, though it is published twice by one sink and once more by another
// on its own connection, at the same time; the stream stores each once, under
// hangwatch.out.
func TestJetStreamSinkExactlyOnce(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	received := listen(t, srv, "voice.hang.>")
	sinks := []*JetStreamSink{newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{}),
		newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{})}
	closers := make([]func() error, len(sinks))
	for i, s := range sinks {
		closers[i], _ = runSink(t, s)
	}

	const calls = 20
	want := map[string]int{}
	var wg sync.WaitGroup
	for i, publishes := range []int{2, 1} {
		wg.Go(func() {
			for c := range calls {
				for range publishes {
					if err := sinks[i].Publish(fmt.Sprint("call-", c), hangOutput(t, detector.KindHang, "user-2")); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	for c := range calls {
		want[fmt.Sprintf("call-%d:user-2:hang", c)] = 1
	}
	wg.Wait()
	for _, c := range closers {
		if err := c(); err != nil {
			t.Fatalf("Run() = %v", err)
		}
	}

	if got := received(); !maps.Equal(got, want) {
		t.Errorf("the subscriber received %v, want each output once: %v", got, want)
	}
	ids, subjects := storedIDs(t, js, DefaultHangStream)
	if len(ids) != calls {
		t.Errorf("the hang stream holds %d outputs, want %d", len(ids), calls)
	}
	for _, s := range subjects {
		if !strings.HasPrefix(s, StorePrefix+".voice.hang."+fixtureTeam+".call-") {
			t.Errorf("an output stored on %s, want it under %s", s, StorePrefix)
		}
	}
	var published, duplicates int64
	for _, s := range sinks {
		st := s.Stats()
		published += st.Published[detector.KindHang]
		duplicates += st.Duplicates
	}
	if published != 3*calls || duplicates != 2*calls {
		t.Errorf("sinks acknowledged %d outputs, %d of them duplicates; want %d and %d", published, duplicates, 3*calls, 2*calls)
	}
}

// TestJetStreamSinkStreamLayout: the hang stream is created over the outputs'
// wildcards under hangwatch.out, and republishes on their own subjects; a hang stream of
// hangwatch v1, on the outputs' own subjects, is updated to that layout, and what it
// stored stays.
func TestJetStreamSinkStreamLayout(t *testing.T) {
	wildcards := SinkOptions{}.Wildcards()
	stored := make([]string, len(wildcards))
	for i, w := range wildcards {
		stored[i] = StorePrefix + "." + w
	}
	check := func(t *testing.T, js jetstream.JetStream) {
		t.Helper()
		cfg := streamInfo(t, js, DefaultHangStream).Config
		if !slices.Equal(cfg.Subjects, stored) || cfg.RePublish == nil || cfg.RePublish.Source != StorePrefix+".*.>" ||
			cfg.RePublish.Destination != "{{wildcard(1)}}.>" || !cfg.AllowDirect {
			t.Errorf("hang stream config = %+v (republish %+v), want it over %v, republished", cfg, cfg.RePublish, stored)
		}
	}

	t.Run("created", func(t *testing.T) {
		srv := startJetStream(t)
		js := jsClient(t, srv)
		newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{})
		check(t, js)
		cfg := streamInfo(t, js, DefaultHangStream).Config
		if cfg.Duplicates != DefaultDuplicates || cfg.MaxAge != DefaultHangMaxAge || cfg.Storage != jetstream.FileStorage {
			t.Errorf("hang stream config = %+v, want the default duplicate window and age, on file", cfg)
		}
	})

	t.Run("v1 stream updated", func(t *testing.T) {
		srv := startJetStream(t)
		js := jsClient(t, srv)
		if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: DefaultHangStream, Subjects: wildcards,
			Duplicates: time.Hour, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
		old := nats.NewMsg("voice.hang." + fixtureTeam + ".old")
		old.Header.Set(nats.MsgIdHdr, "old:user-1:hang")
		if _, err := js.PublishMsg(testCtx(t), old); err != nil {
			t.Fatal(err)
		}
		conn := connect(t, srv, ConnOptions{})
		sink := newJSSink(t, conn, JetStreamSinkOptions{})
		check(t, js)
		if cfg := streamInfo(t, js, DefaultHangStream).Config; cfg.Duplicates != time.Hour {
			t.Errorf("the update changed the duplicate window to %v", cfg.Duplicates)
		}
		received := listen(t, srv, "voice.hang.>")
		closeSink, _ := runSink(t, sink)
		if err := sink.Publish("call-1", hangOutput(t, detector.KindHang, "user-2")); err != nil {
			t.Fatal(err)
		}
		if err := closeSink(); err != nil {
			t.Fatal(err)
		}
		if got, want := received(), map[string]int{"call-1:user-2:hang": 1}; !maps.Equal(got, want) {
			t.Errorf("the subscriber received %v, want %v", got, want)
		}
		if ids, _ := storedIDs(t, js, DefaultHangStream); !slices.Equal(ids, []string{"old:user-1:hang", "call-1:user-2:hang"}) {
			t.Errorf("the hang stream holds %v, want the v1 output and the new one", ids)
		}
	})

	t.Run("short duplicate window refused", func(t *testing.T) {
		srv := startJetStream(t)
		_, err := NewJetStreamSink(testCtx(t), connect(t, srv, ConnOptions{}), SinkOptions{}, JetStreamSinkOptions{Duplicates: time.Minute})
		if !errors.Is(err, ErrJetStream) {
			t.Errorf("NewJetStreamSink() with a 1m duplicate window = %v, want ErrJetStream", err)
		}
	})
}

// TestJetStreamSinkRebuilt: an output of a call rebuilt from stored state is not
// published when the stream shows it went out already, even after the duplicate window
// has passed: its own Nats-Msg-Id is the last on its subject, or a stretch armed later
// is. Otherwise it is published.
func TestJetStreamSinkRebuilt(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	// A hang stream with the least duplicate window the server takes, so that the test
	// can outlast it: only the check can then hold a second output back.
	if _, err := js.CreateStream(testCtx(t), HangStreamConfig(DefaultHangStream, SinkOptions{}.Wildcards(),
		JetStreamSinkOptions{Duplicates: 100 * time.Millisecond, MaxAge: time.Hour, Replicas: 1})); err != nil {
		t.Fatal(err)
	}
	sink := newJSSink(t, conn, JetStreamSinkOptions{})
	received := listen(t, srv, "voice.hang.>")
	subject := func(call string) string { return StorePrefix + ".voice.hang." + fixtureTeam + "." + call }
	armedOf := func(out *detector.Output) int64 { return time.Unix(0, out.Wall-(out.At-out.Armed)).UnixMilli() }

	// What an earlier run published, long ago.
	earlier := func(call, first string, armed int64) {
		m := nats.NewMsg(subject(call))
		m.Header.Set(nats.MsgIdHdr, call+":"+first+":hang")
		m.Header.Set(HeaderArmed, strconv.FormatInt(armed, 10))
		m.Data = []byte(`{}`)
		if _, err := js.PublishMsg(testCtx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	out := hangOutput(t, detector.KindHang, "user-2")
	armed := armedOf(out)
	earlier("same", "user-2", armed)
	earlier("later", "user-5", armed+60_000)
	earlier("older", "user-1", armed-60_000)
	probe := nats.NewMsg(StorePrefix + ".voice.hang.probe.probe")
	probe.Header.Set(nats.MsgIdHdr, "probe")
	if _, err := js.PublishMsg(testCtx(t), probe); err != nil {
		t.Fatal(err)
	}
	// The duplicate window passes, for the probe stored last and so for the others.
	eventually(t, "the duplicate window passed", func() bool {
		ack, err := js.PublishMsg(testCtx(t), probe)
		return err == nil && !ack.Duplicate
	})
	before := streamInfo(t, js, DefaultHangStream).State.Msgs
	received() // what the earlier ones republished

	closeSink, _ := runSink(t, sink)
	for _, call := range []string{"same", "later", "older", "new"} {
		o := hangOutput(t, detector.KindHang, "user-2")
		o.At, o.Wall, o.Armed = out.At, out.Wall, out.Armed
		o.Rebuilt = true
		if err := sink.Publish(call, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeSink(); err != nil {
		t.Fatal(err)
	}
	if got, want := received(), map[string]int{"older:user-2:hang": 1, "new:user-2:hang": 1}; !maps.Equal(got, want) {
		t.Errorf("the subscriber received %v, want %v", got, want)
	}
	if after := streamInfo(t, js, DefaultHangStream).State.Msgs; after != before+2 {
		t.Errorf("the hang stream holds %d outputs, want %d", after, before+2)
	}
	if st := sink.Stats(); st.AlreadyOut != 2 || st.Published[detector.KindHang] != 2 || st.Duplicates != 0 {
		t.Errorf("Stats() = %+v, want 2 already out, 2 published", st)
	}
}

// TestJetStreamSinkInOrder: Run publishes asynchronously through a small window, in
// order; Close makes it return once everything queued is stored.
func TestJetStreamSinkInOrder(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	sink := newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{Window: 4, Queue: 1000})
	var want []string
	for i := range 200 {
		call := fmt.Sprintf("call-%03d", i)
		for _, kind := range []detector.Kind{detector.KindHang, detector.KindResolved} {
			out := hangOutput(t, kind, "user-1")
			if err := sink.Publish(call, out); err != nil {
				t.Fatal(err)
			}
			want = append(want, wire.MsgID(call, out))
		}
	}
	closeSink, _ := runSink(t, sink)
	if err := closeSink(); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if got, _ := storedIDs(t, js, DefaultHangStream); !slices.Equal(got, want) {
		t.Errorf("the hang stream holds, in order,\n%v\nwant\n%v", got, want)
	}
	st := sink.Stats()
	if st.Published[detector.KindHang]+st.Published[detector.KindResolved] != int64(len(want)) || st.Queued != 0 || st.InFlight != 0 || st.Unpublished != 0 {
		t.Errorf("Stats() = %+v, want all %d published", st, len(want))
	}
	if err := sink.Publish("late", hangOutput(t, detector.KindHang, "user-1")); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Publish() after Close = %v, want ErrSinkClosed", err)
	}
}

// TestJetStreamSinkGivesUp: when Run's context is done before the stream could take
// what is queued (the server is down), Run returns at once and says how many outputs
// were not published.
func TestJetStreamSinkGivesUp(t *testing.T) {
	srv := startJetStream(t)
	sink := newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{})
	srv.stop()
	for i := range 5 {
		if err := sink.Publish(fmt.Sprint("call-", i), hangOutput(t, detector.KindHang, "user-1")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := sink.Run(ctx)
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Run returned %v after it began, its context done after 200ms", took)
	}
	if err == nil || !strings.Contains(err.Error(), "5 outputs not published") {
		t.Errorf("Run() = %v, want 5 outputs not published", err)
	}
	if st := sink.Stats(); st.Unpublished != 5 || st.Queued != 0 {
		t.Errorf("Stats() = %+v, want 5 unpublished, none queued", st)
	}
	// Nothing publishes any more: a later output is refused, not queued for no one.
	if err := sink.Publish("call-late", hangOutput(t, detector.KindHang, "user-1")); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Publish() after Run gave up = %v, want ErrSinkClosed", err)
	}
}

// TestJetStreamSinkServerRestart: outputs published while the server restarts on the
// same store are all stored, each once.
func TestJetStreamSinkServerRestart(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	sink := newJSSink(t, connect(t, srv, ConnOptions{}), JetStreamSinkOptions{})
	closeSink, _ := runSink(t, sink)
	const calls = 300
	var published atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range calls {
			if err := sink.Publish(fmt.Sprintf("call-%03d", i), hangOutput(t, detector.KindHang, "user-1")); err != nil {
				t.Error(err)
			}
			published.Add(1)
			if i%10 == 0 {
				time.Sleep(time.Millisecond) // a steady flow, not one burst
			}
		}
	}()
	eventually(t, "a third published", func() bool { return published.Load() > calls/3 })
	srv.restart(t)
	<-done
	if err := closeSink(); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	ids, _ := storedIDs(t, js, DefaultHangStream)
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for i := range calls {
		if id := fmt.Sprintf("call-%03d:user-1:hang", i); seen[id] != 1 {
			t.Errorf("%s stored %d times, want once", id, seen[id])
		}
	}
	st := sink.Stats()
	t.Logf("sink %+v", st)
	if st.Unpublished != 0 || st.Dropped != 0 {
		t.Errorf("Stats() = %+v, want nothing lost", st)
	}
}

// TestJetStreamSinkUnansweredPublishes: publications the stream never answers (as when
// it has lost its leader) time out together, not one after the other: once the stream
// answers again, everything queued is stored within a few seconds.
func TestJetStreamSinkUnansweredPublishes(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	sink := newJSSink(t, conn, JetStreamSinkOptions{})
	cfg := streamInfo(t, js, DefaultHangStream).Config
	if err := js.DeleteStream(testCtx(t), DefaultHangStream); err != nil {
		t.Fatal(err)
	}
	// Someone listens on the stored subjects, and never answers.
	silent := subscribe(t, plainClient(t, srv), StorePrefix+".>")
	closeSink, _ := runSink(t, sink)
	const n = 20
	for i := range n {
		if err := sink.Publish(fmt.Sprint("call-", i), hangOutput(t, detector.KindHang, "user-1")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every output sent", func() bool {
		n, _, _ := silent.Pending()
		return n == 20
	})
	if _, err := js.CreateStream(testCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	if err := silent.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	eventually(t, "every output stored", func() bool { return streamInfo(t, js, DefaultHangStream).State.Msgs == n })
	t.Logf("stored %v after the stream was back", time.Since(back))
	if err := closeSink(); err != nil {
		t.Fatal(err)
	}
}

// TestJetStreamSinkCloseWhilePublishing: an output whose Publish returned nil is
// published, however Close and Publish interleave. The race is narrow: the test tries
// many times.
func TestJetStreamSinkCloseWhilePublishing(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{JetStream: true, StoreDir: t.TempDir()})
	conn := connect(t, srv, ConnOptions{})
	sink := newJSSink(t, conn, JetStreamSinkOptions{})
	for round := range 2000 {
		sink := &JetStreamSink{core: sink.core, js: sink.js, st: sink.st, stream: sink.stream, window: sink.window,
			log: sink.log, limited: sink.limited, queue: make(chan queued, 4), stop: make(chan struct{}), sealed: make(chan struct{})}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		done := make(chan error, 1)
		go func() { done <- sink.Run(ctx) }()
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				if sink.Publish(fmt.Sprintf("r%d-g%d", round, g), hangOutput(t, detector.KindHang, "user-1")) == nil {
					accepted.Add(1)
				}
			})
		}
		sink.Close()
		wg.Wait()
		err := <-done
		cancel()
		if err != nil {
			t.Fatalf("round %d: Run() = %v", round, err)
		}
		if st := sink.Stats(); st.Published[detector.KindHang] != accepted.Load() {
			t.Fatalf("round %d: %d outputs accepted, %d published (%+v)", round, accepted.Load(), st.Published[detector.KindHang], st)
		}
	}
}

// rebuiltAfterStored stores an output in the hang stream under storedID, armed
// armedLater after the stretch of a hang of call callID, on the subject both take with
// a template without {callId}; then it publishes that hang, rebuilt, through a new
// sink, and returns what a subscriber got of it and the sink's stats.
func rebuiltAfterStored(t *testing.T, storedID string, armedLater time.Duration, callID string) (map[string]int, JetStreamSinkStats) {
	t.Helper()
	srv := startJetStream(t)
	js := jsClient(t, srv)
	o := SinkOptions{HangSubject: wire.MustParseSubjectTemplate("alerts.hang.{teamId}")}
	sink, err := NewJetStreamSink(testCtx(t), connect(t, srv, ConnOptions{}), o, JetStreamSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	received := listen(t, srv, "alerts.hang.>")
	out := hangOutput(t, detector.KindHang, "user-2")
	armed := time.Unix(0, out.Wall-(out.At-out.Armed)).Add(armedLater).UnixMilli()
	stored := nats.NewMsg(StorePrefix + ".alerts.hang." + fixtureTeam)
	stored.Header.Set(nats.MsgIdHdr, storedID)
	stored.Header.Set(HeaderArmed, strconv.FormatInt(armed, 10))
	if _, err := js.PublishMsg(testCtx(t), stored); err != nil {
		t.Fatal(err)
	}
	received()

	closeSink, _ := runSink(t, sink)
	out.Rebuilt = true
	if err := sink.Publish(callID, out); err != nil {
		t.Fatal(err)
	}
	if err := closeSink(); err != nil {
		t.Fatal(err)
	}
	return received(), sink.Stats()
}

// TestJetStreamSinkRebuiltSharedSubject: with a subject template without {callId}, the
// last output on a rebuilt output's subject may be another call's: a stretch of another
// call armed later says nothing of this one, which is published.
func TestJetStreamSinkRebuiltSharedSubject(t *testing.T) {
	got, st := rebuiltAfterStored(t, "other:user-9:hang", time.Minute, "c1")
	if want := map[string]int{"c1:user-2:hang": 1}; !maps.Equal(got, want) {
		t.Errorf("the subscriber received %v, want %v", got, want)
	}
	if st.AlreadyOut != 0 {
		t.Errorf("Stats() = %+v, want nothing held back", st)
	}
}

// TestJetStreamSinkRebuiltEncodedCallID: the hang stream's last output on a subject is a
// later stretch's of the same call, whose id MsgID percent-encodes (a ':' in it): a
// rebuilt output of an earlier stretch of that call went out before, and is held back.
func TestJetStreamSinkRebuiltEncodedCallID(t *testing.T) {
	got, st := rebuiltAfterStored(t, "x%3Ay:user-9:hang", time.Minute, "x:y")
	if len(got) != 0 {
		t.Errorf("the subscriber received %v, want nothing: a later stretch of the call went out", got)
	}
	if st.AlreadyOut != 1 {
		t.Errorf("Stats() = %+v, want one held back as already out", st)
	}
}

// TestJetStreamSinkRebuiltLegacyMsgID: SPEC §3 "Exactly once ... across restarts". A
// hang went out before an upgrade under the Nats-Msg-Id earlier versions gave it,
// unencoded, as NATS carried it in a header (a line break made a space, a leading space
// trimmed). The upgraded instance rebuilds the call and detects the same stall late,
// under the encoded id ("x%3Ay:user-2:hang"): the hang stream's check knows the earlier
// form, and the subscriber does not get it twice.
func TestJetStreamSinkRebuiltLegacyMsgID(t *testing.T) {
	for _, callID := range []string{"x:y", "call\nE", " lead"} {
		t.Run(strconv.Quote(callID), func(t *testing.T) {
			// As versions before the encoding wrote it.
			if got, _ := rebuiltAfterStored(t, callID+":user-2:hang", 0, callID); len(got) != 0 {
				t.Errorf("the subscriber received %v again, want nothing: this hang went out before the upgrade", got)
			}
		})
	}
}
