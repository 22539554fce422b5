package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hangwatch/hangwatch/transport/webhook"
)

var (
	descDeliveries = prometheus.NewDesc("hangwatch_webhook_deliveries_total", "Webhook delivery attempts, by outcome: delivered (2xx), retried, gave-up (a final 4xx, or the max age).", []string{"outcome"}, nil)
	descDropped    = prometheus.NewDesc("hangwatch_webhook_dropped_total", "Outputs not queued for a URL whose queue was full (core mode).", nil, nil)
	descHeld       = prometheus.NewDesc("hangwatch_webhook_held", "Outputs held in memory for delivery, waiting, retried or in flight (core mode).", nil, nil)
)

// deliverMetrics are the metrics of webhook delivery: the histogram of attempts, fed by
// observe (pass it to deliverOptions.core or jetStream), and the counters, read from
// stats at scrape time (set it once the deliverer is built). One of
// metrics.Sources.Extra.
type deliverMetrics struct {
	seconds prometheus.Histogram
	stats   func() webhook.Stats
}

func newDeliverMetrics() *deliverMetrics {
	return &deliverMetrics{seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hangwatch_webhook_delivery_seconds",
		Help:    "Time of a webhook delivery attempt, from the request to the answer (or the timeout).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})}
}

// observe records an attempt; an output given up without one is not an attempt.
func (m *deliverMetrics) observe(a webhook.Attempt) {
	if a.Status != 0 || a.Err != nil {
		m.seconds.Observe(a.Duration.Seconds())
	}
}

func (m *deliverMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.seconds.Describe(ch)
	ch <- descDeliveries
	ch <- descDropped
	ch <- descHeld
}

func (m *deliverMetrics) Collect(ch chan<- prometheus.Metric) {
	m.seconds.Collect(ch)
	var st webhook.Stats
	if m.stats != nil {
		st = m.stats()
	}
	for _, o := range webhook.Outcomes() {
		ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(st.Outcomes[o]), o.String())
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(st.Held))
}
