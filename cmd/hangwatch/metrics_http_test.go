package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/transport/ingest"
	"github.com/hangwatch/hangwatch/transport/webhook"
	"github.com/hangwatch/hangwatch/wire"
)

// gather registers c in a pedantic registry and returns its series as name{labels} →
// value (a histogram: its sample count).
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestIngestCollector(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	s, err := ingest.New(nc, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"message":{"type":"status-update","call":{"id":"c1"}}}`, `{`} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, ingest.PathEvents, strings.NewReader(body)))
	}
	got := gather(t, ingestCollector{s})
	for key, want := range map[string]float64{
		"hangwatch_http_ingest_requests_total{code=202}":          1,
		"hangwatch_http_ingest_requests_total{code=400}":          1,
		"hangwatch_http_ingest_requests_total{code=503}":          0,
		"hangwatch_http_ingest_bad_input_total{reason=not-json}":  1,
		"hangwatch_http_ingest_bad_input_total{reason=too-large}": 0,
		"hangwatch_http_ingest_dead_letters_total{}":              0,
		"hangwatch_http_ingest_publish_errors_total{}":            0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", key, v, ok, want)
		}
	}
	bad := 0
	for key := range got {
		if strings.HasPrefix(key, "hangwatch_http_ingest_bad_input_total") {
			bad++
		}
	}
	if bad != len(wire.Rejections()) {
		t.Errorf("%d bad-input series, want one per reason", bad)
	}
}

func TestDeliverMetrics(t *testing.T) {
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer recv.Close()
	c := newCommand("run", "")
	o := deliverFlags(c.fs)
	if err := c.parse([]string{"--deliver-url", recv.URL, "--deliver-secret", testDeliverSecret}, noEnv); err != nil {
		t.Fatal(err)
	}
	m := newDeliverMetrics()
	d, err := o.core(zap.NewNop(), m.observe)
	if err != nil {
		t.Fatal(err)
	}
	m.stats = d.Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	deadline := time.Now().Add(10 * time.Second)
	for d.Stats().Outcomes[webhook.Delivered] == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := gather(t, m)
	for key, want := range map[string]float64{
		"hangwatch_webhook_deliveries_total{outcome=delivered}": 1,
		"hangwatch_webhook_deliveries_total{outcome=retried}":   0,
		"hangwatch_webhook_deliveries_total{outcome=gave-up}":   0,
		"hangwatch_webhook_delivery_seconds{}":                  1,
		"hangwatch_webhook_held{}":                              0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", key, v, ok, want)
		}
	}
}
