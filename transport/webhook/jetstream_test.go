package webhook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/internal/natstest"
)

const (
	testStream = "HANGS"
	// childEnv, set, makes the test binary a deliverer (see TestMain), which reads
	// its NATS and receiver URLs from childNATS and childURL.
	childEnv  = "HANGWATCH_WEBHOOK_CHILD"
	childNATS = "HANGWATCH_WEBHOOK_CHILD_NATS"
	childURL  = "HANGWATCH_WEBHOOK_CHILD_URL"
)

var testSubjects = []string{"voice.hang.>", "voice.hang-resolved.>", "voice.hang-unresolved.>"}

// jsOptions are the options of every JetStream test, on the real clock with short
// waits: attempts time out after 2 s (only a receiver that hangs should reach it, even
// on a loaded machine), retries come after 50-200 ms, an output a dead deliverer held
// comes back after 3 s, a missing consumer is asked about after 1 s of silence.
func jsOptions(urls ...string) (Options, JetStreamOptions) {
	return Options{URLs: urls, Secret: testSecret, Timeout: 2 * time.Second, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		JetStreamOptions{Stream: testStream, Subjects: testSubjects, AckWait: 3 * time.Second, Heartbeat: 500 * time.Millisecond}
}

// hangStream starts a JetStream server with the hang stream and returns a client.
func hangStream(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t, natstest.Options{StoreDir: t.TempDir()})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: testStream, Subjects: testSubjects, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

// publishOutputs stores n outputs in the hang stream as the engine's sink does, with a
// Nats-Msg-Id, and returns their ids and payloads.
func publishOutputs(t *testing.T, js jetstream.JetStream, from, n int) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out := map[string][]byte{}
	for i := from; i < from+n; i++ {
		call := fmt.Sprintf("call-%d", i)
		msg := nats.NewMsg("voice.hang.team-1." + call)
		msg.Data = fmt.Appendf(nil, `{"message":{"type":"hang","call":{"id":%q,"teamId":"team-1"},"hang":{"reason":"turn-timeout"}}}`, call)
		id := call + ":user-1:hang"
		msg.Header.Set(nats.MsgIdHdr, id)
		msg.Header.Set("Content-Type", "application/json")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		out[id] = msg.Data
	}
	return out
}

// settled waits until the durable of url has nothing pending or unacknowledged.
func settled(t *testing.T, js jetstream.JetStream, url string) {
	t.Helper()
	waitUntil(t, "the consumer to settle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := js.Consumer(ctx, testStream, DurableName(DefaultDurablePrefix, url))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

func newJS(t *testing.T, js jetstream.JetStream, o Options, jo JetStreamOptions) *JetStreamDeliverer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	d, err := NewJetStream(ctx, js, o, jo)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Every output stored after the consumers exist reaches every URL, signed, and is
// acknowledged; one stored before the first start is not delivered.
func TestJetStreamDelivers(t *testing.T) {
	_, js := hangStream(t)
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	before := publishOutputs(t, js, 100, 1)
	o, jo := jsOptions(a.URL, b.URL)
	d := newJS(t, js, o, jo)
	run(t, d)
	want := publishOutputs(t, js, 0, 10)
	for _, r := range []*receiver{a, b} {
		waitUntil(t, "every output delivered", func() bool { return len(r.delivered()) == len(want) })
		for _, dl := range r.deliveries() {
			if _, ok := before[dl.id]; ok {
				t.Errorf("%s, stored before the consumer, was delivered", dl.id)
			}
			if string(dl.body) != string(want[dl.id]) {
				t.Errorf("%s: body %q, want the stored output", dl.id, dl.body)
			}
			if dl.verifyErr != nil {
				t.Errorf("%s: %v", dl.id, dl.verifyErr)
			}
		}
		settled(t, js, r.URL)
	}
	if st := d.Stats(); st.Outcomes[Delivered] != 20 {
		t.Errorf("stats %+v", st)
	}
}

// A failing URL is retried by the server's redelivery until it answers 2xx; a final
// refusal is terminated, not redelivered.
func TestJetStreamRetriesAndGivesUp(t *testing.T) {
	_, js := hangStream(t)
	flaky := newReceiver(t, func(_ string, try int) answer {
		if try <= 2 {
			return answer{status: 503, retryAfter: "0"}
		}
		return answer{status: 200}
	})
	refusing := newReceiver(t, func(string, int) answer { return answer{status: 410} })
	obs := make(observed, 100)
	o, jo := jsOptions(flaky.URL, refusing.URL)
	o.Observe = obs.observe
	run(t, newJS(t, js, o, jo))
	publishOutputs(t, js, 0, 1)

	waitUntil(t, "the flaky URL to get the output", func() bool { return len(flaky.delivered()) == 1 })
	settled(t, js, flaky.URL)
	settled(t, js, refusing.URL)
	var flakyTries, refusingTries []Outcome
	for len(flakyTries) < 3 || len(refusingTries) < 1 {
		a := obs.next(t)
		if a.URL == flaky.URL {
			flakyTries = append(flakyTries, a.Outcome)
		} else {
			refusingTries = append(refusingTries, a.Outcome)
		}
	}
	if fmt.Sprint(flakyTries) != "[retried retried delivered]" || fmt.Sprint(refusingTries) != "[gave-up]" {
		t.Errorf("attempts: flaky %v, refusing %v", flakyTries, refusingTries)
	}
	if n := len(refusing.deliveries()); n != 1 {
		t.Errorf("the refusing URL got %d requests, want 1", n)
	}
}

// TestJetStreamKill9 kills a deliverer (SIGKILL, another process) while it retries
// outputs, some of them in flight, then starts another: every output is delivered,
// none is lost.
func TestJetStreamKill9(t *testing.T) {
	natsURL, js := hangStream(t)
	inFlight := map[string]bool{"call-0:user-1:hang": true, "call-1:user-1:hang": true, "call-2:user-1:hang": true}
	r := newReceiver(t, func(id string, try int) answer {
		if try > 1 && inFlight[id] {
			return answer{hang: true} // in flight when the deliverer dies
		}
		return answer{status: 500} // retried: the server holds it for a while
	})
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", childNATS+"="+natsURL, childURL+"="+r.URL)
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("child: %q, %v", line, err)
	}

	const n = 20
	want := publishOutputs(t, js, 0, n)
	waitUntil(t, "every output to be retried", func() bool {
		tries := map[string]int{}
		for _, d := range r.deliveries() {
			tries[d.id]++
		}
		for id := range want {
			if tries[id] < 2 {
				return false
			}
		}
		return true
	})
	if err := child.Process.Kill(); err != nil { // SIGKILL: no ack, no nak, nothing
		t.Fatal(err)
	}
	_ = child.Wait()
	killed = true

	r.setScript(func(string, int) answer { return answer{status: 200} })
	o, jo := jsOptions(r.URL)
	run(t, newJS(t, js, o, jo))
	waitUntil(t, "every output delivered after the kill", func() bool { return len(r.delivered()) == n })
	got := r.delivered()
	for id := range want {
		if got[id] == 0 {
			t.Errorf("%s lost", id)
		}
	}
	settled(t, js, r.URL)
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("%d outputs delivered after a kill -9, %d twice", n, dups)
}

// runChild is the deliverer of TestJetStreamKill9: it runs until it is killed.
func runChild() int {
	nc, err := nats.Connect(os.Getenv(childNATS))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o, jo := jsOptions(os.Getenv(childURL))
	d, err := NewJetStream(context.Background(), js, o, jo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	if err := d.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return 1 // Run never returns on its own
}

func TestDurableName(t *testing.T) {
	a := DurableName(DefaultDurablePrefix, "https://hooks.example.com/hang?token=s3cret")
	b := DurableName(DefaultDurablePrefix, "https://hooks.example.com/hang?token=other")
	if a == b || a != DurableName(DefaultDurablePrefix, "https://hooks.example.com/hang?token=s3cret") {
		t.Errorf("names %q and %q: want stable and apart", a, b)
	}
	if strings.ContainsAny(a, ".*> /\\") || strings.Contains(a, "s3cret") || len(a) != len(DefaultDurablePrefix)+16 {
		t.Errorf("name %q", a)
	}
}

func TestNewJetStreamRefuses(t *testing.T) {
	_, js := hangStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	o, jo := jsOptions("http://127.0.0.1:1/hook")
	jo.Stream = "NOPE"
	if _, err := NewJetStream(ctx, js, o, jo); !errors.Is(err, ErrOptions) {
		t.Errorf("a missing stream: %v, want ErrOptions", err)
	}
	o, jo = jsOptions("http://127.0.0.1:1/hook")
	jo.AckWait = o.Timeout
	if _, err := NewJetStream(ctx, js, o, jo); !errors.Is(err, ErrOptions) {
		t.Errorf("an ack wait no longer than an attempt: %v, want ErrOptions", err)
	}
	for _, hb := range []time.Duration{100 * time.Millisecond, 20 * time.Second} {
		o, jo = jsOptions("http://127.0.0.1:1/hook")
		jo.Heartbeat = hb
		if _, err := NewJetStream(ctx, js, o, jo); !errors.Is(err, ErrOptions) {
			t.Errorf("a heartbeat of %v: %v, want ErrOptions", hb, err)
		}
	}
}

// Delivery goes on across a restart of the NATS server: the consumer is durable, and the
// iterator asks again once the client has reconnected.
func TestJetStreamServerRestart(t *testing.T) {
	store := t.TempDir()
	srv := natstest.Start(t, natstest.Options{StoreDir: store})
	port := natstest.Port(srv)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: testStream, Subjects: testSubjects}); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, nil)
	o, jo := jsOptions(r.URL)
	run(t, newJS(t, js, o, jo))
	publishOutputs(t, js, 0, 1)
	waitUntil(t, "the first output", func() bool { return len(r.delivered()) == 1 })

	natstest.Stop(srv)
	natstest.Start(t, natstest.Options{Port: port, StoreDir: store})
	waitUntil(t, "the reconnection", nc.IsConnected)
	// The restarted server recovers its streams in its own time: publish once the
	// stream answers, not before (on a busy machine that took over the publish's wait).
	waitUntil(t, "the stream back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, testStream)
		return err == nil
	})
	publishOutputs(t, js, 1, 1)
	waitUntil(t, "the output after the restart", func() bool { return len(r.delivered()) == 2 })
}

// A consumer deleted under a running deliverer stops its Run with an error that says so.
func TestJetStreamConsumerDeleted(t *testing.T) {
	_, js := hangStream(t)
	r := newReceiver(t, nil)
	o, jo := jsOptions(r.URL)
	d := newJS(t, js, o, jo)
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	publishOutputs(t, js, 0, 1)
	waitUntil(t, "the output", func() bool { return len(r.delivered()) == 1 })
	if err := js.DeleteConsumer(ctx, testStream, DurableName(DefaultDurablePrefix, r.URL)); err != nil {
		t.Fatal(err)
	}
	if err := runEnd(t, done); err == nil || !strings.Contains(err.Error(), "consumer stopped") {
		t.Errorf("Run = %v, want the consumer stopped", err)
	}
}

// runEnd returns the error of a Run that done reports, which must end within waitFor.
func runEnd(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitFor):
		t.Fatal("Run goes on without its consumer")
		return nil
	}
}

// A consumer deleted before the first pull request reaches it (an operator's mistake
// right after the start; CI caught it in the sidecar's /readyz test) stops Run too: the
// server answers no such request, so the deliverer asks whether its consumer exists
// once the heartbeats stop.
func TestJetStreamConsumerDeletedBeforeRun(t *testing.T) {
	_, js := hangStream(t)
	r := newReceiver(t, nil)
	o, jo := jsOptions(r.URL)
	d := newJS(t, js, o, jo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := js.DeleteConsumer(ctx, testStream, DurableName(DefaultDurablePrefix, r.URL)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	if err := runEnd(t, done); !errors.Is(err, jetstream.ErrConsumerNotFound) || !strings.Contains(err.Error(), "consumer stopped") {
		t.Errorf("Run = %v, want the consumer stopped, not found", err)
	}
}

// gone needs the server to say twice, a heartbeat apart, that the consumer does not
// exist: a consumer back by the second question (a cluster's meta layer catching up) is
// not given up.
func TestJetStreamConsumerGoneAsksTwice(t *testing.T) {
	_, js := hangStream(t)
	r := newReceiver(t, nil)
	o, jo := jsOptions(r.URL)
	d := newJS(t, js, o, jo)
	ep := d.eps[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if ep.gone(ctx, 500*time.Millisecond) {
		t.Fatal("gone while the consumer exists")
	}
	name := DurableName(DefaultDurablePrefix, r.URL)
	cfg, err := ep.consumer.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, testStream, name); err != nil {
		t.Fatal(err)
	}
	// Back half a second after the deletion, before the second question at 2 s.
	back := make(chan error, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		_, err := js.CreateOrUpdateConsumer(ctx, testStream, cfg.Config)
		back <- err
	}()
	if ep.gone(ctx, 2*time.Second) {
		t.Error("gone although the consumer was back before the second question")
	}
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, testStream, name); err != nil {
		t.Fatal(err)
	}
	if !ep.gone(ctx, 500*time.Millisecond) {
		t.Error("not gone after the deletion")
	}
}
