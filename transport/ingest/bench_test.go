package ingest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/internal/fixtures"
	"github.com/hangwatch/hangwatch/internal/natstest"
)

// BenchmarkHandler is one POST /events through the handler, answered 202 once NATS has
// the event: core NATS (a flush round trip per request) and JetStream (a stored ack),
// with in-process connections. It measures the server's own cost; a real request adds
// the network and net/http's parsing.
func BenchmarkHandler(b *testing.B) {
	body := fixtures.Vapi("07-conversation-update-user-2.json")
	for _, mode := range []string{"core", "jetstream"} {
		b.Run("mode="+mode, func(b *testing.B) {
			store := ""
			if mode == "jetstream" {
				store = b.TempDir()
			}
			srv := natstest.Start(b, natstest.Options{StoreDir: store})
			nc := natstest.Connect(b, srv, nats.InProcessServer(srv))
			o := Options{}
			if mode == "jetstream" {
				js, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
					Name: "EVENTS", Subjects: []string{"voice.events.>"}, MaxMsgsPerSubject: 1,
				}); err != nil {
					b.Fatal(err)
				}
				o.JetStream = js
			}
			s, err := New(nc, o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, PathEvents, bytes.NewReader(body)))
				if w.Code != http.StatusAccepted {
					b.Fatalf("answer %d", w.Code)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
