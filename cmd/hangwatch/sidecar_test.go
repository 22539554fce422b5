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

// sidecarStart is the fake clock's start in the tests of the sidecar.
var sidecarStart = time.UnixMilli(1_763_647_331_000)

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
	h := &testSidecar{t: t, clock: clockwork.NewFakeClockAt(sidecarStart), logs: logs, done: make(chan error, 1)}
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
	h.until(sc.stats.Ready, "sidecar ready")
	return h
}

// stop stops the sidecar as a signal would, and waits until it has.
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

// send publishes an event on voice.events.x and waits until the engine has applied it
// (or rejected it).
func (h *testSidecar) send(data []byte) {
	h.t.Helper()
	h.sendOn("voice.events.x", data)
}

func (h *testSidecar) sendOn(subject string, data []byte) {
	h.t.Helper()
	before := h.decoded()
	if err := h.client.Publish(subject, data); err != nil {
		h.t.Fatal(err)
	}
	h.until(func() bool { return h.decoded() > before }, "event decoded or rejected")
	h.settle()
}

// decoded is how many messages the engine decoded or rejected.
func (h *testSidecar) decoded() int64 {
	st := h.sc.engine.Stats()
	n := st.Bad
	for _, v := range st.Types {
		n += v
	}
	return n
}

// settle asks the source for evidence up to the clock's now, waits until it is in, and
// until the engine has applied every event before it and fired every deadline it lets
// fire: the engine's state is then that of the fake clock's now.
func (h *testSidecar) settle() {
	h.t.Helper()
	h.sc.probe()
	h.until(func() bool { return h.sc.engine.Stats().WatermarkLag == 0 }, "evidence up to the clock's now")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.sc.engine.Sync(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// advance moves the fake clock by d and settles.
func (h *testSidecar) advance(d time.Duration) {
	h.clock.Advance(d)
	h.settle()
}

// event is a conversation-update of call id stamped on the fake clock, with turns
// "user-N" (user) and "reply-N" (assistant) saying text.
func (h *testSidecar) event(id, text string, turns ...string) []byte {
	return turnsAt(h.clock.Now(), id, text, turns...)
}

// turnsAt is a conversation-update of call id stamped at, with turns "user-N" (user)
// and "reply-N" (assistant) saying text, of team t1.
func turnsAt(at time.Time, id, text string, turns ...string) []byte {
	now := at.UnixMilli()
	var msgs []string
	for _, m := range turns {
		role := "user"
		if strings.HasPrefix(m, "reply") {
			role = "assistant"
		}
		msgs = append(msgs, fmt.Sprintf(`{"messageId":%q,"role":%q,"text":%q,"timestamp":%d}`, m, role, text, now))
	}
	return fmt.Appendf(nil, `{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"teamId":"t1","status":"ongoing"},"assistant":{"model":{"provider":"openai","model":"gpt-4o"}},"messages":[%s]}}`,
		now, id, strings.Join(msgs, ","))
}

// endOfCall is the end-of-call-report of call id, stamped on the fake clock.
func (h *testSidecar) endOfCall(id, reason string) []byte {
	return fmt.Appendf(nil, `{"message":{"type":"end-of-call-report","timestamp":%d,"endedReason":%q,"call":{"id":%q,"teamId":"t1","status":"ended"}}}`,
		h.clock.Now().UnixMilli(), reason, id)
}

func (h *testSidecar) get(path string) (int, string) {
	h.t.Helper()
	if h.sc.metrics == nil {
		h.t.Fatal("no --metrics-listen")
	}
	res, err := http.Get("http://" + h.sc.metrics.Addr() + path)
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
	return parseMetrics(h.t, body)
}

// parseMetrics parses a scrape of /metrics.
func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	// Legacy names: the ones every scraper accepts, which ours must be.
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// value returns the value of a sample of a family whose labels include want (name,
// value pairs); a histogram's is its sample count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	v, ok := lookup(fams, name, want...)
	if !ok {
		t.Fatalf("no sample of %s with %v", name, want)
	}
	return v
}

func lookup(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
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
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsAfterCalls runs a call that hangs and is answered, one that hangs and ends
// unanswered, one answered in time and a bad event, then scrapes /metrics: the counters
// and histograms show exactly what happened, by reason and stage.
func TestMetricsAfterCalls(t *testing.T) {
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel)
	if code, body := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := h.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %q", code, body)
	}
	h.send(h.event("stalled", "Hello?", "user-1"))
	h.send(h.event("gave-up", "Hello?", "user-1"))
	h.send(h.event("answered", "Hello?", "user-1"))
	h.advance(2 * time.Second)
	h.send(h.event("answered", "Hello?", "user-1", "reply-1"))
	h.send([]byte(`{"message":{"type":"status-update","call":{"id":"answered"},"messages":"nope"}}`))
	h.advance(3 * time.Second) // stalled and gave-up hang
	h.advance(4 * time.Second)
	h.send(h.event("stalled", "Hello?", "user-1", "reply-1")) // resolved after 9 s
	h.send(h.endOfCall("gave-up", "customer-ended-call"))     // unresolved

	fams := h.scrape()
	hang := []string{"reason", "turn-timeout", "stage", "awaiting-assistant"}
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hangwatch_events_received_total", []string{"type", "conversation-update"}, 5},
		{"hangwatch_events_received_total", []string{"type", "end-of-call-report"}, 1},
		{"hangwatch_events_received_total", []string{"type", "status-update"}, 0},
		{"hangwatch_bad_input_total", []string{"reason", "messages-not-array"}, 1},
		{"hangwatch_bad_input_total", []string{"reason", "not-json"}, 0},
		{"hangwatch_events_applied_total", nil, 6},
		{"hangwatch_calls", []string{"state", "idle"}, 2},
		{"hangwatch_calls", []string{"state", "armed"}, 0},
		{"hangwatch_calls", []string{"state", "hung"}, 0},
		{"hangwatch_calls", []string{"state", "ended"}, 1},
		{"hangwatch_calls_ended_total", nil, 1},
		{"hangwatch_hangs_total", hang, 2},
		{"hangwatch_hangs_total", []string{"reason", "max-wait"}, 0},
		{"hangwatch_hangs_total", []string{"stage", "awaiting-tool"}, 0},
		{"hangwatch_hangs_resolved_total", hang, 1},
		{"hangwatch_hangs_unresolved_total", hang, 1},
		{"hangwatch_hangs_by_team_total", []string{"team", "t1"}, 2},
		{"hangwatch_hangs_by_team_total", []string{"team", "other"}, 0},
		{"hangwatch_hangs_by_model_total", []string{"provider", "openai", "model", "gpt-4o"}, 2},
		{"hangwatch_detection_lag_seconds", nil, 2},
		{"hangwatch_resolved_wait_seconds", nil, 1},
		{"hangwatch_calls_refused_total", []string{"reason", "max-calls"}, 0},
		{"hangwatch_calls_expired_total", nil, 0},
		{"hangwatch_publish_errors_total", nil, 0},
		{"hangwatch_retained_bytes", nil, 0},
		{"hangwatch_input_watermark_lag_seconds", nil, 0},
		{"hangwatch_input_gaps_total", nil, 0},
		{"hangwatch_nats_connected", nil, 1},
		{"hangwatch_nats_slow_consumer_total", nil, 0},
		{"hangwatch_ready", nil, 1},
		{"hangwatch_build_info", []string{"version", "dev"}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// On the fake clock the hangs fire at their deadline: the lag is the hand-over to
	// NATS only. The caller waited 9 s from the first turn to the reply.
	if lag := fams["hangwatch_detection_lag_seconds"].Metric[0].Histogram.GetSampleSum(); lag < 0 || lag > 0.5 {
		t.Errorf("detection lag sum = %v, want the hand-over's milliseconds", lag)
	}
	if wait := fams["hangwatch_resolved_wait_seconds"].Metric[0].Histogram.GetSampleSum(); wait != 9 {
		t.Errorf("resolved wait sum = %v, want 9", wait)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestReadyzFollowsTheEvidence: /readyz says not ready while the input's evidence lags
// the clock by more than a turn timeout (a deadline due now could not fire), and ready
// again once a proof of the input's progress is in.
func TestReadyzFollowsTheEvidence(t *testing.T) {
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel)
	// The source proves its progress every second of real time on its own: a proof
	// that comes between the clock's jump and the request hides the lag, so try again.
	var code int
	var body string
	for range 5 {
		h.clock.Advance(6 * time.Second)
		if code, body = h.get("/readyz"); code == http.StatusServiceUnavailable {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "input not caught up") {
		t.Errorf("/readyz with the evidence 6 s behind = %d %q, want 503 saying the input is not caught up", code, body)
	}
	h.settle()
	if code, body := h.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once the evidence is in = %d %q, want 200", code, body)
	}
}

// TestLogsHoldNoTranscript runs a stalled call, a resolution and bad input through the
// sidecar at info level: no log line holds a word the caller or assistant said. At debug
// level, asked for explicitly, the text of bad input may appear.
func TestLogsHoldNoTranscript(t *testing.T) {
	t.Parallel()
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
			for _, kind := range []string{"hang", "hang-resolved"} {
				if !strings.Contains(all, kind+" map[call_id:c1") || !strings.Contains(all, "team_id:t1") {
					t.Errorf("the %s was not logged with its call and team:\n%s", kind, all)
				}
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
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel, "--jetstream", "--embedded-store-dir", t.TempDir())
	if h.sc.embedded == nil || h.sc.stats.JetStream == nil || h.sc.jsSink == nil {
		t.Fatal("not JetStream mode on the embedded server")
	}
	h.stop()
}

// TestMaxEventBytesWarning: the server's max payload bounds events without a word; a
// --max-event-bytes above it is lowered to it with a warning, and one below it is kept.
func TestMaxEventBytesWarning(t *testing.T) {
	t.Parallel()
	const msg = "--max-event-bytes is above the server's max payload, which no event can exceed"
	tests := []struct {
		name         string
		give         []string
		want         bool
		wantTooLarge float64 // of an event of 100 kB
	}{
		{name: "default", give: nil, want: false},
		{name: "below the max payload", give: []string{"--max-event-bytes", "64KiB"}, want: false, wantTooLarge: 1},
		{name: "above the max payload", give: []string{"--max-event-bytes", "8MiB"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startTestSidecar(t, zap.InfoLevel, tt.give...)
			h.send(h.event("big", strings.Repeat("a", 100_000), "user-1"))
			if got := value(t, h.scrape(), "hangwatch_bad_input_total", "reason", "too-large"); got != tt.wantTooLarge {
				t.Errorf("an event of 100 kB: %v too large, want %v", got, tt.wantTooLarge)
			}
			h.stop()
			logged := h.logs.FilterMessage(msg).All()
			if got := len(logged) == 1; got != tt.want {
				t.Errorf("warned %d times, want a warning: %v", len(logged), tt.want)
			}
			for _, e := range logged {
				if e.Level != zap.WarnLevel || e.ContextMap()["server_max_payload"] != int64(1<<20) {
					t.Errorf("logged %v %v, want a warning with the server's max payload", e.Level, e.ContextMap())
				}
			}
			for _, e := range h.logs.All() {
				if strings.Contains(e.Message, "max-event-bytes") && !tt.want {
					t.Errorf("logged %q at start", e.Message)
				}
			}
		})
	}
}

// TestOutputCutToFit: a hang whose history would take it over the server's max payload
// is published all the same, its oldest messages left out, says so, and is counted.
func TestOutputCutToFit(t *testing.T) {
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel)
	hangs, err := h.client.SubscribeSync("voice.hang.>")
	if err == nil {
		err = h.client.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	// Ten user turns of 104,700 characters: an event just under the max payload (1 MiB),
	// whose hang, with the hang object, would not fit.
	turns := make([]string, 10)
	for i := range turns {
		turns[i] = fmt.Sprint("user-", i+1)
	}
	ev := h.event("big", strings.Repeat("a", 104_700), turns...)
	if max := int(h.client.MaxPayload()); len(ev) > max || len(ev) < max-4096 {
		t.Fatalf("event of %d bytes, want just under the max payload %d", len(ev), max)
	}
	h.send(ev)
	h.advance(5 * time.Second)
	m, err := hangs.NextMsg(waitFor)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Data) > int(h.client.MaxPayload()) || !strings.Contains(string(m.Data), `"historyTruncated":true,"omittedMessages":1`) {
		t.Errorf("hang of %d bytes, want it under the max payload with the oldest message left out: %.300s", len(m.Data), m.Data)
	}
	if v := value(t, h.scrape(), "hangwatch_history_truncations_total", "cause", "max-payload"); v != 1 {
		t.Errorf("hangwatch_history_truncations_total{cause=max-payload} = %v, want 1", v)
	}
}

// TestPackAfter: --pack-after 0 packs the history an armed call keeps as it keeps it,
// --pack-after -1s never does: the same call keeps fewer bytes with the first.
func TestPackAfter(t *testing.T) {
	t.Parallel()
	retained := func(packAfter string) int64 {
		h := startTestSidecar(t, zap.InfoLevel, "--pack-after", packAfter)
		defer h.stop()
		h.send(h.event("c1", strings.Repeat("Can you hear me? I would like to move my appointment. ", 400), "user-1"))
		h.until(func() bool { return h.sc.engine.Stats().Armed == 1 }, "the call armed")
		return h.sc.engine.Stats().Retained
	}
	packed, plain := retained("0"), retained("-1s")
	if packed <= 0 || packed*4 > plain {
		t.Errorf("retained %d bytes packed, %d plain: want packing to keep a fraction", packed, plain)
	}
}
