package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// metricsDocPath is the metrics reference, from this package's folder.
const metricsDocPath = "../../docs/metrics.md"

// documentedMetric is a metric of docs/metrics.md.
type documentedMetric struct {
	name string
	// jetStream and group say that it is served in JetStream mode only, or with --group
	// only, as its row says ("JetStream mode:", "--group mode:"; the jetstream_ metrics).
	jetStream, group bool
}

// documentedMetrics returns the metrics hangwatch serves that docs/metrics.md lists in
// its tables, in order.
func documentedMetrics(t *testing.T) []documentedMetric {
	t.Helper()
	f, err := os.Open(metricsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `(hangwatch_[a-z_]+)` \\|[^|]*\\|[^|]*\\| (.*) \\|$")
	var ms []documentedMetric
	for s := bufio.NewScanner(f); s.Scan(); {
		if m := row.FindStringSubmatch(s.Text()); m != nil {
			ms = append(ms, documentedMetric{name: m[1],
				jetStream: strings.HasPrefix(m[2], "JetStream mode:") || strings.HasPrefix(m[1], "hangwatch_jetstream_"),
				group:     strings.HasPrefix(m[2], "`--group` mode:")})
		}
	}
	if len(ms) < 40 {
		t.Fatalf("found %d metrics in %s: has its layout changed?", len(ms), metricsDocPath)
	}
	return ms
}

// scrapeModes runs a sidecar in core mode and one in JetStream mode, each with every
// optional part that has metrics (HTTP ingest, webhook delivery, the thresholds
// bucket), drives a call through a hang and its resolution and one through a hang to
// its end, and returns their /metrics by mode.
func scrapeModes(t *testing.T) map[string]string {
	t.Helper()
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(recv.Close)
	extras := []string{"--http-listen", "127.0.0.1:0", "--deliver-url", recv.URL, "--deliver-secret", testDeliverSecret,
		"--config-bucket", "hangwatch-config", "--embedded-store-dir"}
	out := map[string]string{}
	for _, mode := range []string{"core", "jetstream"} {
		args := append(slices.Clone(extras), t.TempDir())
		if mode == "jetstream" {
			args = append(args, "--jetstream")
		}
		h := startTestSidecar(t, zap.InfoLevel, args...)
		h.send(h.event("resolved", "Hello?", "user-1"))
		h.send(h.event("unresolved", "Hello?", "user-1"))
		h.advance(6 * time.Second) // both hang
		h.send(h.event("resolved", "Hello?", "user-1", "reply-1"))
		h.send(h.endOfCall("unresolved", "customer-ended-call"))
		code, body := h.get("/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics in %s mode: %d", mode, code)
		}
		out[mode] = body
		h.stop()
	}
	return out
}

// TestMetricsDocumentedAreServed: every metric docs/metrics.md lists is served on
// /metrics in each mode it applies to, before anything made it count; and what is
// served is documented.
func TestMetricsDocumentedAreServed(t *testing.T) {
	t.Parallel()
	scrapes := scrapeModes(t)
	documented := documentedMetrics(t)
	var names []string
	for _, m := range documented {
		names = append(names, m.name)
	}
	for mode, body := range scrapes {
		fams := parseMetrics(t, body)
		for _, m := range documented {
			_, served := fams[m.name]
			if want := !m.group && (mode == "jetstream" || !m.jetStream); served != want {
				t.Errorf("%s mode: %s served: %v, want %v", mode, m.name, served, want)
			}
		}
		for name := range fams {
			if strings.HasPrefix(name, "hangwatch_") && !slices.Contains(names, name) && !undocumented[name] {
				t.Errorf("%s mode: %s is served but not in %s", mode, name, metricsDocPath)
			}
		}
	}
}

// undocumented are metrics served beside those of docs/metrics.md, for the curious: the
// details of the HTTP ingest and of webhook delivery, and the input's proofs.
var undocumented = map[string]bool{
	"hangwatch_http_ingest_bad_input_total":          true,
	"hangwatch_http_ingest_dead_letters_total":       true,
	"hangwatch_http_ingest_dead_letter_errors_total": true,
	"hangwatch_http_ingest_publish_errors_total":     true,
	"hangwatch_webhook_dropped_total":                true,
	"hangwatch_webhook_held":                         true,
}

// TestMetricsLabelsStartAtZero: the labelled counters and gauges are served at zero for
// every label value hangwatch knows in advance, so that rate() and increase() see the
// first event (docs/metrics.md).
func TestMetricsLabelsStartAtZero(t *testing.T) {
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel)
	fams := h.scrape()
	reasons, stages := []string{"turn-timeout", "max-wait"}, []string{"awaiting-assistant", "awaiting-tool", "after-tool"}
	tests := []struct {
		name   string
		labels [][]string // label name, then its values
	}{
		{"hangwatch_hangs_total", [][]string{append([]string{"reason"}, reasons...), append([]string{"stage"}, stages...)}},
		{"hangwatch_hangs_resolved_total", [][]string{append([]string{"reason"}, reasons...), append([]string{"stage"}, stages...)}},
		{"hangwatch_hangs_unresolved_total", [][]string{append([]string{"reason"}, reasons...), append([]string{"stage"}, stages...)}},
		{"hangwatch_hangs_by_team_total", [][]string{{"team", "other"}}},
		{"hangwatch_hangs_by_model_total", [][]string{{"provider", "other"}, {"model", "other"}}},
		{"hangwatch_events_received_total", [][]string{{"type", "conversation-update", "status-update", "end-of-call-report", "speech-update", "output", "other"}}},
		{"hangwatch_bad_input_total", [][]string{{"reason", "not-json", "too-large", "too-deep", "no-message", "no-call-id", "messages-not-array", "wrong-type"}}},
		{"hangwatch_calls", [][]string{{"state", "idle", "armed", "hung", "ended"}}},
		{"hangwatch_calls_refused_total", [][]string{{"reason", "max-calls", "max-calls-per-team"}}},
		{"hangwatch_history_truncations_total", [][]string{{"cause", "retention", "max-payload"}}},
	}
	for _, tt := range tests {
		for _, labels := range combinations(tt.labels) {
			v, ok := lookup(fams, tt.name, labels...)
			if !ok || v != 0 {
				t.Errorf("%s%v = %v (served: %v), want 0", tt.name, labels, v, ok)
			}
		}
	}
}

// combinations returns every combination of the values of labels (each a name, then
// its values) as name, value pairs.
func combinations(labels [][]string) [][]string {
	out := [][]string{nil}
	for _, l := range labels {
		var next [][]string
		for _, prefix := range out {
			for _, v := range l[1:] {
				next = append(next, append(slices.Clone(prefix), l[0], v))
			}
		}
		out = next
	}
	return out
}
