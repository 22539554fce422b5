package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	zapobserver "go.uber.org/zap/zaptest/observer"
)

// testSidecar is `hangwatch run` wired in process on a fake clock, with its embedded
// server on a free port and its logs recorded.
type testSidecar struct {
	t      *testing.T
	sc     *sidecar
	clock  *clockwork.FakeClock
	logs   *zapobserver.ObservedLogs
	client *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func startTestSidecar(t *testing.T, level zapcore.Level, args ...string) *testSidecar {
	t.Helper()
	c := newCommand("run", "")
	o := sidecarFlags(c)
	args = append([]string{"--embedded-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, args...)
	if err := c.parse(args, noEnv); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := zapobserver.New(level)
	h := &testSidecar{t: t, clock: clockwork.NewFakeClockAt(time.UnixMilli(1_763_647_331_000)), logs: logs, done: make(chan error, 1)}
	sc, err := startSidecar(o, h.clock, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h.sc = sc
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- sc.run(ctx) }()
	t.Cleanup(h.stop)
	url := o.conn.URL
	if sc.embedded != nil {
		url = sc.embedded.ClientURL()
	}
	if h.client, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.client.Close)
	h.until(sc.stats.ready, "source ready")
	return h
}

func (h *testSidecar) stop() {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
		if err := <-h.done; err != nil {
			h.t.Errorf("sidecar run() = %v", err)
		}
	}
}

// until polls a condition on the running sidecar; it is only slow when a test fails.
func (h *testSidecar) until(cond func() bool, what string) {
	h.t.Helper()
	for deadline := time.Now().Add(waitFor); !cond(); {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// send publishes an event and waits until the engine has applied it.
func (h *testSidecar) send(data []byte) {
	h.t.Helper()
	before := h.decoded()
	if err := h.client.Publish("voice.events.x", data); err != nil {
		h.t.Fatal(err)
	}
	h.until(func() bool { return h.decoded() > before }, "event decoded or rejected")
	h.sync()
}

func (h *testSidecar) decoded() int64 {
	st := h.sc.stats.input()
	var n int64
	for _, v := range st.Events {
		n += v
	}
	for _, v := range st.Bad {
		n += v
	}
	return n
}

func (h *testSidecar) sync() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.sc.engine.Sync(ctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testSidecar) advance(d time.Duration) {
	h.clock.Advance(d)
	h.sync()
}

// event is a conversation-update of call id stamped on the fake clock, with turns
// "user-N" (user) and "reply-N" (assistant) saying text.
func (h *testSidecar) event(id, text string, turns ...string) []byte {
	now := h.clock.Now().UnixMilli()
	var msgs []string
	for _, m := range turns {
		role := "user"
		if strings.HasPrefix(m, "reply") {
			role = "assistant"
		}
		msgs = append(msgs, fmt.Sprintf(`{"messageId":%q,"role":%q,"text":%q,"timestamp":%d}`, m, role, text, now))
	}
	return fmt.Appendf(nil, `{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"teamId":"t1","status":"ongoing"},"messages":[%s]}}`,
		now, id, strings.Join(msgs, ","))
}

func (h *testSidecar) get(path string) (int, string) {
	h.t.Helper()
	res, err := http.Get("http://" + h.sc.metrics.ln.Addr().String() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return res.StatusCode, string(body)
}

// scrape reads /metrics.
func (h *testSidecar) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	code, body := h.get("/metrics")
	if code != http.StatusOK {
		h.t.Fatalf("/metrics: %d %s", code, body)
	}
	// Legacy names: the ones every scraper accepts, which ours must be.
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		h.t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// value returns the value of a sample of a family whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range fam.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && labels[want[i]] == want[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, want)
	return 0
}

// TestMetricsAfterCalls runs a stalled and an answered call and scrapes /metrics: the
// counters and histograms show exactly what happened.
func TestMetricsAfterCalls(t *testing.T) {
	h := startTestSidecar(t, zap.InfoLevel)
	if code, body := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := h.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q", code, body)
	}
	h.send(h.event("stalled", "Hello?", "user-1"))
	h.send(h.event("answered", "Hello?", "user-1"))
	h.advance(2 * time.Second)
	h.send(h.event("answered", "Hello?", "user-1", "reply-1"))
	h.send([]byte(`{"message":{"type":"status-update","call":{"id":"answered"},"messages":"nope"}}`))
	h.advance(3 * time.Second) // the stalled call hangs
	h.advance(4 * time.Second)
	h.send(h.event("stalled", "Hello?", "user-1", "reply-1")) // resolved after 9 s

	fams := h.scrape()
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hangwatch_events_received_total", []string{"type", "conversation-update"}, 4},
		{"hangwatch_events_received_total", []string{"type", "status-update"}, 0},
		{"hangwatch_bad_input_total", []string{"reason", "messages-not-array"}, 1},
		{"hangwatch_bad_input_total", []string{"reason", "not-json"}, 0},
		{"hangwatch_events_applied_total", nil, 4},
		{"hangwatch_calls", []string{"state", "idle"}, 2},
		{"hangwatch_calls", []string{"state", "armed"}, 0},
		{"hangwatch_calls", []string{"state", "hung"}, 0},
		{"hangwatch_hangs_total", []string{"reason", "turn-timeout"}, 1},
		{"hangwatch_hangs_total", []string{"reason", "max-wait"}, 0},
		{"hangwatch_hangs_resolved_total", nil, 1},
		{"hangwatch_detection_lag_seconds", nil, 1},
		{"hangwatch_resolved_wait_seconds", nil, 1},
		{"hangwatch_calls_refused_total", nil, 0},
		{"hangwatch_calls_expired_total", nil, 0},
		{"hangwatch_publish_errors_total", nil, 0},
		{"hangwatch_retained_bytes", nil, 0},
		{"hangwatch_nats_connected", nil, 1},
		{"hangwatch_nats_slow_consumer_total", nil, 0},
		{"hangwatch_build_info", []string{"version", "dev"}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// On the fake clock the hang fires exactly at its deadline, and the caller waited
	// 9 s from the first turn to the reply.
	if lag := fams["hangwatch_detection_lag_seconds"].Metric[0].Histogram.GetSampleSum(); lag != 0 {
		t.Errorf("detection lag sum = %v, want 0", lag)
	}
	if wait := fams["hangwatch_resolved_wait_seconds"].Metric[0].Histogram.GetSampleSum(); wait != 9 {
		t.Errorf("resolved wait sum = %v, want 9", wait)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestReadyzWhileDraining checks that /readyz says not ready once the sidecar drains.
func TestReadyzWhileDraining(t *testing.T) {
	h := startTestSidecar(t, zap.InfoLevel)
	draining := h.sc.stats
	draining.ready = func() bool { return false }
	m, err := startMetrics("127.0.0.1:0", newRegistry(), draining, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.serve() }()
	defer func() {
		m.shutdown()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	res, err := http.Get("http://" + m.ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a draining source = %d, want 503", res.StatusCode)
	}
}

// TestLogsHoldNoTranscript runs a stalled call, a resolution and bad input through the
// sidecar at info level: no log line holds a word the caller or assistant said. At debug
// level, asked for explicitly, the text of bad input may appear.
func TestLogsHoldNoTranscript(t *testing.T) {
	const secret = "my card number is 4111 1111"
	for _, level := range []zapcore.Level{zap.InfoLevel, zap.DebugLevel} {
		t.Run(level.String(), func(t *testing.T) {
			h := startTestSidecar(t, level, "--dead-letter-subject", "voice.dead")
			h.send(h.event("c1", secret, "user-1"))
			h.advance(5 * time.Second)
			h.send(h.event("c1", secret, "user-1", "reply-1"))
			h.send([]byte(`{"message":{"type":"conversation-update","call":{"id":"c2"},"messages":[{"role":"user","text":7,"note":"` + secret + `"}]}}`))
			h.stop()
			var lines []string
			for _, e := range h.logs.All() {
				lines = append(lines, fmt.Sprintf("%s %v", e.Message, e.ContextMap()))
			}
			all := strings.Join(lines, "\n")
			if !strings.Contains(all, "hang map[call_id:c1") || !strings.Contains(all, "team_id:t1") {
				t.Errorf("the hang was not logged with its call and team:\n%s", all)
			}
			leaked := strings.Contains(all, secret)
			if level == zap.InfoLevel && leaked {
				t.Errorf("a log line at info holds transcript text:\n%s", all)
			}
			if level == zap.DebugLevel && !leaked {
				t.Errorf("at debug, the payload of bad input should be logged for troubleshooting:\n%s", all)
			}
		})
	}
}

// TestEmbeddedJetStream: without --nats-url, --jetstream runs the embedded server with
// JetStream, and the sidecar goes live on it.
func TestEmbeddedJetStream(t *testing.T) {
	h := startTestSidecar(t, zap.InfoLevel, "--jetstream", "--embedded-store-dir", t.TempDir())
	if h.sc.embedded == nil || h.sc.stats.jsInput == nil {
		t.Fatal("not JetStream mode on the embedded server")
	}
	h.stop()
}
