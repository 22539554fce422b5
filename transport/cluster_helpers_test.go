package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/wire"
)

// A JetStream cluster of in-process servers, for the tests of groups.

type testCluster struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server // nil while stopped
}

// startCluster starts n servers as one JetStream cluster, each storing in a directory
// of the test's, and waits until JetStream has a leader and every server is current.
func startCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, opts: make([]*server.Options, n), servers: make([]*server.Server, n)}
	// Every server routes to every other, and starts again where it listened: the ports
	// are chosen first.
	ports := freePorts(t, 2*n)
	for i := range n {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1",
			Port:       ports[2*i],
			NoSigs:     true,
			NoLog:      true,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "hw", Host: "127.0.0.1", Port: ports[2*i+1]},
		}
		for j := range n {
			if j != i {
				c.opts[i].Routes = append(c.opts[i].Routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*j+1])})
			}
		}
	}
	for i := range n {
		srv, err := server.NewServer(c.opts[i])
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		c.servers[i] = srv
	}
	for i, srv := range c.servers {
		if !srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %d not ready", i)
		}
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.stop(i)
		}
	})
	c.waitCurrent()
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	srv, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(natstest.WaitFor) {
		c.t.Fatalf("server %d not ready", i)
	}
	c.servers[i] = srv
}

// stop shuts server i down, if it runs.
func (c *testCluster) stop(i int) {
	if srv := c.servers[i]; srv != nil {
		c.servers[i] = nil
		natstest.Stop(srv)
	}
}

// restart starts server i again, on its ports and store, and waits until it is current.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	c.start(i)
	c.waitCurrent()
}

// waitCurrent waits until JetStream has a meta leader and every running server is
// current with it.
func (c *testCluster) waitCurrent() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, current := false, true
		for _, srv := range c.servers {
			if srv == nil {
				continue
			}
			leader = leader || srv.JetStreamIsLeader()
			current = current && srv.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("JetStream cluster not formed after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// url returns the client URL of server i: a client connects there, and learns the
// others from it to reconnect to when it goes.
func (c *testCluster) url(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port) }

// addr returns the host:port of server i's clients.
func (c *testCluster) addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", c.opts[i].Port) }

// leaderOf returns the index of the server that leads stream name.
func (c *testCluster) leaderOf(name string) int {
	c.t.Helper()
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for i, srv := range c.servers {
			if srv != nil && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, name) {
				return i
			}
		}
	}
	c.t.Fatalf("stream %s has no leader", name)
	return -1
}

// client connects a plain client to urls, reconnecting quickly and forever.
func (c *testCluster) client(urls string) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// freePorts returns n ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], ports[i] = ln, ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// A member of a group, as cmd wires one: a GroupSource, the engine with package wire's
// decoder, and the JetStream sink.

// groupSetup is what the members of a test group share.
type groupSetup struct {
	ns           string // the namespace of the test's subjects and streams
	subject      string
	stream, hang string
	part         Partitioning
	sink         SinkOptions
	cfg          detector.Config
	log          *zap.Logger
	replicas     int
	// wrap, when set, wraps the sink the engine of a member publishes to.
	wrap func(member string, s engine.Sink) engine.Sink
}

func newGroupSetup(t testing.TB, ns string, partitions int) groupSetup {
	t.Helper()
	subject := ns + ".events.>"
	part, err := NewPartitioning(subject, partitions, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = time.Second, 0, 200*time.Millisecond
	return groupSetup{
		ns: ns, subject: subject, stream: strings.ToUpper(ns) + "_EVENTS", hang: strings.ToUpper(ns) + "_HANGS", part: part,
		sink: SinkOptions{
			HangSubject:       wire.MustParseSubjectTemplate(ns + ".out.hang.{teamId}.{callId}"),
			ResolvedSubject:   wire.MustParseSubjectTemplate(ns + ".out.hang-resolved.{teamId}.{callId}"),
			UnresolvedSubject: wire.MustParseSubjectTemplate(ns + ".out.hang-unresolved.{teamId}.{callId}"),
		},
		cfg:      cfg,
		log:      testLogger(t),
		replicas: 3,
	}
}

// testLogger logs to the test's output when HANGWATCH_TEST_LOG is set, and nowhere
// otherwise.
func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("HANGWATCH_TEST_LOG") == "" {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t)
}

type testMember struct {
	name   string
	conn   *Conn
	src    *GroupSource
	sink   *JetStreamSink
	eng    *engine.Engine
	cancel context.CancelFunc // stops the engine
	stopSk context.CancelFunc // makes the sink give up
	done   chan struct{}      // closed once everything the member ran returned
	err    error              // the engine's
}

// newMember starts a member connected to urls, and stops it gracefully when the test
// ends unless it was stopped or killed before.
func (gs groupSetup) newMember(t testing.TB, name, urls string) (*testMember, error) {
	log := gs.log.With(zap.String("member", name))
	conn, err := Connect(ConnOptions{URL: urls, Name: name, Logger: log})
	if err != nil {
		return nil, err
	}
	m := &testMember{name: name, conn: conn, done: make(chan struct{})}
	fail := func(err error) (*testMember, error) {
		conn.NATS().Close()
		return nil, fmt.Errorf("member %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m.src, err = NewGroupSource(ctx, conn, SourceOptions{Subjects: []string{gs.subject}, DrainTimeout: time.Second, Logger: log},
		StreamOptions{Name: gs.stream, Replicas: gs.replicas},
		GroupOptions{Name: "fleet", Partitioning: gs.part, ID: name, Settle: func(ctx context.Context) error {
			if err := m.eng.Sync(ctx); err != nil {
				return err
			}
			return m.sink.Flush(ctx)
		}})
	if err != nil {
		return fail(err)
	}
	if m.sink, err = NewJetStreamSink(ctx, conn, gs.sink, JetStreamSinkOptions{Stream: gs.hang, Replicas: gs.replicas, Logger: log}); err != nil {
		return fail(err)
	}
	var out engine.Sink = m.sink
	if gs.wrap != nil {
		out = gs.wrap(name, out)
	}
	if m.eng, err = engine.New(m.src, decoder, out, engine.WithConfig(gs.cfg), engine.WithShards(1), engine.WithDecoders(1),
		engine.WithLogger(log)); err != nil {
		return fail(err)
	}
	engCtx, engCancel := context.WithCancel(context.Background())
	sinkCtx, sinkCancel := context.WithCancel(context.Background())
	m.cancel, m.stopSk = engCancel, sinkCancel
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		_ = m.sink.Run(sinkCtx)
	}()
	go func() {
		defer close(m.done)
		m.err = m.eng.Run(engCtx)
		m.sink.Close()
		select {
		case <-sinkDone:
		case <-time.After(5 * time.Second):
			sinkCancel()
			<-sinkDone
		}
		if !m.conn.NATS().IsClosed() {
			lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Second)
			m.src.Leave(lctx)
			_ = m.conn.Close(lctx)
			lcancel()
		}
	}()
	t.Cleanup(m.stop)
	return m, nil
}

// stop stops the member as SIGTERM does: it drains, publishes what is due, stores its
// outputs, and leaves the group.
func (m *testMember) stop() {
	m.cancel()
	<-m.done
}

// kill stops the member as kill -9 does: its connection goes at once, with what it
// pulled unacknowledged and what it queued unpublished; nothing it does after reaches
// NATS.
func (m *testMember) kill() {
	m.conn.NATS().Close()
	m.stopSk()
	m.cancel()
	<-m.done
}

// A small simulated pipeline: calls that get their reply in time, calls that stall and
// then get it, and calls that stall and end unanswered.

type callKind uint8

const (
	callAnswered   callKind = iota // replied within the timeout: no output
	callResolved                   // stalls, then replied: hang, hang-resolved
	callUnresolved                 // stalls, then ends: hang, hang-unresolved
)

type simCall struct {
	id   string
	kind callKind
	// unsure: an answered call whose reply took so long to be stored (a stream without a
	// leader) that it may have come after the deadline: a hang is no error then.
	unsure bool
}

// traffic publishes calls into the events stream, as a pipeline would, retrying while
// the stream does not answer.
type traffic struct {
	t       testing.TB
	js      jetstream.JetStream
	ns      string
	timeout time.Duration

	mu    sync.Mutex
	calls []*simCall
	wg    sync.WaitGroup
}

func newTraffic(t testing.TB, nc *nats.Conn, gs groupSetup) *traffic {
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &traffic{t: t, js: js, ns: gs.ns, timeout: gs.cfg.Timeout}
}

// run starts a call every every, of each kind in turn, for d; it returns at once.
func (tr *traffic) run(ctx context.Context, d, every time.Duration) {
	tr.wg.Go(func() {
		end := time.Now().Add(d)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; time.Now().Before(end); i++ {
			c := &simCall{id: fmt.Sprintf("c%04d", i), kind: callKind(i % 3)}
			tr.mu.Lock()
			tr.calls = append(tr.calls, c)
			tr.mu.Unlock()
			tr.wg.Go(func() { tr.call(ctx, c) })
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// wait waits until every call has ended, and returns them.
func (tr *traffic) wait() []*simCall {
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.calls)
}

func (tr *traffic) call(ctx context.Context, c *simCall) {
	user := time.Now().UnixMilli()
	turns := []turn{userTurn("user-1", user)}
	tr.publish(ctx, c.id, "conversation-update", convUpdate(c.id, user, turns...))
	switch c.kind {
	case callAnswered:
		sleepCtx(ctx, 300*time.Millisecond)
		reply := time.Now().UnixMilli()
		turns = append(turns, replyTurn("user-1-r", reply))
		tr.publish(ctx, c.id, "conversation-update", convUpdate(c.id, reply, turns...))
		if time.Now().UnixMilli() >= user+tr.timeout.Milliseconds()-100 {
			tr.mu.Lock()
			c.unsure = true
			tr.mu.Unlock()
		}
	case callResolved:
		sleepCtx(ctx, tr.timeout+600*time.Millisecond)
		reply := time.Now().UnixMilli()
		turns = append(turns, replyTurn("user-1-r", reply))
		tr.publish(ctx, c.id, "conversation-update", convUpdate(c.id, reply, turns...))
	case callUnresolved:
		sleepCtx(ctx, tr.timeout+600*time.Millisecond)
	}
	sleepCtx(ctx, 200*time.Millisecond)
	// The report carries the call's history, as platforms send it.
	end := convUpdate(c.id, time.Now().UnixMilli(), turns...)
	end = bytes.Replace(end, []byte(`"type":"conversation-update"`), []byte(`"type":"end-of-call-report","endedReason":"customer-ended-call"`), 1)
	end = bytes.Replace(end, []byte(`"status":"ongoing"`), []byte(`"status":"ended"`), 1)
	tr.publish(ctx, c.id, "end-of-call-report", end)
}

func (tr *traffic) publish(ctx context.Context, call, typ string, data []byte) {
	subject := tr.ns + ".events." + call + "." + typ
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := tr.js.Publish(pctx, subject, data)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			return
		}
	}
}

// outputs collects what a plain subscriber of the outputs receives.
type outputs struct {
	mu  sync.Mutex
	got []received
}

type received struct {
	kind   string // hang, hang-resolved, hang-unresolved
	call   string
	msgID  string
	at     time.Time // received
	lateMs int64     // how late after its deadline a hang reached the subscriber
}

// subscribe subscribes a plain client to the outputs of gs.
func (gs groupSetup) subscribe(t testing.TB, nc *nats.Conn) *outputs {
	t.Helper()
	o := &outputs{}
	_, err := nc.Subscribe(gs.ns+".out.>", func(m *nats.Msg) {
		r := received{at: time.Now(), msgID: m.Header.Get(nats.MsgIdHdr)}
		tokens := strings.Split(m.Subject, ".")
		r.kind, r.call = tokens[2], tokens[len(tokens)-1]
		var body struct {
			Message struct {
				Timestamp int64 `json:"timestamp"`
				Hang      struct {
					WaitMs      int64 `json:"waitMs"`
					ThresholdMs int64 `json:"thresholdMs"`
				} `json:"hang"`
			} `json:"message"`
		}
		if err := json.Unmarshal(m.Data, &body); err == nil && r.kind == "hang" {
			// Detected waitMs after the stretch's anchor, whose deadline was thresholdMs
			// after it; then it took the time to the subscriber.
			detected := time.UnixMilli(body.Message.Timestamp)
			deadline := detected.Add(time.Duration(body.Message.Hang.ThresholdMs-body.Message.Hang.WaitMs) * time.Millisecond)
			r.lateMs = r.at.Sub(deadline).Milliseconds()
		}
		o.mu.Lock()
		o.got = append(o.got, r)
		o.mu.Unlock()
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *outputs) all() []received {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got)
}

// verdict is what a test group's run came to.
type verdict struct {
	missed, false_, duplicates []string
	unsure                     int
	lateMs                     []int64 // of every hang, sorted
}

// judge compares what the subscriber received with the calls.
func judge(calls []*simCall, got []received) verdict {
	var v verdict
	count := map[string]int{} // kind/call
	for _, r := range got {
		count[r.kind+"/"+r.call]++
		if r.kind == "hang" {
			v.lateMs = append(v.lateMs, r.lateMs)
		}
	}
	slices.Sort(v.lateMs)
	known := map[string]bool{}
	for _, c := range calls {
		want := map[string]int{}
		switch c.kind {
		case callResolved:
			want["hang"], want["hang-resolved"] = 1, 1
		case callUnresolved:
			want["hang"], want["hang-unresolved"] = 1, 1
		}
		if c.unsure {
			v.unsure++
		}
		for _, kind := range []string{"hang", "hang-resolved", "hang-unresolved"} {
			key := kind + "/" + c.id
			known[key] = true
			n := count[key]
			switch {
			case n > 1:
				v.duplicates = append(v.duplicates, fmt.Sprintf("%s ×%d", key, n))
			case c.unsure:
			case n < want[kind]:
				v.missed = append(v.missed, key)
			case n > want[kind]:
				v.false_ = append(v.false_, key)
			}
		}
	}
	for key := range count {
		if !known[key] {
			v.false_ = append(v.false_, key+" (no such call)")
		}
	}
	sort.Strings(v.false_)
	return v
}

// expected returns how many outputs the calls should give (the unsure aside).
func expected(calls []*simCall) int {
	n := 0
	for _, c := range calls {
		if c.kind != callAnswered {
			n += 2
		}
	}
	return n
}

// settle waits until the subscriber has every expected output, or for at most d, then
// for a quiet while, in which a duplicate would show.
func (o *outputs) settle(calls []*simCall, d time.Duration) {
	want := expected(calls)
	deadline := time.Now().Add(d)
	for len(o.all()) < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
}

func (v verdict) report(t testing.TB, what string, calls int) {
	t.Helper()
	var p50, worst int64
	if n := len(v.lateMs); n > 0 {
		p50, worst = v.lateMs[n/2], v.lateMs[n-1]
	}
	t.Logf("%s: %d calls, %d hangs, late by p50 %d ms, worst %d ms; %d unsure", what, calls, len(v.lateMs), p50, worst, v.unsure)
	if len(v.missed)+len(v.false_)+len(v.duplicates) > 0 {
		t.Errorf("%s: %d missed %v, %d false %v, %d duplicates %v", what, len(v.missed), v.missed, len(v.false_), v.false_,
			len(v.duplicates), v.duplicates)
	}
}

// sinkTotals sums what the members' sinks did.
func sinkTotals(ms ...*testMember) (duplicates, alreadyOut int64) {
	for _, m := range ms {
		st := m.sink.Stats()
		duplicates += st.Duplicates
		alreadyOut += st.AlreadyOut
	}
	return duplicates, alreadyOut
}

// owned returns how many partitions each member consumes live.
func owned(ms ...*testMember) []int {
	n := make([]int, len(ms))
	for i, m := range ms {
		n[i] = m.src.Owned()
	}
	return n
}

// waitBalanced waits until the members consume every partition between them, each its
// share.
func waitBalanced(t testing.TB, partitions int, ms ...*testMember) {
	t.Helper()
	share := (partitions + len(ms) - 1) / len(ms)
	deadline := time.Now().Add(20 * time.Second)
	for {
		total, fair := 0, true
		for _, n := range owned(ms...) {
			total += n
			fair = fair && n <= share && n > 0
		}
		if total == partitions && fair {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not balanced after 20s: %v", owned(ms...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
