package grafana

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// documented reads docs/metrics.md: every metric of its tables, with its type.
func documented(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \\| (counter|gauge|histogram) \\|")
	types := map[string]string{}
	for s := bufio.NewScanner(f); s.Scan(); {
		if m := row.FindStringSubmatch(s.Text()); m != nil {
			types[m[1]] = m[2]
		}
	}
	if len(types) < 40 {
		t.Fatalf("docs/metrics.md lists %d metrics; its tables are not read right", len(types))
	}
	return types
}

func parse(t *testing.T) *Dashboard {
	t.Helper()
	d, err := Parse()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDashboardUsesDocumentedMetrics: every metric a query uses is one docs/metrics.md
// lists, and every query uses one.
func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	d := parse(t)
	docs := documented(t)
	queries := d.Queries()
	if len(queries) < 30 {
		t.Fatalf("the dashboard has %d queries; they are not read right", len(queries))
	}
	for _, q := range queries {
		names := MetricNames(q)
		if len(names) == 0 {
			t.Errorf("query %q uses no metric hangwatch serves", q)
		}
		for _, n := range names {
			if _, ok := docs[n]; !ok {
				t.Errorf("query %q uses %s, which docs/metrics.md does not list", q, n)
			}
		}
	}
}

// TestDashboardShape: the dashboard imports as Grafana expects: a stable uid, unique
// panel ids, panels that do not overlap, every panel on the data source variable.
func TestDashboardShape(t *testing.T) {
	d := parse(t)
	if d.UID != "hangwatch" || d.Title == "" {
		t.Errorf("uid %q, title %q; want uid hangwatch and a title", d.UID, d.Title)
	}
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.AllPanels() {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share the id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v is outside the 24 columns", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
					goto next
				}
				taken[cell{x, y}] = p.Title
			}
		}
	next:
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Equal(vars, []string{"datasource", "job", "instance"}) {
		t.Errorf("template variables %v, want datasource, job, instance", vars)
	}
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{
			give: `histogram_quantile(0.99, sum by (le) (rate(hangwatch_detection_lag_seconds_bucket{job=~"$job"}[$__rate_interval])))`,
			want: []string{"hangwatch_detection_lag_seconds"},
		},
		{
			give: `sum(increase(hangwatch_hangs_resolved_total[1h])) / sum(increase(hangwatch_hangs_total[1h]))`,
			want: []string{"hangwatch_hangs_resolved_total", "hangwatch_hangs_total"},
		},
		{
			give: `sum(hangwatch_calls{state!="hangwatch_not_a_metric", team='go_team'}) + process_resident_memory_bytes`,
			want: []string{"hangwatch_calls", "process_resident_memory_bytes"},
		},
		{give: `label_values(hangwatch_build_info{job=~"$job"}, instance)`, want: []string{"hangwatch_build_info"}},
		{give: `rate(hangwatch_webhook_delivery_seconds_sum[5m]) / rate(hangwatch_webhook_delivery_seconds_count[5m])`, want: []string{"hangwatch_webhook_delivery_seconds"}},
		{give: `vector(1)`},
	}
	for _, tt := range tests {
		if got := MetricNames(tt.give); !slices.Equal(got, tt.want) {
			t.Errorf("MetricNames(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// exposition writes a /metrics page serving the given documented metrics, one sample
// each.
func exposition(names []string, types map[string]string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "# HELP %s test\n# TYPE %s %s\n", n, n, types[n])
		switch types[n] {
		case "histogram":
			fmt.Fprintf(&b, "%s_bucket{le=\"1\"} 1\n%s_bucket{le=\"+Inf\"} 1\n%s_sum 0.5\n%s_count 1\n", n, n, n, n)
		default:
			fmt.Fprintf(&b, "%s{label=\"x\"} 1\n", n)
		}
	}
	return b.String()
}

// TestCheckServed: a /metrics page that serves every metric of the dashboard passes;
// one without a metric the dashboard queries fails, naming it.
func TestCheckServed(t *testing.T) {
	d := parse(t)
	types := documented(t)
	names := d.Metrics()
	if err := CheckServed(strings.NewReader(exposition(names, types))); err != nil {
		t.Errorf("CheckServed(every metric) = %v", err)
	}
	for _, gone := range []string{"hangwatch_detection_lag_seconds", "hangwatch_hangs_by_team_total"} {
		rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == gone })
		err := CheckServed(strings.NewReader(exposition(rest, types)))
		if err == nil || !strings.Contains(err.Error(), gone) {
			t.Errorf("CheckServed(without %s) = %v, want an error naming it", gone, err)
		}
	}
	// Two scrapes, each serving half: together they serve all.
	half := len(names) / 2
	if err := CheckServed(strings.NewReader(exposition(names[:half], types)), strings.NewReader(exposition(names[half:], types))); err != nil {
		t.Errorf("CheckServed(two halves) = %v", err)
	}
	if err := CheckServed(strings.NewReader("not the text format {")); err == nil {
		t.Error("CheckServed(garbage) = nil, want an error")
	}
}
