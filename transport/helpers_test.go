package transport

import (
	"context"
	"fmt"
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

// waitFor bounds every wait on the broker: it only matters when a test fails.
const waitFor = 10 * time.Second

// testServer is an embedded NATS server of one test, which the test may stop and start
// again on the same port and store. It is shut down when the test ends, after the
// connections and sources made after it started are closed.
type testServer struct {
	*Embedded
	o EmbeddedOptions
}

// startServer starts an embedded NATS server for one test, on a random port unless
// o.Listen says otherwise.
func startServer(t testing.TB, o EmbeddedOptions) *testServer {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	s := &testServer{o: o}
	s.start(t)
	s.o.Listen = listenOf(s.Embedded)
	t.Cleanup(s.stop)
	return s
}

// startJetStream starts an embedded server with JetStream, storing in a directory of
// the test's own.
func startJetStream(t testing.TB) *testServer {
	t.Helper()
	return startServer(t, EmbeddedOptions{JetStream: true, StoreDir: t.TempDir()})
}

// start starts the server again, on the same port and store.
func (s *testServer) start(t testing.TB) {
	t.Helper()
	srv, err := StartEmbedded(s.o)
	if err != nil {
		t.Fatal(err)
	}
	s.Embedded = srv
}

// stop shuts the server down, if it runs.
func (s *testServer) stop() {
	if s.Embedded != nil {
		s.Shutdown()
		s.Embedded = nil
	}
}

// restart stops the server and starts it again.
func (s *testServer) restart(t testing.TB) {
	t.Helper()
	s.stop()
	s.start(t)
}

// listenOf returns the host:port a server listens on, to start it again there.
func listenOf(srv *Embedded) string { return strings.TrimPrefix(srv.ClientURL(), "nats://") }

// connect connects to srv and closes the connection when the test ends.
func connect(t testing.TB, srv *testServer, o ConnOptions) *Conn {
	t.Helper()
	if o.URL == "" {
		o.URL = srv.ClientURL()
	}
	c, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// plainClient is a test's own connection, as a pipeline or a subscriber would have; it
// reconnects quickly and forever, to ride out the server restarts of the tests.
func plainClient(t testing.TB, srv *testServer) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jsClient is a JetStream client on a plain connection.
func jsClient(t testing.TB, srv *testServer) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(plainClient(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// testCtx is a context that ends with the test, or after waitFor.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond, a look at the state of a real server or of a goroutine, until
// it holds, for at most waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not after %v: %s", waitFor, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// subscribe subscribes a plain client to subject and returns once the server knows it.
func subscribe(t testing.TB, nc *nats.Conn, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// publish publishes on a plain client and returns once the server has it.
func publish(t testing.TB, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// run runs src with in until the test ends, or until the returned stop is called,
// which returns Run's error.
func run(t testing.TB, src engine.Source, in engine.Intake) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	exited := make(chan struct{})
	var err error
	go func() {
		defer close(exited)
		err = src.Run(ctx, in)
		errc <- err
	}()
	stop = sync.OnceValue(func() error {
		cancel()
		<-exited
		return err
	})
	t.Cleanup(func() { _ = stop() })
	return stop, errc
}

// The events of the tests, in the webhook dialect (SPEC §1).

// turn is a message of a test conversation.
type turn struct {
	id, role, text string
	ts             int64 // Unix ms
}

func userTurn(id string, ts int64) turn  { return turn{id, "user", "hello?", ts} }
func replyTurn(id string, ts int64) turn { return turn{id, "assistant", "Sure, one moment.", ts} }

// eventSubject is the subject SPEC §1 advises: voice.events.<callId>.<type>.
func eventSubject(call, typ string) string { return "voice.events." + call + "." + typ }

// convUpdate is a conversation-update of a call whose history is turns.
func convUpdate(call string, ts int64, turns ...turn) []byte {
	msgs := make([]string, len(turns))
	for i, tu := range turns {
		msgs[i] = fmt.Sprintf(`{"messageId":%q,"role":%q,"text":%q,"timestamp":%d}`, tu.id, tu.role, tu.text, tu.ts)
	}
	return fmt.Appendf(nil, `{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"teamId":"team","status":"ongoing"},"assistant":{},"messages":[%s]}}`,
		ts, call, strings.Join(msgs, ","))
}

// statusUpdate is a status-update of a call.
func statusUpdate(call, status string, ts int64) []byte {
	return fmt.Appendf(nil, `{"message":{"type":"status-update","timestamp":%d,"call":{"id":%q,"teamId":"team","status":%q}}}`, ts, call, status)
}

// decoder is the decoder of the engine on NATS: package wire's.
var decoder = engine.DecoderFunc(func(ev *detector.Event, data []byte) error {
	return wire.Decode(ev, data, wire.DefaultLimits())
})

// The recording Intake: what a source hands the engine, in order.

type entryKind uint8

const (
	kindDeliver entryKind = iota
	kindOrdered
	kindMark
	kindGap
	kindHold
	kindRelease
	kindRevoke
)

var entryNames = [...]string{"deliver", "ordered", "mark", "gap", "hold", "release", "revoke"}

func (k entryKind) String() string { return entryNames[k] }

// entry is one call of a source on its Intake. Of a message, it keeps a copy of the data
// and what Received said; of a mark, its time; of a gap, its span.
type entry struct {
	kind   entryKind
	data   string
	at, to time.Time
	stored bool
}

func (e entry) String() string {
	switch e.kind {
	case kindDeliver, kindOrdered:
		return fmt.Sprintf("%v(%.40s @%s stored=%v)", e.kind, e.data, e.at.Format("15:04:05.000000"), e.stored)
	case kindMark:
		return fmt.Sprintf("mark(%s)", e.at.Format("15:04:05.000000"))
	case kindGap:
		return fmt.Sprintf("gap(%s..%s)", e.at.Format("15:04:05.000000"), e.to.Format("15:04:05.000000"))
	}
	return e.kind.String()
}

// recorder is an engine.Intake that records every call in order. A delivered message is
// decoded with package wire: bad input is rejected (so the source counts and
// dead-letters it), the rest is done. Deliveries can be held at a gate, as by an engine
// that is behind.
type recorder struct {
	mu      sync.Mutex
	entries []entry
	changed chan struct{} // closed and replaced at each entry
	gate    chan struct{} // while not nil, deliveries wait for it to close
	waiting chan struct{} // a delivery waits at the gate: sent on, without blocking
	onMark  func(time.Time)
	// next, when set, is handed every call after the recorder has seen it (and, for
	// a message, instead of the recorder's own decoding): the recorder taps an engine's
	// input.
	next engine.Intake
}

var _ engine.Intake = (*recorder)(nil)

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), waiting: make(chan struct{}, 1)}
}

func (r *recorder) add(e entry) {
	r.mu.Lock()
	r.entries = append(r.entries, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// hold makes deliveries wait until release.
func (r *recorder) hold() {
	r.mu.Lock()
	r.gate = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) release() {
	r.mu.Lock()
	if r.gate != nil {
		close(r.gate)
		r.gate = nil
	}
	r.mu.Unlock()
}

// stopReleased stops a run whose deliveries r holds, lets them through, and returns
// Run's error once it has returned.
func (r *recorder) stopReleased(t *testing.T, stop func() error) error {
	t.Helper()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	r.release()
	select {
	case err := <-stopped:
		return err
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
		return nil
	}
}

func (r *recorder) deliver(m engine.Message, k entryKind) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case r.waiting <- struct{}{}:
		default:
		}
		<-gate
	}
	at, stored := m.Received()
	data := m.Data()
	e := entry{kind: k, data: string(data), at: at, stored: stored}
	if r.next != nil {
		// Handed on first, so that what a test does once it has seen the entry comes
		// after it in the engine.
		if k == kindOrdered {
			r.next.DeliverOrdered(m)
		} else {
			r.next.Deliver(m)
		}
		r.add(e)
		return
	}
	r.add(e)
	var ev detector.Event
	if err := decoder.Decode(&ev, data); err != nil {
		m.Reject(err)
		return
	}
	m.Done()
}

func (r *recorder) Deliver(m engine.Message)        { r.deliver(m, kindDeliver) }
func (r *recorder) DeliverOrdered(m engine.Message) { r.deliver(m, kindOrdered) }

func (r *recorder) Gap(from, to time.Time) {
	if r.next != nil {
		r.next.Gap(from, to)
	}
	r.add(entry{kind: kindGap, at: from, to: to})
}

func (r *recorder) Hold() {
	if r.next != nil {
		r.next.Hold()
	}
	r.add(entry{kind: kindHold})
}

func (r *recorder) Release() {
	if r.next != nil {
		r.next.Release()
	}
	r.add(entry{kind: kindRelease})
}

func (r *recorder) Revoke(p int) {
	if r.next != nil {
		r.next.Revoke(p)
	}
	r.add(entry{kind: kindRevoke})
}

func (r *recorder) Mark(t time.Time) {
	if r.onMark != nil {
		r.onMark(t)
	}
	if r.next != nil {
		r.next.Mark(t)
	}
	r.add(entry{kind: kindMark, at: t})
}

// all returns the entries so far.
func (r *recorder) all() []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]entry(nil), r.entries...)
}

// len returns the number of entries so far.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// wait waits until cond holds of the entries, for at most waitFor, and returns them.
func (r *recorder) wait(t testing.TB, what string, cond func([]entry) bool) []entry {
	t.Helper()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		es, changed := append([]entry(nil), r.entries...), r.changed
		r.mu.Unlock()
		if cond(es) {
			return es
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("not after %v: %s; entries:\n%s", waitFor, what, dump(es))
		}
	}
}

// waitMark waits for a mark at or after t, from entry from on, and returns its index.
func (r *recorder) waitMark(t testing.TB, from int, at time.Time) int {
	t.Helper()
	i := -1
	r.wait(t, "a mark at or after "+at.Format("15:04:05.000000"), func(es []entry) bool {
		i = indexOf(es, from, func(e entry) bool { return e.kind == kindMark && !e.at.Before(at) })
		return i >= 0
	})
	return i
}

// indexOf returns the index of the first entry from from on that satisfies f, or -1.
func indexOf(es []entry, from int, f func(entry) bool) int {
	for i := from; i < len(es); i++ {
		if f(es[i]) {
			return i
		}
	}
	return -1
}

// count returns how many entries of es satisfy f.
func count(es []entry, f func(entry) bool) int {
	n := 0
	for _, e := range es {
		if f(e) {
			n++
		}
	}
	return n
}

func isMessage(e entry) bool { return e.kind == kindDeliver || e.kind == kindOrdered }

func dump(es []entry) string {
	var b strings.Builder
	for i, e := range es {
		fmt.Fprintf(&b, "  %3d %v\n", i, e)
	}
	return b.String()
}

// fixtureCall is the call of the webhook fixtures.
const fixtureCall = "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"

// fixtureOutput is a hang of the stretch that starts at first, on a fixture's payload
// (team team-7a31c9).
func fixtureOutput(t testing.TB, first string) *detector.Output {
	t.Helper()
	var ev detector.Event
	if err := wire.Decode(&ev, readFixture(t, "05-conversation-update-user-2.json"), wire.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	return &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: first,
		FirstUserMessageID: first, At: now, Wall: now, Armed: now - int64(5*time.Second), Wait: 5 * time.Second,
		Threshold: 5 * time.Second, Snapshot: ev.Payload, Latest: ev.Payload}
}
