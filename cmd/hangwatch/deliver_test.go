package main

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/transport/webhook"
)

const testDeliverSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestDeliverFlags(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		give     []string
		wantErr  string
		wantURLs int
	}{
		{name: "off", give: nil},
		{name: "one URL", give: []string{"--deliver-url", "https://hooks.example.com/hang", "--deliver-secret", testDeliverSecret}, wantURLs: 1},
		{name: "repeated", give: []string{"--deliver-url", "https://a.example.com", "--deliver-url", "https://b.example.com", "--deliver-secret", testDeliverSecret}, wantURLs: 2},
		{name: "from the environment", env: map[string]string{"HANGWATCH_DELIVER_URL": "https://a.example.com,https://b.example.com", "HANGWATCH_DELIVER_SECRET": testDeliverSecret}, wantURLs: 2},
		{name: "no secret", give: []string{"--deliver-url", "https://a.example.com"}, wantErr: "needs --deliver-secret"},
		{name: "a secret not base64", give: []string{"--deliver-url", "https://a.example.com", "--deliver-secret", "whsec_n0t-base64!"}, wantErr: "secret"},
		{name: "not a URL", give: []string{"--deliver-url", "hooks.example.com", "--deliver-secret", testDeliverSecret}, wantErr: "want http:// or https://"},
		{name: "zero timeout", give: []string{"--deliver-url", "https://a.example.com", "--deliver-secret", testDeliverSecret, "--deliver-timeout", "0s"}, wantErr: "above 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCommand("run", "")
			o := deliverFlags(c.fs)
			if err := c.parse(tt.give, lookupIn(tt.env)); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate = %v, want %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "n0t-base64") {
				t.Errorf("the error %v shows the secret", err)
			}
			if err == nil && len(o.urls.values) != tt.wantURLs {
				t.Errorf("URLs %v, want %d", o.urls.values, tt.wantURLs)
			}
		})
	}
}

// The deliverers the flags build deliver, in both modes.
func TestDeliverers(t *testing.T) {
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("webhook-id")
	}))
	defer recv.Close()
	c := newCommand("run", "")
	o := deliverFlags(c.fs)
	if err := c.parse([]string{"--deliver-url", recv.URL, "--deliver-secret", testDeliverSecret}, noEnv); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	core, err := o.core(zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- core.Run(ctx) }()
	core.Deliver("c1:user-1:hang", []byte(`{}`))
	if id := <-got; id != "c1:user-1:hang" {
		t.Errorf("core: webhook-id %q", id)
	}

	srv := natstest.Start(t, natstest.Options{StoreDir: t.TempDir()})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HANGS", Subjects: []string{"voice.hang.>"}}); err != nil {
		t.Fatal(err)
	}
	jsd, err := o.jetStream(ctx, nc, "HANGS", []string{"voice.hang.>"}, zap.NewNop(), func(webhook.Attempt) {})
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- jsd.Run(ctx) }()
	if _, err := js.Publish(ctx, "voice.hang.t.c2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-got:
		if !strings.HasPrefix(id, "HANGS:") { // no Nats-Msg-Id: named by its place in the stream
			t.Errorf("jetstream: webhook-id %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("jetstream: nothing delivered")
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

// TestReadyzWhenDeliveryStops: with --jetstream, each --deliver-url reads the hang stream
// through a durable consumer; deleted under it (an operator's mistake), nothing more is
// delivered, and /readyz says so instead of answering 200.
func TestReadyzWhenDeliveryStops(t *testing.T) {
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer recv.Close()
	b := newJSBroker(t)
	h := startTestSidecar(t, zap.InfoLevel, "--nats-url", b.url, "--jetstream",
		"--deliver-url", recv.URL, "--deliver-secret", testDeliverSecret)
	if code, body := h.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q before the consumer is deleted", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	durable := webhook.DurableName(webhook.DefaultDurablePrefix, recv.URL)
	// Deleted under a waiting pull request, as an operator would: the server says so at
	// once. (One deleted before the first request reached it is found after missed
	// heartbeats: TestJetStreamConsumerDeletedBeforeRun in transport/webhook.)
	h.until(func() bool {
		c, err := b.js.Consumer(ctx, transport.DefaultHangStream, durable)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting > 0
	}, "the delivery's pull request")
	if err := b.js.DeleteConsumer(ctx, transport.DefaultHangStream, durable); err != nil {
		t.Fatal(err)
	}
	h.until(func() bool { code, _ := h.get("/readyz"); return code == http.StatusServiceUnavailable }, "/readyz 503")
	if _, body := h.get("/readyz"); !strings.Contains(body, "webhook delivery stopped") {
		t.Errorf("/readyz says %q, want why", body)
	}
}

// TestDeliverCallIDWithControlCharacters pins that an output of a call whose id holds a
// control character reaches the webhook (SPEC §1: any JSON string is a call id; §3: each
// URL gets each output): its webhook-id, the Nats-Msg-Id, is percent-encoded into a
// valid header value, which net/http sends and NATS carries unchanged, so the webhook-id
// equals the Nats-Msg-Id a subscriber sees. Before, net/http refused the header on every
// attempt until --deliver-max-age.
func TestDeliverCallIDWithControlCharacters(t *testing.T) {
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("webhook-id")
	}))
	defer recv.Close()
	h := startTestSidecar(t, zap.InfoLevel, "--deliver-url", recv.URL, "--deliver-secret", testDeliverSecret)
	sub, err := h.client.SubscribeSync("voice.hang.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.client.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"plain-call", "call\nE"} {
		h.send(h.event(id, "hello", "user-1"))
	}
	h.advance(5 * time.Second)
	want := map[string]bool{"plain-call:user-1:hang": true, "call%0AE:user-1:hang": true}
	onNATS := map[string]bool{}
	for range want {
		m, err := sub.NextMsg(waitFor)
		if err != nil {
			t.Fatalf("hangs on NATS: got Nats-Msg-Ids %q, then %v", slices.Sorted(maps.Keys(onNATS)), err)
		}
		onNATS[m.Header.Get("Nats-Msg-Id")] = true
	}
	if !maps.Equal(onNATS, want) {
		t.Errorf("Nats-Msg-Ids %q, want %q", slices.Sorted(maps.Keys(onNATS)), slices.Sorted(maps.Keys(want)))
	}
	delivered := map[string]bool{}
	deadline := time.After(waitFor)
	for len(delivered) < len(want) {
		select {
		case id := <-got:
			delivered[id] = true
		case <-deadline:
			t.Fatalf("webhook deliveries: got ids %q, want one for each of the 2 hung calls", slices.Sorted(maps.Keys(delivered)))
		}
	}
	if !maps.Equal(delivered, want) {
		t.Errorf("webhook-ids %q, want the Nats-Msg-Ids %q", slices.Sorted(maps.Keys(delivered)), slices.Sorted(maps.Keys(want)))
	}
}

// TestShutdownWithWebhookDownExitsClean pins that a shutdown in core mode with a webhook
// receiver that is down exits 0 (SPEC §4): the wait for the held deliveries uses the
// whole --drain-timeout up, and the NATS connection, flushed and closed before it, is not
// left an expired deadline to close with. What is still held is lost, with a warning.
func TestShutdownWithWebhookDownExitsClean(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := down.URL
	down.Close()
	h := startTestSidecar(t, zap.InfoLevel, "--drain-timeout", "1s",
		"--deliver-url", url, "--deliver-secret", testDeliverSecret)
	h.send(h.event("call-1", "hello", "user-1"))
	h.advance(5 * time.Second)
	h.until(func() bool { return h.sc.engine.Stats().Hangs() == 1 }, "the hang")
	h.until(func() bool { return h.sc.delivering.Stats().Held == 1 }, "the hang held for a retry")
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		t.Errorf("sidecar run() = %v after SIGTERM, want nil (exit 0)", err)
	}
	if n := h.logs.FilterMessageSnippet("webhook deliveries pending").Len(); n != 1 {
		t.Errorf("%d warnings that deliveries were pending at the deadline, want 1", n)
	}
}
