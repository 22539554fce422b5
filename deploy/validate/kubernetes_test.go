package validate

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// manifests holds the objects of deploy/kubernetes, decoded strictly.
type manifests struct {
	deployments []*appsv1.Deployment
	podMonitors []*monitoringv1.PodMonitor
}

// documentSeparator splits a YAML stream into documents.
var documentSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifests reads every .yaml file of deploy/kubernetes. Each document must decode
// into the API type of its apiVersion and kind with no field unknown to it, no field
// twice and no value of the wrong type: what the API server would refuse, found without
// one (the JSON schemas kubeconform reads are not to be had offline; the types they are
// generated from are).
func decodeManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(repo + "deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	var m manifests
	for _, f := range files {
		name := filepath.Base(f)
		for i, doc := range documentSeparator.Split(string(read(t, "deploy/kubernetes/"+name)), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", name, i+1)
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			var obj any
			switch gvk := meta.APIVersion + " " + meta.Kind; gvk {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "monitoring.coreos.com/v1 PodMonitor":
				p := &monitoringv1.PodMonitor{}
				m.podMonitors, obj = append(m.podMonitors, p), p
			default:
				t.Errorf("%s: %s is no kind this test knows; add it", where, gvk)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestManifestsDecodeStrictly: a misspelt field, or a field in the wrong place, fails.
func TestManifestsDecodeStrictly(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: two\n"},
		{"field twice", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n"},
		{"probe in the wrong place", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      readinessProbe: {}\n"},
	}
	for _, tt := range tests {
		if err := yaml.UnmarshalStrict([]byte(tt.give), &appsv1.Deployment{}); err == nil {
			t.Errorf("%s: decoded without an error", tt.name)
		}
	}
}

// hangwatchContainer returns the hangwatch container of a pod, and whether it is one of
// the pod's init containers.
func hangwatchContainer(spec *corev1.PodSpec) (c *corev1.Container, init bool) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "hangwatch" {
			return &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == "hangwatch" {
			return &spec.Containers[i], false
		}
	}
	return nil, false
}

// TestDeployment: the example runs hangwatch as a sidecar that Kubernetes can probe,
// schedule and scrape, configured with variables that are flags' variables.
func TestDeployment(t *testing.T) {
	m := decodeManifests(t)
	if len(m.deployments) != 1 {
		t.Fatalf("%d Deployments in deploy/kubernetes, want 1", len(m.deployments))
	}
	d := m.deployments[0]
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector %v does not match its pods' labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	for _, msg := range validation.IsDNS1123Subdomain(d.Name) {
		t.Errorf("name %q: %s", d.Name, msg)
	}
	spec := &d.Spec.Template.Spec
	c, sidecar := hangwatchContainer(spec)
	if c == nil {
		t.Fatal("no container named hangwatch")
	}
	if !sidecar || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("hangwatch is not a native sidecar (an init container with restartPolicy Always)")
	}
	if len(spec.Containers) == 0 {
		t.Error("no pipeline container beside hangwatch")
	}

	// Probes: /healthz and /readyz on the metrics port.
	port := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.Int {
			return p.IntVal
		}
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return cp.ContainerPort
			}
		}
		t.Errorf("probe port %q is no port of the hangwatch container", p.StrVal)
		return 0
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startup", c.StartupProbe, "/healthz"},
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	}
	for _, p := range probes {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("no HTTP %s probe", p.name)
		case p.probe.HTTPGet.Path != p.path || port(p.probe.HTTPGet.Port) != 9464:
			t.Errorf("%s probe on %s port %v, want %s on 9464", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	for _, cp := range c.Ports {
		for _, msg := range validation.IsValidPortName(cp.Name) {
			t.Errorf("port name %q: %s", cp.Name, msg)
		}
	}

	// Resources: requests for both, and a memory limit.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Error("no memory limit")
	}

	// Configuration: flags' variables; metrics reachable by the kubelet; the store on
	// a volume.
	known := documentedVariables(t)
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if strings.HasPrefix(e.Name, "HANGWATCH_") {
			checkVariable(t, known, "deployment.yaml", e.Name)
		}
	}
	if l := env["HANGWATCH_METRICS_LISTEN"]; !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "0.0.0.0:") {
		t.Errorf("HANGWATCH_METRICS_LISTEN=%q: the kubelet's probes cannot reach a loopback address", l)
	}
	if dir := env["HANGWATCH_EMBEDDED_STORE_DIR"]; dir != "" {
		mounted := false
		for _, vm := range c.VolumeMounts {
			mounted = mounted || vm.MountPath == dir
			if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
				t.Errorf("volume mount %q names no volume of the pod", vm.Name)
			}
		}
		if !mounted {
			t.Errorf("the JetStream store %s is on no volume", dir)
		}
	}
	if gml, ok := env["GOMEMLIMIT"]; ok {
		if q := parseQuantity(t, gml); q >= limit.Value() {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", gml, limit.String())
		}
	}

	// Shutdown: the grace period leaves room for the drain.
	drain := 10 * time.Second
	if v, ok := env["HANGWATCH_DRAIN_TIMEOUT"]; ok {
		if drain, err = time.ParseDuration(v); err != nil {
			t.Errorf("HANGWATCH_DRAIN_TIMEOUT: %v", err)
		}
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drain {
		t.Errorf("terminationGracePeriodSeconds %v leaves no room for the drain timeout %v", g, drain)
	}

	// Security: not root, no privilege escalation, read-only root file system.
	if ps := spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("the pod does not require a non-root user")
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("hangwatch may escalate privileges or write its root file system")
	}
}

// parseQuantity reads a GOMEMLIMIT value: bytes, or a number with B, KiB, MiB, GiB.
func parseQuantity(t *testing.T, s string) int64 {
	t.Helper()
	units := []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			if _, err := fmt.Sscan(n, &v); err == nil {
				return v * u.size
			}
		}
	}
	t.Errorf("GOMEMLIMIT %q is not a size", s)
	return 0
}

// TestPodMonitor: the PodMonitor selects the pods of the Deployment and scrapes the
// metrics port of their hangwatch container.
func TestPodMonitor(t *testing.T) {
	m := decodeManifests(t)
	if len(m.podMonitors) != 1 || len(m.deployments) != 1 {
		t.Fatalf("%d PodMonitors and %d Deployments, want 1 of each", len(m.podMonitors), len(m.deployments))
	}
	pm, d := m.podMonitors[0], m.deployments[0]
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the PodMonitor's selector does not match the pipeline's pods (%v)", err)
	}
	c, _ := hangwatchContainer(&d.Spec.Template.Spec)
	if c == nil {
		t.Fatal("no hangwatch container")
	}
	for _, ep := range pm.Spec.PodMetricsEndpoints {
		if ep.Port == nil || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == *ep.Port }) {
			t.Errorf("the PodMonitor scrapes port %v, which the hangwatch container does not have", ep.Port)
		}
		if ep.Path != "/metrics" {
			t.Errorf("the PodMonitor scrapes %q, want /metrics", ep.Path)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) == 0 {
		t.Error("the PodMonitor scrapes nothing")
	}
}
