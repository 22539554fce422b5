package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/transport"
)

// jsBroker is a NATS server with JetStream that outlives the hangwatch processes of a
// test, and a client of it.
type jsBroker struct {
	t   *testing.T
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newJSBroker(t *testing.T) *jsBroker {
	t.Helper()
	srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &jsBroker{t: t, url: srv.ClientURL(), nc: nc, js: js}
}

// start runs `hangwatch run --jetstream` against the broker with a 2 s turn timeout.
func (b *jsBroker) start() *process {
	b.t.Helper()
	p := startBinary(b.t, "run", "--nats-url", b.url, "--jetstream", "--timeout", "2s", "--max-wait", "0",
		"--metrics-listen", "", "--log-level", "debug")
	p.waitLog(b.t, "consuming live")
	return p
}

// publish stores an event in the events stream and returns its sequence.
func (b *jsBroker) publish(subject string, data []byte) uint64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ack, err := b.js.Publish(ctx, subject, data)
	if err != nil {
		b.t.Fatal(err)
	}
	return ack.Sequence
}

// applied waits until the running hangwatch has acknowledged the event at seq: the
// engine has applied it.
func (b *jsBroker) applied(seq uint64) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		c, err := b.js.Consumer(ctx, transport.DefaultStream, transport.DefaultDurable)
		if err == nil {
			if info, err := c.Info(ctx); err == nil && info.AckFloor.Stream >= seq {
				return
			}
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("event %d never acknowledged", seq)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// fullHangStream creates the hang stream as hangwatch would, but holding one message at
// most and refusing new ones, and fills it: every output is refused.
func (b *jsBroker) fullHangStream(ctx context.Context) jetstream.Stream {
	b.t.Helper()
	cfg := transport.HangStreamConfig(transport.DefaultHangStream, transport.SinkOptions{}.Wildcards(), transport.JetStreamSinkOptions{})
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	s, err := b.js.CreateStream(ctx, cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.js.Publish(ctx, transport.StorePrefix+".voice.hang.x.y", []byte("{}")); err != nil {
		b.t.Fatal(err)
	}
	return s
}

// subscribe subscribes a plain core NATS client to subject.
func (b *jsBroker) subscribe(subject string) *nats.Subscription {
	b.t.Helper()
	sub, err := b.nc.SubscribeSync(subject)
	if err == nil {
		err = b.nc.Flush()
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return sub
}

// hangs returns the outputs stored in the hang stream.
func (b *jsBroker) hangs() []*nats.Msg {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := b.js.Stream(ctx, transport.DefaultHangStream)
	if err != nil {
		b.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// TestBinaryKillRestartJetStream kills hangwatch with SIGKILL before two stalls reach
// their deadlines, answers one of them while it is down, and restarts it after the
// deadlines: the unanswered stall hangs once, soon after the restart, and the answered
// one does not.
func TestBinaryKillRestartJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary in real time")
	}
	t.Parallel()
	b := newJSBroker(t)
	sub := b.subscribe("voice.hang.>")
	p := b.start()
	b.publish("voice.events.stalled.conversation-update", turnEvent("stalled", "user-1"))
	b.applied(b.publish("voice.events.answered.conversation-update", turnEvent("answered", "user-1")))
	if code := p.stop(t, syscall.SIGKILL); code != -1 {
		t.Logf("exit code after SIGKILL: %d", code)
	}
	b.publish("voice.events.answered.conversation-update", turnEvent("answered", "user-1", "reply-1"))
	time.Sleep(2500 * time.Millisecond) // both deadlines pass while hangwatch is down

	restarted := time.Now()
	p = b.start()
	m, err := sub.NextMsg(waitFor)
	if err != nil {
		t.Fatalf("no hang after the restart: %v\n%s", err, p.stderr)
	}
	if d := time.Since(restarted); d > 2*time.Second {
		t.Errorf("hang %v after the restart, want it at once", d)
	}
	if m.Subject != "voice.hang.team-1.stalled" || m.Header.Get("Nats-Msg-Id") != "stalled:user-1:hang" {
		t.Errorf("hang %s %q, want the stalled call's", m.Subject, m.Header.Get("Nats-Msg-Id"))
	}
	if m, err := sub.NextMsg(time.Second); err == nil {
		t.Errorf("a second hang: %s %s", m.Subject, m.Data)
	}
	if got := b.hangs(); len(got) != 1 {
		t.Errorf("hang stream holds %d outputs, want 1", len(got))
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
	}
}

// TestBinaryKillAfterHangJetStream kills hangwatch right after it published a hang and
// restarts it: the restarted process detects the stall again, and yet the hang stream
// holds it once, and a plain subscriber of the hang subjects receives it once (the
// stream republishes what it stores, once).
func TestBinaryKillAfterHangJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary in real time")
	}
	t.Parallel()
	b := newJSBroker(t)
	sub := b.subscribe("voice.hang.>")
	p := b.start()
	b.applied(b.publish("voice.events.stalled.conversation-update", turnEvent("stalled", "user-1")))
	deadline := time.Now().Add(waitFor)
	for len(b.hangs()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no hang stored:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop(t, syscall.SIGKILL)

	p = b.start()
	// The replayed stall is past its deadline: the new process detects it at once, and
	// the sink finds it in the stream (or the stream drops it as a duplicate).
	p.waitFor(t, `"msg":"hang","call_id":"stalled"`)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
	}
	if got := b.hangs(); len(got) != 1 {
		var subjects []string
		for _, m := range got {
			subjects = append(subjects, fmt.Sprintf("%s %s", m.Subject, m.Header.Get("Nats-Msg-Id")))
		}
		t.Errorf("hang stream holds %d outputs, want 1: %v", len(got), subjects)
	}
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sub.Pending(); n != 1 {
		t.Errorf("a plain subscriber of voice.hang.> received %d hangs, want 1", n)
	}
}

// TestJetStreamShutdownWhenTheHangStreamRefuses: the hang stream takes no output (it
// is full and discards new ones), so the sink retries the first hang forever, its queue
// fills, and a shard waits for room. SIGTERM must still end the sidecar, at the drain
// timeout, reporting the outputs it gave up on.
func TestJetStreamShutdownWhenTheHangStreamRefuses(t *testing.T) {
	b := newJSBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s := b.fullHangStream(ctx)
	h := startTestSidecar(t, zap.InfoLevel, "--nats-url", b.url, "--jetstream", "--hang-queue", "1",
		"--hang-window", "1", "--timeout", "1s", "--max-lag", "500ms", "--max-wait", "0", "--drain-timeout", "1s", "--shards", "1")
	calls := []string{"a", "b", "c", "d", "e"}
	for _, id := range calls {
		b.publish("voice.events."+id+".conversation-update", h.event(id, "Hello?", "user-1"))
	}
	h.until(func() bool { return h.sc.engine.Stats().Calls == int64(len(calls)) }, "the calls applied")
	// Five hangs: one retried, one awaiting its ack, one waiting for the window, one
	// queued, and one waiting for room in the queue.
	h.clock.Advance(2 * time.Second)
	h.until(func() bool { st := h.sc.stats.Sink(); return st.QueueWaits > 0 && st.Errors > 0 }, "a refusal, and a shard waiting for room")
	fams := h.scrape()
	if v := value(t, fams, "hangwatch_hang_publish_errors_total"); v < 1 {
		t.Errorf("hangwatch_hang_publish_errors_total = %v, want the refused attempts", v)
	}
	if v := value(t, fams, "hangwatch_hang_publish_queue"); v != 1 {
		t.Errorf("hangwatch_hang_publish_queue = %v, want the 1 output that fills the queue", v)
	}
	if v := value(t, fams, "hangwatch_events_received_total", "type", "conversation-update"); v != 5 {
		t.Errorf("hangwatch_events_received_total{type=conversation-update} = %v, want the 5 events", v)
	}
	begin := time.Now()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "not published") {
			t.Errorf("run() = %v, want an error about the outputs not published", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the sidecar did not stop")
	}
	// One deadline for the whole shutdown: not a drain timeout per step.
	if d := time.Since(begin); d < time.Second || d > 1900*time.Millisecond {
		t.Errorf("stopped after %v, want the drain timeout, 1s, and not much more", d)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("hang stream holds %v messages (%v), want the 1 it had", info.State.Msgs, err)
	}
}

// TestBinarySecondSignalExitsAtOnce: the hang stream refuses the hang, so the drain of
// the first SIGTERM waits out its 5-minute timeout; a second SIGTERM ends the process at
// once, with exit code 1 since the hang was not published.
func TestBinarySecondSignalExitsAtOnce(t *testing.T) {
	b := newJSBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b.fullHangStream(ctx)
	p := startBinary(t, "run", "--nats-url", b.url, "--jetstream", "--timeout", "1s", "--max-lag", "500ms", "--max-wait", "0",
		"--metrics-listen", "", "--drain-timeout", "5m")
	p.waitLog(t, "consuming live")
	b.publish("voice.events.a.conversation-update", turnEvent("a", "user-1"))
	p.waitLog(t, "publish to the hang stream: retrying")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "shutting down: draining, a second signal exits at once")
	select {
	case <-p.done:
		t.Fatalf("exited on the first signal, before the drain timeout:\n%s", p.stderr)
	case <-time.After(200 * time.Millisecond):
	}
	if code := p.stop(t, syscall.SIGTERM); code != exitError {
		t.Errorf("exit code after the second SIGTERM = %d, want %d\n%s", code, exitError, p.stderr)
	}
}
