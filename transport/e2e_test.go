package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
)

// The disturbances of issue 11 end to end: a real server, a source of this package, the
// engine with package wire's decoder, and a sink that records what the engine publishes
// (and hands it on to a sink of this package).

// tapped is a source whose calls on the engine's intake a recorder sees first: the test
// can wait on marks, and hold deliveries as a paused engine would.
type tapped struct {
	src engine.Source
	rec *recorder
}

func (s *tapped) Run(ctx context.Context, in engine.Intake) error {
	s.rec.next = in
	return s.src.Run(ctx, s.rec)
}

func (s *tapped) Probe() { s.src.(engine.Prober).Probe() }

// published is an output as the engine handed it to the sink.
type published struct {
	callID string
	out    detector.Output
}

func (p published) String() string {
	s := fmt.Sprintf("%v %s %s %v wait=%v", p.out.Kind, p.callID, p.out.FirstUserMessageID, p.out.Reason, p.out.Wait.Round(time.Millisecond))
	if p.out.InputGap > 0 {
		s += fmt.Sprintf(" gap=%v", p.out.InputGap)
	}
	return s
}

// recordingSink records every output, and hands it to next when set.
type recordingSink struct {
	next engine.Sink
	mu   sync.Mutex
	outs []published
}

func (s *recordingSink) Publish(callID string, out *detector.Output) error {
	s.mu.Lock()
	s.outs = append(s.outs, published{callID, *out})
	s.mu.Unlock()
	if s.next != nil {
		return s.next.Publish(callID, out)
	}
	return nil
}

func (s *recordingSink) all() []published {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outs)
}

// kinds renders outputs as "hang silent", in order.
func kinds(ps []published) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.out.Kind.String()+" "+p.callID)
	}
	return s
}

// runEngine runs an engine on src until the test ends.
func runEngine(t *testing.T, src engine.Source, sink engine.Sink, opts ...engine.Option) *engine.Engine {
	t.Helper()
	eng, err := engine.New(src, decoder, sink, append([]engine.Option{engine.WithShards(2), engine.WithDecoders(2)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine.Run() = %v", err)
		}
	})
	return eng
}

// coreE2E is core mode on a fake clock: the test moves the clock, and asks for the
// evidence.
type coreE2E struct {
	t     *testing.T
	srv   *testServer
	clock *clockwork.FakeClock
	conn  *Conn
	src   *Source
	rec   *recorder
	eng   *engine.Engine
	sink  *recordingSink
	pub   *testPublisher
	outs  func() map[string]int // what a plain subscriber of the hangs received
}

// testPublisher is the voice pipeline: a plain client that publishes events.
type testPublisher struct {
	t   *testing.T
	srv *testServer
	nc  *nats.Conn
}

func (p *testPublisher) publish(call string, data []byte) {
	p.t.Helper()
	if err := p.nc.Publish(eventSubject(call, "conversation-update"), data); err != nil {
		p.t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

// e2eStart is the fake clock's start.
var e2eStart = time.UnixMilli(1_763_647_331_000)

func newCoreE2E(t *testing.T, cfg detector.Config) *coreE2E {
	t.Helper()
	h := &coreE2E{t: t, srv: startServer(t, EmbeddedOptions{}), clock: clockwork.NewFakeClockAt(e2eStart), rec: newRecorder()}
	h.conn = connect(t, h.srv, ConnOptions{})
	h.src = NewSource(h.conn, SourceOptions{ProbeEvery: noProbes, Now: h.clock.Now})
	h.sink = &recordingSink{next: NewSink(h.conn, SinkOptions{})}
	h.outs = listen(t, h.srv, "voice.hang.>")
	h.pub = &testPublisher{t: t, srv: h.srv, nc: plainClient(t, h.srv)}
	h.eng = runEngine(t, &tapped{h.src, h.rec}, h.sink, engine.WithClock(h.clock), engine.WithConfig(cfg))
	h.rec.waitMark(t, 0, time.Time{})
	t.Cleanup(h.rec.release) // before the engine stops: a test that fails may hold deliveries
	return h
}

// ms is a time of the test in Unix ms, d after the start.
func ms(d time.Duration) int64 { return e2eStart.Add(d).UnixMilli() }

// settle asks the source for a mark at the clock's now, waits for it, and waits until
// the engine has applied everything before it and fired what it lets fire.
func (h *coreE2E) settle() {
	h.t.Helper()
	at := h.clock.Now()
	from := h.rec.len()
	h.src.Probe()
	h.rec.waitMark(h.t, from, at)
	if err := h.eng.Sync(testCtx(h.t)); err != nil {
		h.t.Fatal(err)
	}
}

// pause stops the engine taking its input: it holds the next event (a filler's), and
// what comes after waits in the subscription.
func (h *coreE2E) pause() {
	h.t.Helper()
	h.rec.hold()
	h.pub.publish("filler", statusUpdate("filler", "ongoing", ms(0)))
	select {
	case <-h.rec.waiting:
	case <-time.After(waitFor):
		h.t.Fatal("the engine took no event")
	}
}

// advance moves the fake clock by d.
func (h *coreE2E) advance(d time.Duration) { h.clock.Advance(d) }

// TestE2EPausedEngine: the engine stops taking its input (a long GC pause, a stopped
// process) while the pipeline publishes a reply before the deadline, and the clock
// jumps past the deadline. Once the input resumes, the reply waiting in the socket is
// applied before the deadline may fire: no hang for the answered call, one for the
// unanswered one.
func TestE2EPausedEngine(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.MaxWait = 0
	h := newCoreE2E(t, cfg)
	for _, call := range []string{"answered", "silent"} {
		h.pub.publish(call, convUpdate(call, ms(0), userTurn("user-1", ms(0))))
	}
	h.settle()
	if st := h.eng.Stats(); st.Armed != 2 {
		t.Fatalf("engine Stats() = %+v, want 2 armed calls", st)
	}

	// Paused: the engine holds an event, and what comes next waits in the socket.
	h.pause()
	h.advance(2 * time.Second)
	h.pub.publish("answered", convUpdate("answered", ms(2*time.Second), userTurn("user-1", ms(0)), replyTurn("user-1-r", ms(2*time.Second))))
	probes := h.eng.Stats().Probes
	h.advance(8 * time.Second) // past the deadline at 5 s
	eventually(t, "the engine asks for evidence of its overdue deadlines", func() bool { return h.eng.Stats().Probes > probes })
	if outs := h.sink.all(); len(outs) != 0 {
		t.Fatalf("published %v while paused, without evidence", outs)
	}

	h.rec.release()
	h.settle()
	outs := h.sink.all()
	if got, want := kinds(outs), []string{"hang silent"}; !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", outs, want)
	}
	if w := outs[0].out.Wait; w != 10*time.Second {
		t.Errorf("the late hang's waitMs = %v, want its true wait, 10s", w)
	}
	if err := h.conn.NATS().Flush(); err != nil { // what the sink published is at the server
		t.Fatal(err)
	}
	if got, want := h.outs(), map[string]int{"silent:user-1:hang": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("a plain subscriber received %v, want %v", got, want)
	}
}

// TestE2EServerRestart: the server restarts during a call: the source reconnects and
// reports the outage; the hang of a stretch armed before it carries the gap as
// inputGapMs, and the gap is counted; a stretch armed after it carries none.
func TestE2EServerRestart(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.MaxWait = 0
	h := newCoreE2E(t, cfg)
	h.pub.publish("before", convUpdate("before", ms(0), userTurn("user-1", ms(0))))
	h.settle()

	h.srv.stop()
	eventually(t, "disconnected", func() bool { return !h.conn.NATS().IsConnected() })
	h.advance(2 * time.Second)
	h.srv.start(t)
	eventually(t, "reconnected", h.conn.NATS().IsConnected)
	h.settle() // the first proof after the outage: the gap runs from the last one, at 0 s
	eventually(t, "the pipeline reconnected", h.pub.nc.IsConnected)
	h.pub.publish("after", convUpdate("after", ms(2*time.Second), userTurn("user-1", ms(2*time.Second))))
	h.settle()

	h.advance(6 * time.Second) // 8 s: both deadlines passed
	h.settle()
	outs := h.sink.all()
	if got, want := kinds(outs), []string{"hang before", "hang after"}; !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("published %v, want %v", outs, want)
	}
	for _, p := range outs {
		want := time.Duration(0)
		if p.callID == "before" {
			want = 2 * time.Second
		}
		if p.out.InputGap != want {
			t.Errorf("%v: inputGap = %v, want %v", p, p.out.InputGap, want)
		}
	}
	if st := h.eng.Stats(); st.Gaps != 1 || st.GapTime != 2*time.Second {
		t.Errorf("engine Stats() gaps = %d for %v, want 1 for 2s", st.Gaps, st.GapTime)
	}
}

// proxy forwards TCP connections to a server; cut closes them and refuses new ones
// until restore: a network cut between one client and the server, which the others do
// not see.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cutOff bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cutOff {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.cutOff = false
	p.mu.Unlock()
}

// TestE2EJetStreamCutOff: the engine is cut off from JetStream for 4 s while the
// pipeline stores one reply before its deadline and another after it. Once back, the
// backlog is applied in stored order, each delivery a mark at its stored time: the
// verdicts are those of live delivery. No false hang for the call answered in time;
// the call answered late hangs, then resolves; the unanswered call hangs once; no
// output carries an input gap. Real clock, short timeouts.
func TestE2EJetStreamCutOff(t *testing.T) {
	const timeout = 2 * time.Second
	srv := startJetStream(t)
	px := startProxy(t, listenOf(srv.Embedded))
	conn := connect(t, srv, ConnOptions{URL: px.URL()})
	js := jsClient(t, srv) // the pipeline, on its own path to the server
	src := newJSSource(t, conn, SourceOptions{ProbeEvery: 100 * time.Millisecond}, StreamOptions{}, ConsumerOptions{})
	rec := newRecorder()
	sink := &recordingSink{}
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = timeout, 0, 500*time.Millisecond
	eng := runEngine(t, &tapped{src, rec}, sink, engine.WithConfig(cfg))
	eventually(t, "live", src.Ready)

	t0 := time.Now()
	now := t0.UnixMilli()
	for _, call := range []string{"answered", "late", "silent"} {
		store(t, js, eventSubject(call, "conversation-update"), convUpdate(call, now, userTurn("user-1", now)))
	}
	eventually(t, "3 calls armed", func() bool { return eng.Stats().Armed == 3 })

	clients := srv.Server().NumClients()
	px.cut()
	cutAt := time.Now()
	// Both ends know: a message the server delivered to a connection it still thought
	// alive would be lost in flight, and only delivered again after the ack wait (see
	// TestJetStreamSourceLostDelivery).
	eventually(t, "cut off", func() bool { return !conn.NATS().IsConnected() && srv.Server().NumClients() < clients })
	store(t, js, eventSubject("answered", "conversation-update"),
		convUpdate("answered", time.Now().UnixMilli(), userTurn("user-1", now), replyTurn("user-1-r", time.Now().UnixMilli())))
	deadline := time.UnixMilli(now).Add(timeout)
	if time.Now().After(deadline.Add(-200 * time.Millisecond)) {
		t.Fatalf("the machine is too slow: the reply in time was stored %v after the turn", time.Since(t0))
	}
	time.Sleep(time.Until(deadline.Add(300 * time.Millisecond)))
	lateAt := time.Now().UnixMilli()
	store(t, js, eventSubject("late", "conversation-update"),
		convUpdate("late", lateAt, userTurn("user-1", now), replyTurn("user-1-r", lateAt)))
	time.Sleep(time.Until(cutAt.Add(4 * time.Second))) // the rest of the outage
	if outs := sink.all(); len(outs) != 0 {
		t.Fatalf("published %v while cut off", outs)
	}

	backAt := time.Now()
	px.restore()
	// Caught up with the present: a mark after the restore, then everything applied.
	rec.waitMark(t, 0, backAt)
	if err := eng.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("caught up %v after the cut ended", time.Since(backAt))
	outs := sink.all()
	want := []string{"hang late", "hang silent", "hang-resolved late"}
	if got := slices.Sorted(slices.Values(kinds(outs))); !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v; the source handed over:\n%s", outs, want, dump(rec.all()))
	}
	for i, p := range outs {
		if p.out.InputGap != 0 {
			t.Errorf("%v: an input gap in JetStream mode", p)
		}
		// Live, the late call's deadline fired before its reply arrived: so it does from
		// the backlog, the reply's delivery a mark at its stored time, after the deadline.
		if p.out.Kind == detector.KindHang && p.out.Late {
			t.Errorf("%v: a late hang, rebuilt from timestamps, where live delivery fires it before the reply", p)
		}
		if p.callID == "late" && p.out.Kind == detector.KindResolved && slices.IndexFunc(outs[:i], func(q published) bool { return q.callID == "late" }) < 0 {
			t.Errorf("the resolved of the late call came before its hang: %v", outs)
		}
	}
}
