package transport

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/natstest"
)

// TestJetStreamSourceIsolatedConsumerLeader: R3 events stream and durable (--replicas
// 3). The instance is connected to s2, which leads the durable but not the stream. s2 is
// cut off from s0 and s1 (its routes hang); the stream keeps its quorum on s0+s1, which
// store and acknowledge the pipeline's reply. s2 still believes it leads the durable,
// whose copy of the stream lacks the reply: nothing pending, every delivery received. A
// proof that trusted it would mark past the deadline, a false hang; the stream's leader,
// which a proof asks too (nextStored), is out of reach: nothing fires (SPEC §2).
func TestJetStreamSourceIsolatedConsumerLeader(t *testing.T) {
	testIsolatedConsumerLeader(t, DefaultDurable, func(conn *Conn) (engine.Source, func() bool, error) {
		src, err := NewJetStreamSource(testCtx(t), conn, SourceOptions{ProbeEvery: 100 * time.Millisecond, Logger: testLogger(t)},
			StreamOptions{Replicas: 3}, ConsumerOptions{})
		if err != nil {
			return nil, nil, err
		}
		return src, src.Ready, nil
	})
}

// TestGroupSourceIsolatedConsumerLeader: the same for one member of a group (one
// partition) on an R3 events stream with R3 partition consumers: s2 leads the
// partition's consumer but not the stream.
func TestGroupSourceIsolatedConsumerLeader(t *testing.T) {
	part, err := NewPartitioning("voice.events.>", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	// The partition's consumer exists once the member took the partition over.
	testIsolatedConsumerLeader(t, DefaultDurable+"-g-0", func(conn *Conn) (engine.Source, func() bool, error) {
		src, err := NewGroupSource(testCtx(t), conn, SourceOptions{Subjects: []string{"voice.events.>"}, ProbeEvery: 100 * time.Millisecond, Logger: testLogger(t)},
			StreamOptions{Replicas: 3}, GroupOptions{Name: "g", Partitioning: part, ID: "a"})
		if err != nil {
			return nil, nil, err
		}
		return src, func() bool { ok, _ := src.Ready(); return ok }, nil
	})
}

// testIsolatedConsumerLeader runs the scenario of the tests above for the source that
// newSource makes on a connection to s2, whose consumer is named consumer: a user turn,
// s2's routes frozen, the reply stored and acknowledged by s0 and s1 before the
// deadline; no hang may fire.
func testIsolatedConsumerLeader(t *testing.T, consumer string, newSource func(*Conn) (engine.Source, func() bool, error)) {
	c, freeze := startIsolableCluster(t)
	conn, err := Connect(ConnOptions{URL: c.url(2), Name: "isolated", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.NATS().Close() })
	var src engine.Source
	var ready func() bool
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		src, ready, err = newSource(conn)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	cfg := detector.DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.MaxLag = 2*time.Second, 0, 200*time.Millisecond
	runEngine(t, src, sink, engine.WithConfig(cfg))
	eventually(t, "live", ready)

	pub := c.client(c.url(0))
	isLeader := func(cons bool) int {
		for i, srv := range c.servers {
			if cons && srv.JetStreamIsConsumerLeader("$G", DefaultStream, consumer) ||
				!cons && srv.JetStreamIsStreamLeader("$G", DefaultStream) {
				return i
			}
		}
		return -1
	}
	for range 30 {
		sl, cl := isLeader(false), isLeader(true)
		if sl >= 0 && sl != 2 && cl == 2 {
			break
		}
		if sl == 2 {
			_, _ = pub.Request("$JS.API.STREAM.LEADER.STEPDOWN."+DefaultStream, nil, 2*time.Second)
		} else if cl != 2 {
			_, _ = pub.Request(fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", DefaultStream, consumer), nil, 2*time.Second)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("stream leader s%d, consumer %s's leader s%d", isLeader(false), consumer, isLeader(true))
	if isLeader(true) != 2 || isLeader(false) == 2 {
		t.Skip("could not place the leaders")
	}
	eventually(t, "live after the stepdowns", ready)

	js, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	user := time.Now().UnixMilli()
	if _, err := js.Publish(ctx, eventSubject("x", "conversation-update"), convUpdate("x", user, userTurn("user-1", user))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	freeze()
	reply := time.Now().UnixMilli()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ack, err := js.Publish(pctx, eventSubject("x", "conversation-update"), convUpdate("x", reply, userTurn("user-1", user), replyTurn("r-1", reply)))
	cancel()
	if err != nil {
		t.Fatalf("the stream (quorum on s0+s1) refused the reply: %v", err)
	}
	t.Logf("reply stored (seq %d) %d ms after the user turn, acknowledged by the stream", ack.Sequence, reply-user)
	time.Sleep(3 * time.Second) // the deadline is 2 s after the user turn
	outs := sink.all()
	t.Logf("outputs: %v", kinds(outs))
	for _, o := range outs {
		if o.out.Kind == detector.KindHang {
			t.Errorf("false hang %v: the reply was stored and acknowledged %d ms after the turn, before the deadline", o, reply-user)
		}
	}
}

// startIsolableCluster starts a 3-node JetStream cluster whose routes to and from s2 all
// go through proxies, and returns it with freeze, which hangs them and checks that s2 is
// cut off.
func startIsolableCluster(t *testing.T) (c *testCluster, freeze func()) {
	ports := freePorts(t, 6)
	client := func(i int) int { return ports[2*i] }
	route := func(i int) int { return ports[2*i+1] }
	var proxies []*natstest.Proxy
	proxied := func(j int) *url.URL {
		p := natstest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", route(j)))
		proxies = append(proxies, p)
		return &url.URL{Scheme: "nats", Host: p.URL()[len("nats://"):]}
	}
	c = &testCluster{t: t, opts: make([]*server.Options, 3), servers: make([]*server.Server, 3)}
	for i := range 3 {
		c.opts[i] = &server.Options{ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: client(i), NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "hw", Host: "127.0.0.1", Port: route(i), NoAdvertise: true}}
		for j := range 3 {
			if j == i {
				continue
			}
			if i == 2 || j == 2 {
				c.opts[i].Routes = append(c.opts[i].Routes, proxied(j))
			} else {
				c.opts[i].Routes = append(c.opts[i].Routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", route(j))})
			}
		}
	}
	// Routes to s2 that a server learns of from another go where s2 says it listens:
	// through a proxy too, or they would bypass the freeze.
	adv := natstest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", route(2)))
	proxies = append(proxies, adv)
	c.opts[2].Cluster.Advertise = adv.URL()[len("nats://"):]
	for i := range 3 {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, p := range proxies {
			p.Thaw()
		}
		for i := range 3 {
			c.stop(i)
		}
	})
	c.waitCurrent()
	pub := c.client(c.url(0))
	cut, err := c.client(c.url(2)).SubscribeSync("isolation.check")
	if err != nil {
		t.Fatal(err)
	}
	return c, func() {
		for _, p := range proxies {
			p.Freeze()
		}
		if err := pub.Publish("isolation.check", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := cut.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatal("s2 is not cut off: a route bypassed the proxies")
		}
	}
}
