package main

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/deploy/grafana"
)

// dashboardLive switches on TestDashboardMetricsServed.
const dashboardLive = true

// TestDashboardMetricsServed: every metric the Grafana dashboard (deploy/grafana)
// queries is served on /metrics by a running hangwatch, in core NATS or in JetStream
// mode (each with the HTTP ingest, webhook delivery and the thresholds bucket on), once
// calls have hung, been answered and ended unanswered.
//
// The metrics that only --group serves (consumer groups) are taken from
// docs/metrics.md, which TestMetricsDocumentedAreServed holds to what is served.
func TestDashboardMetricsServed(t *testing.T) {
	if !dashboardLive {
		t.Skip("switched off: set dashboardLive")
	}
	t.Parallel()
	var scrapes []io.Reader
	for _, body := range scrapeModes(t) {
		scrapes = append(scrapes, strings.NewReader(body))
	}
	var group strings.Builder
	for _, m := range documentedMetrics(t) {
		if m.group {
			fmt.Fprintf(&group, "# TYPE %s untyped\n%s 0\n", m.name, m.name)
		}
	}
	scrapes = append(scrapes, strings.NewReader(group.String()))
	if err := grafana.CheckServed(scrapes...); err != nil {
		t.Error(err)
	}
}
