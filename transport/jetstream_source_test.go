package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/wire"
)

func newJSSource(t testing.TB, conn *Conn, o SourceOptions, so StreamOptions, co ConsumerOptions) *JetStreamSource {
	t.Helper()
	if o.ProbeEvery == 0 {
		o.ProbeEvery = noProbes
	}
	src, err := NewJetStreamSource(testCtx(t), conn, o, so, co)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// store publishes data through JetStream, retrying while the server is away, and
// returns its stream sequence.
func store(t testing.TB, js jetstream.JetStream, subject string, data []byte) uint64 {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ack, err := js.Publish(ctx, subject, data)
		cancel()
		if err == nil {
			return ack.Sequence
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish on %s: %v", subject, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedAt returns when the stream stored the message of sequence seq.
func storedAt(t testing.TB, js jetstream.JetStream, stream string, seq uint64) time.Time {
	t.Helper()
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(testCtx(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Time
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

// messages returns the messages of es, without their marks and controls.
func messages(es []entry) []entry {
	var ms []entry
	for _, e := range es {
		if isMessage(e) {
			ms = append(ms, e)
		}
	}
	return ms
}

// TestJetStreamSourceReplayThenLive: Run rebuilds the calls under a hold from the latest
// stored message of each subject, in stream order, each received at its stored time;
// then it delivers live, in order, each delivery a mark at its stored time; a live event
// is acknowledged once done, a bad one dead-lettered and terminated; a proof marks once
// nothing is pending.
func TestJetStreamSourceReplayThenLive(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	// Every message kept, so that the stream itself does not pick the latest: a replay of
	// a stream that keeps all reads the latest of each subject (replayPolicy).
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"voice.events.>"}}); err != nil {
		t.Fatal(err)
	}
	stored := []struct{ subject, data string }{
		{eventSubject("a", "conversation-update"), string(convUpdate("a", 1, userTurn("user-1", 1)))},
		{eventSubject("b", "status-update"), string(statusUpdate("b", "queued", 2))},
		{eventSubject("a", "conversation-update"), string(convUpdate("a", 3, userTurn("user-1", 1), replyTurn("user-1-r", 2), userTurn("user-2", 3)))},
		{eventSubject("b", "status-update"), string(statusUpdate("b", "ongoing", 4))},
		{eventSubject("a", "status-update"), string(statusUpdate("a", "ongoing", 5))},
		{eventSubject("b", "conversation-update"), string(convUpdate("b", 6, userTurn("user-1", 6), replyTurn("user-1-r", 6)))},
		{eventSubject("a", "conversation-update"), string(convUpdate("a", 7, userTurn("user-1", 1), replyTurn("user-1-r", 2), userTurn("user-2", 3), replyTurn("user-2-r", 7)))},
	}
	seqs := make([]uint64, len(stored))
	for i, m := range stored {
		seqs[i] = store(t, js, m.subject, []byte(m.data))
	}

	src := newJSSource(t, conn, SourceOptions{DeadLetter: "voice.dead"}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	es := rec.wait(t, "the replay", func(es []entry) bool { return indexOf(es, 0, func(e entry) bool { return e.kind == kindRelease }) >= 0 })
	// The latest of each subject, in stream order: b's status (4), a's status (5), b's
	// conversation (6), a's conversation (7).
	var want []entry
	want = append(want, entry{kind: kindHold})
	for _, i := range []int{3, 4, 5, 6} {
		want = append(want, entry{kind: kindDeliver, data: stored[i].data, at: storedAt(t, js, DefaultStream, seqs[i]), stored: true})
	}
	want = append(want, entry{kind: kindRelease})
	if !sameEntries(es, want) {
		t.Errorf("replay:\n%swant\n%s", dump(es), dump(want))
	}
	eventually(t, "live", src.Ready)

	dead := subscribe(t, plainClient(t, srv), "voice.dead")
	live := []struct{ subject, data string }{
		{eventSubject("c", "conversation-update"), string(convUpdate("c", 8, userTurn("user-1", 8)))},
		{eventSubject("bad", "x"), "not json"},
		{eventSubject("c", "status-update"), string(statusUpdate("c", "ongoing", 9))},
	}
	start := len(es)
	want = nil
	for _, m := range live {
		seq := store(t, js, m.subject, []byte(m.data))
		want = append(want, entry{kind: kindOrdered, data: m.data, at: storedAt(t, js, DefaultStream, seq), stored: true})
	}
	es = rec.wait(t, "the live events", func(es []entry) bool { return len(messages(es[start:])) == len(live) })
	if got := messages(es[start:]); !sameEntries(got, want) {
		t.Errorf("live:\n%swant\n%s", dump(got), dump(want))
	}
	if m, err := dead.NextMsg(waitFor); err != nil || m.Header.Get(HeaderBadInputReason) != wire.RejectNotJSON.String() {
		t.Errorf("dead letter = %v, %v; want the bad event with its reason", m, err)
	}
	eventually(t, "every live event acknowledged", func() bool {
		ci := consumerInfo(t, js, DefaultStream, DefaultDurable)
		return ci.NumAckPending == 0 && ci.NumPending == 0 && ci.AckFloor.Stream == ci.Delivered.Stream
	})

	start = rec.len()
	before := time.Now()
	src.Probe()
	rec.waitMark(t, start, before)
	st := src.Stats()
	if st.Replayed != 4 || st.Acked != 3 || st.Bad[wire.RejectNotJSON] != 1 || st.DeadLettered != 1 || st.LostDeliveries != 0 {
		t.Errorf("Stats() = %+v, want 4 replayed, 3 acknowledged (one terminated), 1 bad", st)
	}
}

// sameEntries compares entries by kind, data, times and stored.
func sameEntries(a, b []entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].kind != b[i].kind || a[i].data != b[i].data || !a[i].at.Equal(b[i].at) || !a[i].to.Equal(b[i].to) || a[i].stored != b[i].stored {
			return false
		}
	}
	return true
}

// TestJetStreamSourceProofAfterDeliveries: a proof whose answer counts deliveries the
// engine has not been handed yet marks only once they are.
func TestJetStreamSourceProofAfterDeliveries(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)

	rec.hold() // the engine is behind
	for i := range 3 {
		call := fmt.Sprint("c", i)
		store(t, js, eventSubject(call, "status-update"), statusUpdate(call, "ongoing", 1))
	}
	select {
	case <-rec.waiting:
	case <-time.After(waitFor):
		t.Fatal("nothing delivered")
	}
	eventually(t, "all three delivered by the server", func() bool {
		return consumerInfo(t, js, DefaultStream, DefaultDurable).Delivered.Consumer == 3
	})
	start := rec.len()
	before := time.Now()
	src.Probe()
	rec.release()
	i := rec.waitMark(t, start, before)
	if got := len(messages(rec.all()[:i])); got != 3 {
		t.Errorf("marked after %d deliveries, want all 3 the server had delivered:\n%s", got, dump(rec.all()))
	}
}

// TestJetStreamSourceProofAfterResume: a durable that delivered to an engine before
// (a restart) is proved caught up without any new delivery: the deliveries it counts
// went to the previous engine. One that holds unacknowledged deliveries gives no mark
// until they have come again and been applied.
func TestJetStreamSourceProofAfterResume(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	first := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "resumed"})
	rec := newRecorder()
	stop, _ := run(t, first, rec)
	eventually(t, "live", first.Ready)
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
	rec.wait(t, "c1", func(es []entry) bool { return len(messages(es)) == 1 })
	eventually(t, "acknowledged", func() bool { return consumerInfo(t, js, DefaultStream, "resumed").AckFloor.Stream == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	second := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "resumed"})
	rec = newRecorder()
	run(t, second, rec)
	eventually(t, "live", second.Ready)
	start := rec.len()
	before := time.Now()
	second.Probe()
	rec.waitMark(t, start, before)

	// Unacknowledged: a third source would get no mark until the delivery comes again.
	rec.hold()
	store(t, js, eventSubject("c2", "status-update"), statusUpdate("c2", "ongoing", 2))
	select {
	case <-rec.waiting:
	case <-time.After(waitFor):
		t.Fatal("nothing delivered")
	}
	if info := consumerInfo(t, js, DefaultStream, "resumed"); info.NumAckPending != 1 {
		t.Fatalf("ack pending %d, want 1", info.NumAckPending)
	}
	third := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "resumed"})
	third.mu.Lock()
	lossTo := third.lossTo
	third.mu.Unlock()
	if lossTo != 2 {
		t.Errorf("resumed with the delivery of stream sequence 2 unacknowledged, marks wait for the ack floor to reach %d, want 2", lossTo)
	}
	rec.release()
}

// TestJetStreamSourceProofAtServerTime: a proof marks no later than the server's clock
// when it answered, since stored times are read from that clock: with a local clock
// ahead of the server's, a mark at the local time would cover messages the server
// stores after it.
func TestJetStreamSourceProofAtServerTime(t *testing.T) {
	srv := startJetStream(t)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{Now: ahead}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)
	src.Probe()
	i := rec.waitMark(t, 0, time.Time{})
	if mark := rec.all()[i].at; mark.After(time.Now()) {
		t.Errorf("proof marked at %v, after the server's clock (the local one is an hour ahead)", mark)
	}
}

// TestJetStreamSourceStoredAfterClock: a message stored at a time after the engine's
// clock (a server whose clock runs ahead) says so, received at its stored time; the
// engine's time line takes it as its now, so that it cannot move deadlines into the
// engine's future.
func TestJetStreamSourceStoredAfterClock(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	local := clockwork.NewFakeClockAt(time.Now().Add(-time.Hour)) // an hour behind the server
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{Now: local.Now}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)
	seq := store(t, js, eventSubject("a", "status-update"), statusUpdate("a", "ongoing", 1))
	es := messages(rec.wait(t, "the event", func(es []entry) bool { return len(messages(es)) == 1 }))
	if at := storedAt(t, js, DefaultStream, seq); !es[0].at.Equal(at) || !es[0].stored {
		t.Fatalf("Received() = %v, %v; want the stored time %v", es[0].at, es[0].stored, at)
	}
	mono := clock.NewMono(local)
	if at, wall := mono.Of(es[0].at); at != mono.Now() || wall != local.Now().UnixNano() {
		t.Errorf("engine time of the stored time = %d (wall %d), want the clock's now %d", at, wall, mono.Now())
	}
}

// TestJetStreamSourceLostDelivery: a delivery that never reaches the source (here taken
// by another client of the durable, which does not acknowledge it) shows as a gap in the
// consumer sequence: the deliveries after it are no marks, and proofs give none, until
// the lost one is delivered again and acknowledged.
func TestJetStreamSourceLostDelivery(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{}, StreamOptions{}, ConsumerOptions{AckWait: time.Second})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)
	eventually(t, "the source pulls", func() bool { return consumerInfo(t, js, DefaultStream, DefaultDurable).NumWaiting == 1 })

	// A thief's pull waits behind the source's: the server serves them in turn.
	thief, err := js.Consumer(testCtx(t), DefaultStream, DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	stolen := make(chan string, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		batch, err := thief.Fetch(1, jetstream.FetchMaxWait(waitFor))
		if err != nil {
			stolen <- err.Error()
			return
		}
		for m := range batch.Messages() {
			stolen <- string(m.Data()) // never acknowledged
		}
		close(stolen)
	})
	eventually(t, "the thief pulls", func() bool { return consumerInfo(t, js, DefaultStream, DefaultDurable).NumWaiting == 2 })

	data := make([]string, 3)
	for i := range data {
		call := fmt.Sprint("c", i)
		data[i] = string(statusUpdate(call, "ongoing", 1))
		store(t, js, eventSubject(call, "status-update"), []byte(data[i]))
		if i == 0 {
			rec.wait(t, "the first event", func(es []entry) bool { return len(messages(es)) == 1 })
		}
	}
	if got := <-stolen; got != data[1] {
		t.Fatalf("the thief got %q, want the second event", got)
	}
	es := rec.wait(t, "the third event", func(es []entry) bool { return len(messages(es)) == 2 })
	third := indexOf(es, 0, func(e entry) bool { return e.data == data[2] })
	if ms := messages(es); ms[0].kind != kindOrdered || ms[1].data != data[2] || ms[1].kind != kindDeliver {
		t.Errorf("deliveries:\n%swant the first ordered, the third after the loss unordered", dump(es))
	}
	// Until the second comes again, proofs mark nothing.
	for range 3 {
		probes := src.Stats().Probes
		src.Probe()
		eventually(t, "a proof", func() bool { return src.Stats().Probes > probes })
	}
	es = rec.wait(t, "the lost event again", func(es []entry) bool { return len(messages(es)) == 3 })
	again := indexOf(es, 0, func(e entry) bool { return e.data == data[1] })
	if m := indexOf(es, third, isMark); m >= 0 && m < again {
		t.Errorf("marked while a delivery was lost:\n%s", dump(es))
	}
	if es[again].kind != kindDeliver || !es[again].stored {
		t.Errorf("the lost event came again as %v, want an unordered delivery at its stored time", es[again])
	}
	// Once it is acknowledged, proofs mark again.
	eventually(t, "a mark after the lost delivery came again", func() bool {
		src.Probe()
		return indexOf(rec.all(), again, isMark) >= 0
	})
	if st := src.Stats(); st.LostDeliveries != 1 || st.Redelivered != 1 {
		t.Errorf("Stats() = %+v, want 1 lost delivery, redelivered", st)
	}
}

// TestJetStreamSourceServerRestart: across a restart of the server on the same store,
// nothing is marked while it is down, and the source resumes consuming from where it
// stood: every event stored before and after arrives once, in order.
func TestJetStreamSourceServerRestart(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)
	var want []string
	put := func(i int) {
		call := fmt.Sprint("c", i)
		data := statusUpdate(call, "ongoing", int64(i))
		store(t, js, eventSubject(call, "status-update"), data)
		want = append(want, string(data))
	}
	for i := range 3 {
		put(i)
	}
	rec.wait(t, "the events before the restart", func(es []entry) bool { return len(messages(es)) == 3 })

	srv.stop()
	eventually(t, "disconnected", func() bool { return !conn.NATS().IsConnected() })
	start := rec.len()
	errs := src.Stats().ProbeErrors
	src.Probe()
	eventually(t, "a proof tried while down", func() bool { return src.Stats().ProbeErrors > errs })
	if es := rec.all()[start:]; count(es, isMark) != 0 {
		t.Fatalf("marked while the server was down:\n%s", dump(es))
	}
	upAt := time.Now()
	srv.start(t)
	for i := 3; i < 6; i++ {
		put(i)
	}
	es := rec.wait(t, "the events after the restart", func(es []entry) bool { return len(messages(es)) >= 6 })
	t.Logf("consuming again %v after the server was back", time.Since(upAt))
	var got []string
	for _, e := range messages(es) {
		got = append(got, e.data)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered\n%q\nwant\n%q", got, want)
	}
	before := time.Now()
	eventually(t, "a mark after the restart", func() bool {
		src.Probe()
		return indexOf(rec.all(), start, func(e entry) bool { return e.kind == kindMark && !e.at.Before(before) }) >= 0
	})
	t.Logf("source %+v", src.Stats())
}

// TestJetStreamSourceAbandon: Abandon deletes the durable a source created for a start
// that failed, and not one that existed before.
func TestJetStreamSourceAbandon(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})

	created := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "fresh"})
	created.Abandon(testCtx(t))
	if _, err := js.Consumer(testCtx(t), DefaultStream, "fresh"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the durable the source created is still there after Abandon: %v", err)
	}

	newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "kept"})
	existing := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "kept"})
	existing.Abandon(testCtx(t))
	if _, err := js.Consumer(testCtx(t), DefaultStream, "kept"); err != nil {
		t.Errorf("Abandon deleted a durable that existed before: %v", err)
	}

	// Created by this source, but another instance (which created it at the same
	// moment) already consumes from it: left in place.
	shared := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "shared"})
	cons, err := js.Consumer(testCtx(t), DefaultStream, "shared")
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	if _, err := js.Publish(testCtx(t), "voice.events.c1.status-update", statusUpdate("c1", "ongoing", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := it.Next(jetstream.NextMaxWait(waitFor)); err != nil {
		t.Fatalf("the other instance got nothing: %v", err)
	}
	shared.Abandon(testCtx(t))
	if _, err := js.Consumer(testCtx(t), DefaultStream, "shared"); err != nil {
		t.Errorf("Abandon deleted a durable another instance pulls from: %v", err)
	}
}

// TestJetStreamSourceCreatedTogether: two instances that start at the same moment
// create the same stream and durable together, each with its own settings: both start.
func TestJetStreamSourceCreatedTogether(t *testing.T) {
	tests := []struct {
		name string
		give [2]time.Duration // the stream's max age and the durable's ack wait of each
	}{
		{name: "same settings", give: [2]time.Duration{time.Hour, time.Hour}},
		{name: "different settings", give: [2]time.Duration{time.Hour, 2 * time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startJetStream(t)
			conns := [2]*Conn{connect(t, srv, ConnOptions{}), connect(t, srv, ConnOptions{})}
			begin := make(chan struct{})
			var errs [2]error
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() {
					<-begin
					_, errs[i] = NewJetStreamSource(testCtx(t), conns[i], SourceOptions{},
						StreamOptions{MaxAge: tt.give[i]}, ConsumerOptions{AckWait: tt.give[i]})
				})
			}
			close(begin)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("source %d: NewJetStreamSource() = %v", i, err)
				}
			}
		})
	}
}

// TestTransientConflicts: the errors a server gives the second of two creates of the
// same stream or consumer with other settings are retried: the retry finds what the
// first created.
func TestTransientConflicts(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	ctx := testCtx(t)
	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, MaxAge: time.Hour}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.MaxAge = 2 * time.Hour
	_, streamErr := js.CreateStream(ctx, cfg)
	cc := jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute}
	if _, err := js.CreateConsumer(ctx, "S", cc); err != nil {
		t.Fatal(err)
	}
	cc.AckWait = 2 * time.Minute
	_, consumerErr := js.CreateConsumer(ctx, "S", cc)
	_, missing := js.Stream(ctx, "MISSING")

	tests := []struct {
		name string
		give error
		want bool
	}{
		{name: "stream created with other settings", give: streamErr, want: true},
		{name: "consumer created with other settings", give: consumerErr, want: true},
		{name: "stream not found", give: missing, want: false},
		{name: "timeout", give: context.DeadlineExceeded, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.give == nil {
				t.Fatal("the server gave no error")
			}
			if got := transient(tt.give); got != tt.want {
				t.Errorf("transient(%v) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

// TestJetStreamSourceEmptyReplay: with nothing stored on its subjects, the replay ends at
// once, and the source goes live.
func TestJetStreamSourceEmptyReplay(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"voice.>"}}); err != nil {
		t.Fatal(err)
	}
	store(t, js, "voice.other.x", statusUpdate("x", "ongoing", 1)) // outside the source's subjects
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	run(t, src, rec)
	eventually(t, "live", src.Ready)
	if es := rec.all(); !sameEntries(es, []entry{{kind: kindHold}, {kind: kindRelease}}) {
		t.Errorf("replay of nothing:\n%s", dump(es))
	}
}

// TestJetStreamSourceDrains: when Run's context is done, what the source pulled already
// is still delivered and acknowledged before Run returns.
func TestJetStreamSourceDrains(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	src := newJSSource(t, connect(t, srv, ConnOptions{}), SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	stop, _ := run(t, src, rec)
	eventually(t, "live", src.Ready)
	rec.hold()
	const n = 50
	for i := range n {
		call := fmt.Sprint("c", i)
		store(t, js, eventSubject(call, "status-update"), statusUpdate(call, "ongoing", 1))
	}
	eventually(t, "all pulled", func() bool { return consumerInfo(t, js, DefaultStream, DefaultDurable).Delivered.Consumer == n })
	if err := rec.stopReleased(t, stop); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if got := len(messages(rec.all())); got != n {
		t.Errorf("%d events delivered by the drain, want %d", got, n)
	}
	// The acknowledgements went before Run returned; the server takes them in its time.
	eventually(t, "every event acknowledged", func() bool {
		return consumerInfo(t, js, DefaultStream, DefaultDurable).AckFloor.Consumer == n
	})
}

// TestJetStreamSourceDurable: a durable deleted under a running source and put back is
// consumed from again; one that stays missing ends Run with ErrDurableLost.
func TestJetStreamSourceDurable(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})

	t.Run("put back", func(t *testing.T) {
		src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "back"})
		rec := newRecorder()
		_, done := run(t, src, rec)
		eventually(t, "live", src.Ready)
		store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
		rec.wait(t, "c1", func(es []entry) bool { return len(messages(es)) == 1 })
		cfg := consumerInfo(t, js, DefaultStream, "back").Config
		if err := js.DeleteConsumer(testCtx(t), DefaultStream, "back"); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateConsumer(testCtx(t), DefaultStream, cfg); err != nil {
			t.Fatal(err)
		}
		store(t, js, eventSubject("c2", "status-update"), statusUpdate("c2", "ongoing", 2))
		rec.wait(t, "c2", func(es []entry) bool { return len(messages(es)) == 2 })
		select {
		case err := <-done:
			t.Fatalf("Run() = %v, want it to go on", err)
		default:
		}
	})

	// Deleted while a pull is pending, the server says so; deleted before the first pull
	// (or between two), only the missed heartbeats do.
	for _, before := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost before the first pull %v", before), func(t *testing.T) {
			name := fmt.Sprintf("lost-%v", before)
			src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: name})
			src.lostAfter = 0
			remove := func() {
				if err := js.DeleteConsumer(testCtx(t), DefaultStream, name); err != nil {
					t.Fatal(err)
				}
			}
			if before {
				remove()
			}
			_, done := run(t, src, newRecorder())
			if !before {
				eventually(t, "live", src.Ready)
				eventually(t, "the source pulls", func() bool { return consumerInfo(t, js, DefaultStream, name).NumWaiting == 1 })
				remove()
			}
			select {
			case err := <-done:
				if !errors.Is(err, ErrDurableLost) {
					t.Errorf("Run() = %v, want ErrDurableLost", err)
				}
			case <-time.After(waitFor):
				t.Fatal("Run goes on without its durable")
			}
			if src.Ready() {
				t.Error("Ready() after Run returned")
			}
		})
	}
}

// TestJetStreamSourceEndsWhenNATSClosesTheConnection: Run ends with ErrConnClosed.
func TestJetStreamSourceEndsWhenNATSClosesTheConnection(t *testing.T) {
	srv := startJetStream(t)
	conn := connect(t, srv, ConnOptions{})
	src := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{})
	_, done := run(t, src, newRecorder())
	eventually(t, "live", src.Ready)
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
}

// TestJetStreamSourceProofWaitsForNextStored: a proof whose consumer counted every
// delivery received marks at once when the stream's leader knows of no message not
// received yet; when it knows of one, the proof does not mark, not even once that one
// is received (more may have been stored after it before the proof began): it asks
// again.
func TestJetStreamSourceProofWaitsForNextStored(t *testing.T) {
	rec := newRecorder()
	s := &JetStreamSource{in: rec, probe: make(chan struct{}, 1)}
	at := time.Unix(1000, 0)
	s.lastCons, s.lastSeq = 5, 50
	s.proving, s.pending, s.next, s.proofAt = true, 5, 0, at
	s.markIfProved()
	if got := count(rec.all(), isMark); got != 1 || s.proving {
		t.Fatalf("nothing stored beyond what was received: %d marks, still proving %v; want 1, false", got, s.proving)
	}
	s.proving, s.pending, s.next, s.proofAt = true, 5, 52, at.Add(time.Second)
	s.markIfProved()
	if got := count(rec.all(), isMark); got != 1 || !s.proving {
		t.Fatalf("a message stored not received yet: %d marks, still proving %v; want the first only, true", got, s.proving)
	}
	s.received(6, 52)
	s.markIfProved()
	if got := count(rec.all(), isMark); got != 1 || s.proving {
		t.Fatalf("that message received: %d marks, still proving %v; want no new mark, false", got, s.proving)
	}
	select {
	case <-s.probe:
	default:
		t.Fatal("that message received: no new proof asked for")
	}
}
