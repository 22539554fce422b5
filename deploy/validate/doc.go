// Package validate holds the tests that check the deployment files under deploy/: the
// Kubernetes manifests decode strictly into the Kubernetes API types, the alert rules
// and the dashboard's queries parse as PromQL and use only the metrics of
// docs/metrics.md, the systemd unit keeps its hardening. It is a module of its own so
// that the Kubernetes and Prometheus libraries it needs stay out of hangwatch's.
package validate
