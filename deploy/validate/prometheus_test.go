package validate

import (
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// promql parses PromQL as Prometheus does.
var promql = parser.NewParser(parser.Options{})

// selectedMetrics returns the metric names an expression selects; a histogram's
// _bucket, _sum and _count by the histogram's name when docs lists it as one.
func selectedMetrics(t *testing.T, expr string, docs map[string]string) ([]string, error) {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && docs[base] == "histogram" {
					name = base
				}
			}
			names = append(names, name)
		}
		return nil
	})
	return names, nil
}

// TestAlertRules: alerts.yml is what Prometheus loads (promtool check rules says the
// same), every rule queries metrics of docs/metrics.md, has a severity and says what is
// wrong; alerts_test.yml makes each one fire and each one stay quiet at least once.
func TestAlertRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile(repo+"deploy/prometheus/alerts.yml", false, model.UTF8Validation, promql, nil)
	for _, err := range errs {
		t.Errorf("alerts.yml: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	docs := documentedMetrics(t)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			names, err := selectedMetrics(t, r.Expr, docs)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
			for _, n := range names {
				if _, ok := docs[n]; !ok {
					t.Errorf("%s queries %s, which docs/metrics.md does not list", r.Alert, n)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a summary and a description", r.Alert)
			}
		}
	}
	for _, want := range []string{"HangwatchTeamHangsRising", "HangwatchModelHangsRising", "HangwatchUnresolvedRatioHigh",
		"HangwatchDetectionLagHigh", "HangwatchInputGaps", "HangwatchNotReady", "HangwatchSlowConsumer"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no %s", want)
		}
	}

	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/prometheus/alerts_test.yml"), &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tt := range tests.Tests {
		for _, a := range tt.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alerts_test.yml: %s fires in a test: %v; stays quiet in one: %v; want both", a, fires[a], quiet[a])
		}
	}
}

// grafanaVariable replaces the dashboard's variables with values PromQL accepts.
var grafanaVariable = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"${datasource}", "x", "$datasource", "x", "$job", "x", "$instance", "x",
)

// TestDashboardQueries: every query of the dashboard parses as PromQL and selects only
// metrics of docs/metrics.md.
func TestDashboardQueries(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := yaml.Unmarshal(read(t, "deploy/grafana/hangwatch.json"), &dash); err != nil {
		t.Fatal(err)
	}
	docs := documentedMetrics(t)
	n := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			n++
			names, err := selectedMetrics(t, grafanaVariable.Replace(target.Expr), docs)
			if err != nil {
				t.Errorf("panel %q: %q: %v", p.Title, target.Expr, err)
			}
			for _, name := range names {
				if _, ok := docs[name]; !ok {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not list", p.Title, name)
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("read %d queries of the dashboard; they are not read right", n)
	}
}

// TestAlertRulesAsPrometheusRule: alerts.yml indented under a PrometheusRule's spec, as
// docs/README-ops.md shows for the Prometheus operator, is a valid PrometheusRule.
func TestAlertRulesAsPrometheusRule(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: hangwatch\nspec:\n")
	for line := range strings.Lines(string(read(t, "deploy/prometheus/alerts.yml"))) {
		b.WriteString("  " + line)
	}
	var rule monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict([]byte(b.String()), &rule); err != nil {
		t.Fatal(err)
	}
	if len(rule.Spec.Groups) != 1 || len(rule.Spec.Groups[0].Rules) < 10 {
		t.Errorf("the PrometheusRule holds %d groups; want the one of alerts.yml with its rules", len(rule.Spec.Groups))
	}
}
