package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/wire"
)

// FuzzHandler sends random bodies through the handler, publishing to a real NATS
// server: it never panics, never answers a 5xx but 503 (and, with NATS up, not that
// either), answers 202 exactly for what wire accepts, and publishes what it accepts
// unchanged.
func FuzzHandler(f *testing.F) {
	for _, name := range fixtures.WebhookNames() {
		f.Add(fixtures.Webhook(name))
	}
	for _, name := range fixtures.VapiNames() {
		f.Add(fixtures.Vapi(name))
	}
	f.Add([]byte(`{"message":{"type":"status-update","call":{"id":7}}}`))
	f.Add([]byte(`{"message":{"type":"x.y","call":{"id":"a b"},"messages":[{"role":"user","text":1}]}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	f.Add([]byte{})

	srv := natstest.Start(f, natstest.Options{})
	nc := natstest.Connect(f, srv, nats.InProcessServer(srv)) // no TCP: a round trip per exec
	sub := make(chan []byte, 1)
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { sub <- m.Data }); err != nil {
		f.Fatal(err)
	}
	lim := wire.Limits{MaxBytes: 64 << 10, MaxDepth: 32}
	s, err := New(nc, Options{Limits: lim, DeadLetter: "dead.letters"})
	if err != nil {
		f.Fatal(err)
	}
	var ev detector.Event
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, PathEvents, bytes.NewReader(body)))
		code := w.Code
		if code >= 500 {
			t.Fatalf("answer %d to %q", code, body)
		}
		accepted := wire.Decode(&ev, bytes.Clone(body), lim) == nil
		switch {
		case accepted && code != http.StatusAccepted:
			t.Fatalf("wire accepts %q, the server answers %d %s", body, code, w.Body)
		case !accepted && code == http.StatusAccepted:
			t.Fatalf("wire refuses %q, the server answers 202", body)
		case !accepted && code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge:
			t.Fatalf("bad input %q answered %d", body, code)
		}
		if code == http.StatusRequestEntityTooLarge {
			return // not read whole, so not dead-lettered
		}
		// The event, or its dead letter, was published before the answer.
		select {
		case got := <-sub:
			if !bytes.Equal(got, body) {
				t.Fatalf("published %q, want %q", got, body)
			}
		case <-time.After(waitFor):
			t.Fatalf("answer %d, and nothing published", code)
		}
	})
}
