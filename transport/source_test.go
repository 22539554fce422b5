package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/wire"
)

// noProbes is a ProbeEvery that keeps the source from proving its progress unasked
// within a test: the test asks.
const noProbes = time.Hour

// startSource runs a core Source on srv with a recorder, and returns once its first mark
// says it is subscribed.
func startSource(t *testing.T, conn *Conn, o SourceOptions) (*Source, *recorder, func() error) {
	t.Helper()
	if o.ProbeEvery == 0 {
		o.ProbeEvery = noProbes
	}
	src := NewSource(conn, o)
	rec := newRecorder()
	stop, _ := run(t, src, rec)
	rec.waitMark(t, 0, time.Time{})
	return src, rec, stop
}

func isMark(e entry) bool { return e.kind == kindMark }
func isGap(e entry) bool  { return e.kind == kindGap }

// TestSourceMarkFollowsDeliveries: a mark asked for after messages were published comes
// after every one of them was handed over, even while the engine is behind (the barrier
// through the subscription's queue), and never before.
func TestSourceMarkFollowsDeliveries(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{})
	pub := plainClient(t, srv)

	rec.hold() // the engine is behind
	const n = 200
	for i := range n {
		call := fmt.Sprint("c", i)
		if err := pub.Publish(eventSubject(call, "status-update"), statusUpdate(call, "ongoing", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.waiting:
	case <-time.After(waitFor):
		t.Fatal("nothing delivered")
	}
	start := rec.len()
	before := time.Now()
	probes := src.Stats().Probes
	src.Probe()
	// The proof's flush round trip completes while the deliveries are held: a round trip
	// of the test's own on the source's connection comes back after it.
	eventually(t, "the proof begun", func() bool { return src.Stats().Probes > probes })
	if err := conn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	rec.release()
	i := rec.waitMark(t, start, before)
	if got := count(rec.all()[start:i], isMessage); got != n {
		t.Errorf("%d messages handed over before the mark, want all %d published before it:\n%s", got, n, dump(rec.all()))
	}
}

// TestSourceProofsOverlap: a proof asked for while another is in flight begins at once,
// beside it, rather than after it: a deadline reached after the first began needs a
// proof begun after it, and would otherwise wait two round trips. Through a link of
// 300 ms each way, the second proof begins well within the first one's round trip, and
// the marks still come in the order the proofs began.
func TestSourceProofsOverlap(t *testing.T) {
	const delay = 300 * time.Millisecond
	srv := startServer(t, EmbeddedOptions{})
	link := startDelayProxy(t, strings.TrimPrefix(srv.ClientURL(), "nats://"), delay)
	conn := connect(t, srv, ConnOptions{URL: link.url()})
	src, rec, _ := startSource(t, conn, SourceOptions{})

	start := rec.len()
	probes := src.Stats().Probes
	asked := time.Now()
	src.Probe()
	eventually(t, "the first proof begun", func() bool { return src.Stats().Probes > probes })
	time.Sleep(delay / 3) // its ping is on the way
	second := time.Now()
	src.Probe()
	eventually(t, "the second proof begun", func() bool { return src.Stats().Probes > probes+1 })
	rec.waitMark(t, start, second)
	var marks []time.Time
	for _, e := range rec.all()[start:] {
		if isMark(e) {
			marks = append(marks, e.at)
		}
	}
	if len(marks) != 2 || marks[0].Before(asked) || !marks[0].Before(second) || marks[1].Before(second) {
		t.Fatalf("marks %v, want one begun at %v (the first proof) and one after %v (the second), in that order", marks, asked, second)
	}
	if gap := marks[1].Sub(marks[0]); gap >= 2*delay {
		t.Errorf("the second proof began %v after the first, want within the first's round trip (%v): it waited for it", gap, 2*delay)
	}
}

// TestSourceFirstMarkOnceSubscribed: the first mark says the subscription is in place on
// the server, so that nothing published after it is missed.
func TestSourceFirstMarkOnceSubscribed(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	const subject = "voice.events.c1.status-update"
	var first atomic.Int32 // 0: no mark yet; 1: subscribed at the first; 2: not
	rec := newRecorder()
	rec.onMark = func(time.Time) {
		v := int32(2)
		if srv.Server().GlobalAccount().SubscriptionInterest(subject) {
			v = 1
		}
		first.CompareAndSwap(0, v)
	}
	run(t, NewSource(conn, SourceOptions{ProbeEvery: noProbes}), rec)
	rec.waitMark(t, 0, time.Time{})
	if first.Load() != 1 {
		t.Fatal("the first mark came before the server knew the subscription")
	}
	pub := plainClient(t, srv)
	publish(t, pub, subject, statusUpdate("c1", "ongoing", 1))
	rec.wait(t, "the event published after the first mark", func(es []entry) bool { return count(es, isMessage) == 1 })
}

// TestSourceMarksFromTheSubscription: a proof that ends with none before it in flight
// gives its mark from the goroutine that passes the barrier (the subscription's, which
// hands the messages over), not after waking the proof's own goroutine: one hop less
// between a deadline and its hang.
func TestSourceMarksFromTheSubscription(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{})
	subG := make(chan uint64, 1)
	if err := conn.NATS().Barrier(func() { subG <- goid() }); err != nil {
		t.Fatal(err)
	}
	want := <-subG
	markG := make(chan uint64, 1)
	rec.onMark = func(time.Time) { markG <- goid() }
	src.Probe()
	select {
	case got := <-markG:
		if got != want {
			t.Errorf("the mark was given on goroutine %d, want the subscription's, %d", got, want)
		}
	case <-time.After(waitFor):
		t.Fatal("no mark")
	}
}

// goid returns the id of the calling goroutine.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := strings.Fields(string(b)) // "goroutine 123 [running]: ..."
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

// blockingCore is a zap core that blocks the writes of one message until its gate is
// closed: it holds nats.go's callback goroutine, as a busy machine can, behind a
// handler that logs.
type blockingCore struct {
	msg     string
	entered chan struct{}
	gate    chan struct{}
}

func (c *blockingCore) Enabled(zapcore.Level) bool        { return true }
func (c *blockingCore) With([]zapcore.Field) zapcore.Core { return c }
func (c *blockingCore) Sync() error                       { return nil }
func (c *blockingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == c.msg {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *blockingCore) Write(zapcore.Entry, []zapcore.Field) error {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-c.gate
	return nil
}

// TestSourceOutage shuts the server down under a source: nothing is marked while it is
// down; once it is back on the same port, the outage is reported as a gap, then a mark
// follows. The reconnection is fast (measured).
func TestSourceOutage(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{})
	lastMark := rec.all()[0].at

	srv.stop()
	eventually(t, "disconnected", func() bool { return !conn.NATS().IsConnected() })
	downAt := time.Now() // the server went down before this
	start := rec.len()
	errs := src.Stats().ProbeErrors
	src.Probe()
	eventually(t, "a proof tried while down", func() bool { return src.Stats().ProbeErrors > errs })
	// The reconnection attempts back off to their longest delay.
	time.Sleep(time.Second)
	if es := rec.all()[start:]; count(es, isMark) != 0 {
		t.Fatalf("marked while the server was down:\n%s", dump(es))
	}

	reconnected := conn.Reconnected()
	upAt := time.Now()
	srv.start(t)
	select {
	case <-reconnected:
	case <-time.After(waitFor):
		t.Fatal("not reconnected")
	}
	took := time.Since(upAt)
	t.Logf("reconnected %v after the server was back (outage %v)", took, upAt.Sub(downAt))
	if took > 1500*time.Millisecond {
		t.Errorf("reconnected %v after the server was back, want well under a second", took)
	}

	i := rec.waitMark(t, start, upAt)
	es := rec.all()
	g := indexOf(es, start, isGap)
	if g < 0 || g > i {
		t.Fatalf("no gap before the first mark after the outage:\n%s", dump(es[start:]))
	}
	if gap := es[g]; gap.at.Before(lastMark) || gap.at.After(downAt) || gap.to.Before(upAt) {
		t.Errorf("gap %v, want it to cover the outage, down before %s and back at %s, from no earlier than the last mark %s",
			gap, downAt.Format("15:04:05.000"), upAt.Format("15:04:05.000"), lastMark.Format("15:04:05.000"))
	}
	if st := src.Stats(); st.Gaps != 1 {
		t.Errorf("Stats().Gaps = %d, want 1", st.Gaps)
	}

	// Subscribed again: an event published now arrives.
	pub := plainClient(t, srv)
	publish(t, pub, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
	rec.wait(t, "an event after the outage", func(es []entry) bool { return count(es, isMessage) == 1 })
	t.Logf("resubscribed: an event published %v after the server was back was delivered", time.Since(upAt))
}

// TestSourceGapBeforeMarkWhenReconnectHandlerLate: nats.go says it is connected again
// before it runs the reconnect handler (in its callback goroutine, behind the other
// handlers). A proof in between must not mark without the gap of the outage.
func TestSourceGapBeforeMarkWhenReconnectHandlerLate(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	core := &blockingCore{msg: "disconnected from NATS", entered: make(chan struct{}, 1), gate: make(chan struct{})}
	conn := connect(t, srv, ConnOptions{Logger: zap.New(core)})
	src, rec, _ := startSource(t, conn, SourceOptions{})
	released := false
	release := func() {
		if !released {
			released = true
			close(core.gate)
		}
	}
	t.Cleanup(release)

	srv.stop()
	select {
	case <-core.entered: // the disconnect handler holds the callback goroutine
	case <-time.After(waitFor):
		t.Fatal("no disconnect handled")
	}
	start := rec.len()
	srv.start(t)
	eventually(t, "connected again", conn.NATS().IsConnected)
	upAt := time.Now()
	// Ask for proofs until one marks or fails.
	errs := src.Stats().ProbeErrors
	eventually(t, "a proof after the reconnection", func() bool {
		src.Probe()
		return src.Stats().ProbeErrors > errs || count(rec.all()[start:], isMark) > 0
	})
	release()
	i := rec.waitMark(t, start, upAt)
	if es := rec.all(); indexOf(es[:i], start, isGap) < 0 {
		t.Errorf("marked after the outage without a gap:\n%s", dump(es[start:]))
	}
}

// overflow holds the engine and publishes until the source's subscription, with small
// pending limits, drops events as a slow consumer; the engine stays held.
func overflow(t *testing.T, src *Source, rec *recorder, pub *nats.Conn) {
	t.Helper()
	rec.hold()
	for i := range 100 {
		call := fmt.Sprint("c", i)
		if err := pub.Publish(eventSubject(call, "status-update"), statusUpdate(call, "ongoing", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "events dropped", func() bool { return src.Stats().Dropped > 0 })
}

// TestSourceSlowConsumer: a subscription that overflows its pending limits while the
// engine is behind loses events; they are counted, and reported as a gap before the
// next mark.
func TestSourceSlowConsumer(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{PendingBytes: 4 << 10})
	lastMark := rec.all()[0].at
	pub := plainClient(t, srv)

	overflow(t, src, rec, pub)
	start := rec.len()
	before := time.Now()
	src.Probe()
	rec.release()
	i := rec.waitMark(t, start, before)
	es := rec.all()
	g := indexOf(es, start, isGap)
	if g < 0 || g > i {
		t.Fatalf("no gap before the mark after the drops:\n%s", dump(es[start:]))
	}
	if gap := es[g]; gap.at.Before(lastMark) || gap.to.After(es[i].at) || !gap.to.After(gap.at) {
		t.Errorf("gap %v, want it between the last mark %v and this one %v", gap, lastMark, es[i])
	}
	st := src.Stats()
	if delivered := int64(count(es, isMessage)); st.Dropped == 0 || delivered+st.Dropped != 100 {
		t.Errorf("Stats().Dropped = %d with %d delivered, want the 100 published in all", st.Dropped, delivered)
	}
	if st.Gaps != 1 || conn.Stats().SlowConsumers == 0 {
		t.Errorf("Stats().Gaps = %d, conn SlowConsumers = %d; want 1 gap and the slow consumer counted", st.Gaps, conn.Stats().SlowConsumers)
	}
}

// TestSourceBadInput: each kind of bad input is counted by its reason, logged once a
// second without its text, and dead-lettered unchanged with headers that say why; a good
// event still goes through.
func TestSourceBadInput(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	obs, logs := observer.New(zap.InfoLevel)
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{DeadLetter: "voice.dead", Logger: zap.NewNop(), Limited: zap.New(obs)})
	pub := plainClient(t, srv)
	dead := subscribe(t, pub, "voice.dead")

	const secret = "my card number is 4111"
	tests := []struct {
		give []byte
		want wire.Rejection
	}{
		{give: []byte("garbage " + secret), want: wire.RejectNotJSON},
		{give: []byte(`{"message":{"type":"status-update","call":{"id":42}}}`), want: wire.RejectWrongType},
		{give: []byte(`{"message":{"type":"conversation-update","call":{"id":"c"},"messages":[{"role":"user","text":7}]}}`), want: wire.RejectWrongType},
		{give: []byte(`{"message":{"type":"conversation-update","call":{"id":"c"},"messages":{"text":"` + secret + `"}}}`), want: wire.RejectMessagesNotArray},
		{give: []byte(`{"message":{"type":"conversation-update","call":{}}}`), want: wire.RejectNoCallID},
		{give: []byte(`{"msg":{}}`), want: wire.RejectNoMessage},
		{give: []byte(`{"message":{"call":{"id":"c"},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`), want: wire.RejectTooDeep},
	}
	for _, tt := range tests {
		publish(t, pub, "voice.events.bad.x", tt.give)
		m, err := dead.NextMsg(waitFor)
		if err != nil {
			t.Fatalf("no dead letter for %v: %v", tt.want, err)
		}
		if got := m.Header.Get(HeaderBadInputReason); got != tt.want.String() {
			t.Errorf("dead letter reason = %q, want %q", got, tt.want)
		}
		if string(m.Data) != string(tt.give) || m.Header.Get(HeaderSubject) != "voice.events.bad.x" ||
			!strings.HasPrefix(m.Header.Get(HeaderBadInputError), "decode event: ") || m.Header.Get(HeaderTruncated) != "" {
			t.Errorf("dead letter %q with headers %v: want the event unchanged, its subject and the error", m.Data, m.Header)
		}
	}
	publish(t, pub, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
	rec.wait(t, "every event handed over", func(es []entry) bool { return count(es, isMessage) == len(tests)+1 })

	st := src.Stats()
	want := map[wire.Rejection]int64{wire.RejectNotJSON: 1, wire.RejectWrongType: 2, wire.RejectMessagesNotArray: 1,
		wire.RejectNoCallID: 1, wire.RejectNoMessage: 1, wire.RejectTooDeep: 1}
	if fmt.Sprint(st.Bad) != fmt.Sprint(want) || st.DeadLettered != int64(len(tests)) || st.DeadLetterErrors != 0 {
		t.Errorf("Stats() = %+v, want bad %v, all dead-lettered", st, want)
	}
	for _, e := range logs.All() {
		if b, _ := json.Marshal(e.ContextMap()); strings.Contains(e.Message+string(b), secret) {
			t.Errorf("a log line holds message text: %s %s", e.Message, b)
		}
	}
	if n := logs.FilterMessage("bad input: wrong-type").Len(); n != 2 {
		t.Errorf("logged %d wrong-type lines on the limited logger, want 2 (the process rate-limits it)", n)
	}
}

// TestSourceDeadLetterCutToFit: the dead letter of an event near the server's max
// payload would not fit with its headers: it is cut to fit, and says so.
func TestSourceDeadLetterCutToFit(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{DeadLetter: "voice.dead"})
	pub := plainClient(t, srv)
	dead := subscribe(t, pub, "voice.dead")

	max := int(pub.MaxPayload())
	big := []byte(strings.Repeat("x", max-64)) // not JSON
	publish(t, pub, "voice.events.big", big)
	m, err := dead.NextMsg(waitFor)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if got := m.Header.Get(HeaderTruncated); got != strconv.Itoa(len(big)) {
		t.Errorf("%s = %q, want the event's length %d", HeaderTruncated, got, len(big))
	}
	if len(m.Data) >= len(big) || string(m.Data) != string(big[:len(m.Data)]) {
		t.Errorf("dead letter of %d bytes, want the start of the %d-byte event", len(m.Data), len(big))
	}
	if m.Header.Get(HeaderBadInputReason) != wire.RejectNotJSON.String() {
		t.Errorf("dead letter headers %v, want the reason", m.Header)
	}
	rec.wait(t, "the event handed over", func(es []entry) bool { return count(es, isMessage) == 1 })
	if st := src.Stats(); st.DeadLettered != 1 || st.DeadLettersCut != 1 || st.DeadLetterErrors != 0 {
		t.Errorf("Stats() = %+v, want 1 dead letter, cut", st)
	}
}

// TestSourceIgnoresItsDeadLetters: with a dead-letter subject that the source consumes,
// a dead letter comes back in and is dropped, instead of being dead-lettered again
// forever.
func TestSourceIgnoresItsDeadLetters(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, _ := startSource(t, conn, SourceOptions{DeadLetter: "voice.events.dead"})
	pub := plainClient(t, srv)
	publish(t, pub, "voice.events.bad", []byte("not json"))
	eventually(t, "the dead letter came back", func() bool { return src.Stats().DeadLettersIgnored > 0 })
	// Whatever went round has been handed over by the next mark.
	start := rec.len()
	before := time.Now()
	src.Probe()
	rec.waitMark(t, start, before)
	st := src.Stats()
	if st.DeadLettered != 1 || st.DeadLettersIgnored != 1 || st.Bad[wire.RejectNotJSON] != 1 {
		t.Errorf("Stats() = %+v, want one rejection, one dead letter, ignored once", st)
	}
	if n := count(rec.all(), isMessage); n != 1 {
		t.Errorf("%d messages handed over, want the bad event alone", n)
	}
}

// TestSourceDrains: when Run's context is done, the events NATS already handed to the
// subscription are still delivered, then a last mark says so, and Run returns.
func TestSourceDrains(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	_, rec, stop := startSource(t, conn, SourceOptions{})
	pub := plainClient(t, srv)
	in := conn.NATS().Stats().InMsgs

	rec.hold()
	const n = 50
	for i := range n {
		call := fmt.Sprint("c", i)
		if err := pub.Publish(eventSubject(call, "status-update"), statusUpdate(call, "ongoing", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every event received", func() bool { return conn.NATS().Stats().InMsgs-in >= n })
	start := rec.len()
	cancelAt := time.Now()
	if err := rec.stopReleased(t, stop); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	es := rec.all()[start:]
	if got := count(es, isMessage); got != n {
		t.Errorf("%d events delivered by the drain, want %d", got, n)
	}
	if last := es[len(es)-1]; last.kind != kindMark || last.at.Before(cancelAt) {
		t.Errorf("the drain ended with %v, want a mark at or after the cancel %v:\n%s", last, cancelAt, dump(es))
	}
}

// TestSourceNoMarkOnDrainWhileServerSilent: the server stops answering (paused, or a
// link that hangs) and the source is told to stop. No round trip begun after the freeze
// completes, so the drain must mark no time after it (SPEC §2: a deadline D fires only
// after a round trip begun at or after D has completed). nats.go reports a drain done
// even when its own flush failed: "drained" alone is no evidence.
func TestSourceNoMarkOnDrainWhileServerSilent(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	link := natstest.StartProxy(t, listenOf(srv.Embedded))
	conn := connect(t, srv, ConnOptions{URL: link.URL()})
	_, rec, stop := startSource(t, conn, SourceOptions{})

	link.Freeze()
	defer link.Thaw()
	frozenAt := time.Now()
	start := rec.len()
	began := time.Now()
	err := stop() // SIGTERM: the source drains and returns
	t.Logf("Run returned %v after %v", err, time.Since(began).Round(time.Millisecond))
	es := rec.all()[start:]
	for _, e := range es {
		if isMark(e) && !e.at.Before(frozenAt) {
			t.Errorf("marked %s, after the server stopped answering at %s, with no round trip since:\n%s",
				e.at.Format("15:04:05.000"), frozenAt.Format("15:04:05.000"), dump(es))
		}
	}
}

// TestSourceDrainReportsDrops: events the subscription dropped as a slow consumer since
// the last proof are reported as a gap before the mark the source gives as it stops,
// as any proof reports them: the stop's mark is evidence like any other.
func TestSourceDrainReportsDrops(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src, rec, stop := startSource(t, conn, SourceOptions{PendingBytes: 4 << 10})
	lastMark := rec.all()[0].at
	pub := plainClient(t, srv)

	overflow(t, src, rec, pub)
	start := rec.len()
	cancelAt := time.Now()
	if err := rec.stopReleased(t, stop); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	es := rec.all()
	i := indexOf(es, start, isMark)
	if i < 0 || es[i].at.Before(cancelAt) {
		t.Fatalf("no mark at or after the cancel %v as the source stopped:\n%s", cancelAt, dump(es[start:]))
	}
	g := indexOf(es, start, isGap)
	if g < 0 || g > i {
		t.Fatalf("no gap before the stop's mark after the drops:\n%s", dump(es[start:]))
	}
	if gap := es[g]; !gap.at.Equal(lastMark) || !gap.to.Equal(es[i].at) {
		t.Errorf("gap %v, want it from the last mark %v to the stop's %v", gap, lastMark, es[i])
	}
	if st := src.Stats(); st.Gaps != 1 {
		t.Errorf("Stats().Gaps = %d, want 1", st.Gaps)
	}
}

// TestSourceEndsWhenNATSClosesTheConnection: a connection that the server closes for
// good ends Run with ErrConnClosed, so that the process exits rather than live on deaf.
func TestSourceEndsWhenNATSClosesTheConnection(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src := NewSource(conn, SourceOptions{ProbeEvery: noProbes})
	rec := newRecorder()
	_, done := run(t, src, rec)
	rec.waitMark(t, 0, time.Time{})
	if !src.Ready() {
		t.Error("Ready() = false once subscribed")
	}
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

// TestSinkPublishes: the core sink publishes an output on its subject with the headers
// of SPEC §3, and hands it to the tap.
func TestSinkPublishes(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	var tapped []string
	sink := NewSink(connect(t, srv, ConnOptions{}), SinkOptions{Tap: func(id string, data []byte) { tapped = append(tapped, id+" "+string(data)) }})
	sub := subscribe(t, plainClient(t, srv), "voice.>")
	out := fixtureOutput(t, "user-2")
	if err := sink.Publish(fixtureCall, out); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(waitFor)
	if err != nil {
		t.Fatal(err)
	}
	if want := "voice.hang.team-7a31c9." + fixtureCall; m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}
	if got, want := m.Header.Get(nats.MsgIdHdr), fixtureCall+":user-2:hang"; got != want {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, want)
	}
	if got := m.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if want := string(wire.AppendOutput(nil, fixtureCall, out, maxOutput(sink.conn))); string(m.Data) != want {
		t.Errorf("payload differs from wire.AppendOutput")
	}
	if len(tapped) != 1 || tapped[0] != fixtureCall+":user-2:hang "+string(m.Data) {
		t.Errorf("tapped %q, want the output with its id", tapped)
	}
}
