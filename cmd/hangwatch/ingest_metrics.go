package main

import (
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hangwatch/hangwatch/transport/ingest"
	"github.com/hangwatch/hangwatch/wire"
)

var (
	descIngestRequests = prometheus.NewDesc("hangwatch_http_ingest_requests_total", "Requests the HTTP ingest answered, by status code.", []string{"code"}, nil)
	descIngestBad      = prometheus.NewDesc("hangwatch_http_ingest_bad_input_total", "Events the HTTP ingest refused as bad input (400 and 413), by reason.", []string{"reason"}, nil)
	descIngestDead     = prometheus.NewDesc("hangwatch_http_ingest_dead_letters_total", "Events the HTTP ingest refused and republished on the dead-letter subject.", nil, nil)
	descIngestDeadErr  = prometheus.NewDesc("hangwatch_http_ingest_dead_letter_errors_total", "Events the HTTP ingest refused and could not dead-letter.", nil, nil)
	descIngestPubErr   = prometheus.NewDesc("hangwatch_http_ingest_publish_errors_total", "Events NATS did not take from the HTTP ingest (each answered 503 or 413).", nil, nil)
)

// ingestCodes are the codes the HTTP ingest answers, exported from zero.
var ingestCodes = []int{200, 202, 400, 401, 404, 405, 413, 503}

// ingestCollector exports the HTTP ingest's counters at scrape time: one of
// metrics.Sources.Extra.
type ingestCollector struct{ s *ingest.Server }

func (c ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIngestRequests, descIngestBad, descIngestDead, descIngestDeadErr, descIngestPubErr} {
		ch <- d
	}
}

func (c ingestCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, code := range ingestCodes {
		counter(descIngestRequests, st.Requests[code], strconv.Itoa(code))
	}
	for code, n := range st.Requests {
		if !slices.Contains(ingestCodes, code) { // net/http's own, should one come
			counter(descIngestRequests, n, strconv.Itoa(code))
		}
	}
	for _, r := range wire.Rejections() {
		counter(descIngestBad, st.Bad[r], r.String())
	}
	counter(descIngestDead, st.DeadLettered)
	counter(descIngestDeadErr, st.DeadLetterErrors)
	counter(descIngestPubErr, st.PublishErrors)
}
