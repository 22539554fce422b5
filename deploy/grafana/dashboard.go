// Package grafana holds hangwatch's Grafana dashboard, hangwatch.json beside this file,
// and what keeps its queries honest: the metric names they use, and a check of those
// names against what a running hangwatch serves on /metrics.
package grafana

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

//go:embed hangwatch.json
var dashboard []byte

// JSON returns the dashboard, as Grafana imports it.
func JSON() []byte { return slices.Clone(dashboard) }

// Panel is the part of a dashboard panel that the checks read.
type Panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *Datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []Panel `json:"panels"` // those of a collapsed row
}

// Datasource names a panel's data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Dashboard is the part of the dashboard that the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Parse decodes the dashboard.
func Parse() (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return nil, fmt.Errorf("parse dashboard: %w", err)
	}
	return &d, nil
}

// AllPanels returns the panels, those inside collapsed rows included.
func (d *Dashboard) AllPanels() []Panel {
	var all []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return all
}

// Queries returns every PromQL expression of the dashboard: the panels' targets, and
// the queries of the template variables (label_values(…) included, as written).
func (d *Dashboard) Queries() []string {
	var qs []string
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			if t.Expr != "" {
				qs = append(qs, t.Expr)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// A variable's query is a string, or an object holding it.
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q.Query) != nil {
			_ = json.Unmarshal(v.Query, &q)
		}
		if q.Query != "" {
			qs = append(qs, q.Query)
		}
	}
	return qs
}

var (
	// stringLiteral matches a PromQL string: label values are no metric names.
	stringLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	// metricName matches the names of the metrics hangwatch serves: its own, and those
	// of the Go and process collectors.
	metricName = regexp.MustCompile(`\b(?:hangwatch|process|go)_[a-zA-Z0-9_:]*`)
)

// MetricNames returns the metric names an expression uses, each once, in order of
// appearance. A histogram's series (_bucket, _sum, _count) are named by the histogram,
// as /metrics names its family.
func MetricNames(expr string) []string {
	var names []string
	for _, n := range metricName.FindAllString(stringLiteral.ReplaceAllString(expr, `""`), -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			n = strings.TrimSuffix(n, suffix)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// Metrics returns every metric name the dashboard's queries use, sorted.
func (d *Dashboard) Metrics() []string {
	var names []string
	for _, q := range d.Queries() {
		names = append(names, MetricNames(q)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// CheckServed reads scrapes of hangwatch's /metrics (the Prometheus text format) and
// returns an error naming every metric the dashboard queries that none of them serves.
// Give a scrape of each mode (core NATS and JetStream) when some metrics are served in
// one mode only.
//
// A metric with labels shows on /metrics only once it has a sample: scrape a hangwatch
// that has run a call through a hang and its resolution, or that starts its counters
// at zero for the label values it knows (every reason, stage and outcome).
func CheckServed(scrapes ...io.Reader) error {
	d, err := Parse()
	if err != nil {
		return err
	}
	served := map[string]bool{}
	for i, r := range scrapes {
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(r)
		if err != nil {
			return fmt.Errorf("parse /metrics (scrape %d): %w", i+1, err)
		}
		for name := range fams {
			served[name] = true
		}
	}
	var missing []string
	for _, name := range d.Metrics() {
		if !served[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the dashboard queries %d metrics that /metrics does not serve: %s", len(missing), strings.Join(missing, ", "))
	}
	return nil
}
