package transport

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/wire"
)

// TestJetStreamSinkOneTokenSubject: the hang stream republishes
// hangwatch.out.<first token>.<rest>, so an output subject of one token ("hangs") would
// be stored and never reach a subscriber (a rule for one token would be a cycle, which
// the server refuses): the sink refuses it, saying why and what to use.
func TestJetStreamSinkOneTokenSubject(t *testing.T) {
	srv := startJetStream(t)
	for _, tmpl := range []string{"hangs", "{callId}"} {
		o := SinkOptions{ResolvedSubject: wire.MustParseSubjectTemplate(tmpl)}
		_, err := NewJetStreamSink(testCtx(t), connect(t, srv, ConnOptions{}), o, JetStreamSinkOptions{})
		if !errors.Is(err, ErrJetStream) || !strings.Contains(err.Error(), "at least two tokens") {
			t.Errorf("NewJetStreamSink with an output subject %q: %v, want a refusal that says why", tmpl, err)
		}
	}
}

// TestJetStreamSourceRestartAfterCrash: README (JetStream mode): "a stall whose deadline
// passed while it was down is reported at once". After a crash (kill -9) the durable
// has deliveries that were never acknowledged; the replay covers them (they were stored
// before it began), so the restarted source marks at once, rather than after their
// redelivery (the ack wait, 30 s by default).
func TestJetStreamSourceRestartAfterCrash(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	first := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "crashed"})
	stop, _ := run(t, first, newRecorder())
	eventually(t, "live", first.Ready)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The crashed process: it was handed c1's user turn and died before applying it.
	now := time.Now().UnixMilli()
	store(t, js, eventSubject("c1", "conversation-update"), convUpdate("c1", now, userTurn("user-1", now)))
	cons, err := js.Consumer(testCtx(t), DefaultStream, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // received, never acknowledged
	}
	if info := consumerInfo(t, js, DefaultStream, "crashed"); info.NumAckPending != 1 {
		t.Fatalf("ack pending %d, want 1", info.NumAckPending)
	}

	restarted := newJSSource(t, conn, SourceOptions{}, StreamOptions{}, ConsumerOptions{Durable: "crashed"})
	rec := newRecorder()
	run(t, restarted, rec)
	eventually(t, "live", restarted.Ready)
	es := rec.all()
	if len(messages(es)) != 1 {
		t.Fatalf("the replay did not hand c1's turn over: %v", es)
	}
	from := len(es)
	asked := time.Now()
	deadline := asked.Add(5 * time.Second) // the ack wait is 30 s
	for time.Now().Before(deadline) {
		restarted.Probe()
		for _, e := range rec.all()[from:] {
			if e.kind == kindMark && !e.at.Before(asked) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no mark within 5 s of the restart's replay (ack wait 30 s): every deadline held until the server redelivers the unacknowledged event; entries: %v", rec.all()[from:])
}

// TestSourceRefusedSubscription: a user that may not subscribe to --subject (a
// credentials mistake) would receive no events at all and look healthy: the server's
// refusal ends the source with an error that names the subject and the cause.
func TestSourceRefusedSubscription(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "hw", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}, Deny: []string{"voice.>"}},
		}}}}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(waitFor) {
		t.Fatal("server not ready")
	}
	conn, err := Connect(ConnOptions{URL: ns.ClientURL(), User: "hw", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = conn.Close(ctx)
	})
	src := NewSource(conn, SourceOptions{ProbeEvery: 50 * time.Millisecond})
	_, done := run(t, src, newRecorder())
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), DefaultSubject) {
			t.Errorf("Run: %v, want a permissions violation naming %s", err, DefaultSubject)
		}
	case <-time.After(waitFor):
		t.Fatalf("the source still runs (ready %v), though the server refused its subscription", src.Ready())
	}
	if src.Ready() {
		t.Error("the source is ready after a refused subscription")
	}
}
