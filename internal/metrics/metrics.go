// Package metrics turns the statistics the engine and transport keep into Prometheus
// metrics (docs/metrics.md lists them), read at scrape time so that the hot path pays
// nothing for them, and serves them with the probes /healthz and /readyz.
package metrics

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// Sources are what the metrics read at scrape time. Engine and Conn are required; the
// others are set when the process runs them.
type Sources struct {
	Engine *engine.Engine
	Conn   *transport.Conn
	// Core or JetStream: the statistics of the input.
	Core      func() transport.SourceStats
	JetStream func() transport.JetStreamStats
	// Sink: the JetStream sink's statistics (JetStream mode).
	Sink func() transport.JetStreamSinkStats
	// Fitted: the outputs the sink cut to fit the server's max payload.
	Fitted func() int64
	// Thresholds: those of the thresholds bucket (--config-bucket).
	Thresholds func() transport.ThresholdsStats
	// Partitions: how many partitions this instance owns (--group).
	Partitions func() int
	// Ready is what /readyz answers.
	Ready func() bool
	// Extra collects the metrics of optional parts (HTTP ingest, webhook delivery).
	Extra []prometheus.Collector
}

// TopLabels is how many teams, and how many models, get a label of their own; the
// others count as "other".
const TopLabels = 10

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hangwatch_"+name, help, labels, nil)
}

var (
	descEvents        = desc("events_received_total", "Events decoded, by type.", "type")
	descOutcomes      = desc("events_total", "Events decoded, by type and by what came of them: applied, ignored (stale, after the call's end, hangwatch's own output), unwatched (team or assistant disabled), refused (a limit).", "type", "outcome")
	descBadInput      = desc("bad_input_total", "Events rejected as bad input, by reason.", "reason")
	descDeadLetters   = desc("dead_letters_total", "Rejected events republished on the dead-letter subject.")
	descDeadErrors    = desc("dead_letter_errors_total", "Rejected events that could not be dead-lettered.")
	descDeadIgnored   = desc("dead_letters_ignored_total", "Dead letters that came back in on a consumed subject and were dropped.")
	descDeadCut       = desc("dead_letters_cut_total", "Dead letters cut to fit the server's max payload (with a header that says so).")
	descApplied       = desc("events_applied_total", "Events applied to a call.")
	descIgnored       = desc("events_ignored_total", "Events that changed nothing: stale snapshots, events after a call's end, hangwatch's own output.")
	descUnwatched     = desc("events_unwatched_total", "Events of calls whose team or assistant is not watched (enabled: false).")
	descShapeless     = desc("calls_shapeless_total", "Calls whose events drive nothing: their histories hold no message hangwatch recognises as a user turn or a reply (the wrong shape); the first is logged with a hint.")
	descCalls         = desc("calls", "Calls held, by state: idle, armed (unanswered, not hung yet), hung, ended (remembered to ignore late events).", "state")
	descRetained      = desc("retained_bytes", "Bytes calls keep for their outputs.")
	descMaxRetained   = desc("max_retained_bytes", "The budget of retained bytes (--max-retained-bytes).")
	descRefused       = desc("calls_refused_total", "Events of new calls refused, by the limit reached.", "reason")
	descExpired       = desc("calls_expired_total", "Calls forgotten after --call-ttl without an event.")
	descEnded         = desc("calls_ended_total", "Calls ended by their events.")
	descHangs         = desc("hangs_total", "Hangs published, by reason and stage.", "reason", "stage")
	descResolved      = desc("hangs_resolved_total", "Hangs resolved by a reply, by the hang's reason and stage.", "reason", "stage")
	descUnresolved    = desc("hangs_unresolved_total", "Calls that ended while hung: the caller gave up in silence.", "reason", "stage")
	descByTeam        = desc("hangs_by_team_total", "Hangs by team: the most frequent teams, the rest as other.", "team")
	descByModel       = desc("hangs_by_model_total", "Hangs by the assistant's model: the most frequent, the rest as other.", "provider", "model")
	descPublishErrors = desc("publish_errors_total", "Outputs that could not be published.")
	descTruncations   = desc("history_truncations_total", "Outputs whose history was cut: by the retained-bytes budget, or to fit the server's max payload.", "cause")
	descWatermark     = desc("input_watermark_lag_seconds", "How far the input's evidence lags the clock: no deadline after the watermark fires.")
	descGaps          = desc("input_gaps_total", "Input gaps: disconnections from core NATS, events it dropped because hangwatch fell behind.")
	descGapSeconds    = desc("input_gap_seconds_total", "The total length of the input gaps.")
	descInflight      = desc("inflight_bytes", "Bytes of messages in the engine's pipeline.")
	descInflightWaits = desc("inflight_waits_total", "Times the input waited for room in the engine's pipeline (back-pressure).")
	descReady         = desc("ready", "1 when /readyz answers ready.")
	descPartitions    = desc("partitions_owned", "Partitions of the group this instance consumes (--group).")
	descConnected     = desc("nats_connected", "1 when connected to NATS.")
	descDisconnects   = desc("nats_disconnects_total", "Disconnections from NATS.")
	descReconnects    = desc("nats_reconnects_total", "Reconnections to NATS.")
	descSlow          = desc("nats_slow_consumer_total", "Slow-consumer episodes: times NATS began to drop events because hangwatch fell behind.")
	descDropped       = desc("nats_dropped_events_total", "Events NATS dropped because hangwatch fell behind (core NATS).")
	descAsyncErrors   = desc("nats_async_errors_total", "Other errors NATS reported asynchronously.")
	descProbes        = desc("input_probes_total", "Proofs of the input's progress asked of NATS (flushes, consumer info), and those that failed.", "outcome")
	descConfig        = desc("config_updates_total", "Changes of the thresholds bucket, by outcome.", "outcome")

	descReplayed    = desc("jetstream_replayed_total", "Stored events replayed to rebuild the live calls.")
	descReplaySkip  = desc("jetstream_replay_skipped_total", "Stored events the replay skipped (dead letters).")
	descConsumeErr  = desc("jetstream_consume_errors_total", "Errors the live consumer recovered from: missed heartbeats, a consumer closed by the server.")
	descRedelivered = desc("jetstream_redelivered_total", "Live events the server delivered again (an ack was lost or late).")
	descLost        = desc("jetstream_lost_deliveries_total", "Deliveries that never arrived (they are delivered again; no deadline fires until they are).")
	descAckErrors   = desc("jetstream_ack_errors_total", "Acknowledgements of applied events that could not be sent.")
	descSinkErrors  = desc("hang_publish_errors_total", "Attempts to store an output in the hang stream that failed (each is retried).")
	descSinkDropped = desc("hang_publish_dropped_total", "Outputs the hang stream refused for good.")
	descUnpublished = desc("hang_unpublished", "Outputs left unpublished when the sink stopped.")
	descDuplicates  = desc("hang_stream_duplicates_total", "Outputs the hang stream dropped as duplicates.")
	descAlreadyOut  = desc("hang_already_out_total", "Outputs of rebuilt calls not published because the hang stream showed they went out.")
	descRetries     = desc("hang_publish_retries_total", "Publications of outputs retried after a failure.")
	descQueued      = desc("hang_publish_queue", "Outputs waiting to be stored in the hang stream.")
	descInFlight    = desc("hang_publish_inflight", "Outputs awaiting the hang stream's ack.")
)

// collector reads Sources at scrape time.
type collector struct {
	s      Sources
	mu     sync.Mutex
	teams  sticky
	models sticky
}

// sticky keeps the labels a counter was exported with, so that a series never
// disappears: at each scrape the TopLabels most frequent now join those exported before,
// up to maxExported in all; past that, the rest count as other.
type sticky struct{ labels []string }

// maxExported bounds the labels of one counter over the life of the process.
const maxExported = 3 * TopLabels

func (st *sticky) pick(all []engine.LabelCount, other int64) ([]engine.LabelCount, int64) {
	for _, lc := range all[:min(len(all), TopLabels)] { // all is sorted, most frequent first
		if len(st.labels) == maxExported {
			break
		}
		if !slices.Contains(st.labels, lc.Label) && lc.Label != "" {
			st.labels = append(st.labels, lc.Label)
		}
	}
	out := make([]engine.LabelCount, 0, len(st.labels))
	for _, l := range st.labels {
		var n int64
		for _, lc := range all {
			if lc.Label == l {
				n = lc.Count
			}
		}
		out = append(out, engine.LabelCount{Label: l, Count: n})
	}
	for _, lc := range all {
		if !slices.Contains(st.labels, lc.Label) {
			other += lc.Count
		}
	}
	return out, other
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counterF := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	s := c.s
	st := s.Engine.Stats()
	for _, t := range detector.Types() {
		counter(descEvents, st.Types[t], t.String())
		for _, o := range engine.Outcomes() {
			counter(descOutcomes, st.ByOutcome[engine.EventKey{Type: t, Outcome: o}], t.String(), o.String())
		}
	}
	counter(descApplied, st.Events)
	counter(descIgnored, st.Ignored)
	counter(descUnwatched, st.Unwatched)
	counter(descShapeless, st.Shapeless)
	gauge(descCalls, float64(st.Idle), "idle")
	gauge(descCalls, float64(st.Armed), "armed")
	gauge(descCalls, float64(st.Hung), "hung")
	gauge(descCalls, float64(st.Tombs), "ended")
	gauge(descRetained, float64(st.Retained))
	gauge(descMaxRetained, float64(s.Engine.MaxRetained()))
	counter(descRefused, st.RefusedMaxCalls, "max-calls")
	counter(descRefused, st.RefusedPerTeam, "max-calls-per-team")
	counter(descExpired, st.Expired)
	counter(descEnded, st.Ended)
	for _, r := range []detector.Reason{detector.ReasonTurnTimeout, detector.ReasonMaxWait} {
		for _, g := range detector.Stages() {
			for kind, d := range map[detector.Kind]*prometheus.Desc{detector.KindHang: descHangs, detector.KindResolved: descResolved, detector.KindUnresolved: descUnresolved} {
				counter(d, st.Outputs[engine.OutputKey{Kind: kind, Reason: r, Stage: g}], r.String(), g.String())
			}
		}
	}
	c.mu.Lock()
	teams, otherTeams := c.teams.pick(s.Engine.TopTeams(4096))
	models, otherModels := c.models.pick(s.Engine.TopModels(4096))
	c.mu.Unlock()
	for _, lc := range teams {
		counter(descByTeam, lc.Count, lc.Label)
	}
	counter(descByTeam, otherTeams, engine.Other)
	for _, lc := range models {
		provider, model := splitModel(lc.Label)
		counter(descByModel, lc.Count, provider, model)
	}
	counter(descByModel, otherModels, engine.Other, engine.Other)
	counter(descPublishErrors, st.PublishErrors)
	counter(descTruncations, st.Truncated, "retention")
	var fitted int64
	if s.Fitted != nil {
		fitted = s.Fitted()
	}
	counter(descTruncations, fitted, "max-payload")
	gauge(descWatermark, st.WatermarkLag.Seconds())
	counter(descGaps, st.Gaps)
	counterF(descGapSeconds, st.GapTime.Seconds())
	gauge(descInflight, float64(st.Inflight))
	counter(descInflightWaits, st.InflightWaits)
	gauge(descReady, bool01(s.Ready != nil && s.Ready()))
	if s.Partitions != nil {
		gauge(descPartitions, float64(s.Partitions()))
	}

	cs := s.Conn.Stats()
	gauge(descConnected, bool01(cs.Connected))
	counter(descDisconnects, cs.Disconnects)
	counter(descReconnects, cs.Reconnects)
	counter(descSlow, cs.SlowConsumers)
	counter(descAsyncErrors, cs.AsyncErrors)

	var rejects transport.RejectStats
	switch {
	case s.Core != nil:
		in := s.Core()
		rejects = in.RejectStats
		counter(descDropped, in.Dropped)
		counter(descProbes, in.Probes-in.ProbeErrors, "ok")
		counter(descProbes, in.ProbeErrors, "failed")
	case s.JetStream != nil:
		js := s.JetStream()
		rejects = js.RejectStats
		counter(descDropped, 0)
		counter(descProbes, js.Probes-js.ProbeErrors, "ok")
		counter(descProbes, js.ProbeErrors, "failed")
		counter(descReplayed, js.Replayed)
		counter(descReplaySkip, js.ReplaySkipped)
		counter(descRedelivered, js.Redelivered)
		counter(descLost, js.LostDeliveries)
		counter(descAckErrors, js.AckErrors)
		counter(descConsumeErr, js.ConsumeErrors)
	}
	for _, r := range wire.Rejections() {
		counter(descBadInput, rejects.Bad[r], r.String())
	}
	counter(descDeadLetters, rejects.DeadLettered)
	counter(descDeadErrors, rejects.DeadLetterErrors)
	counter(descDeadIgnored, rejects.DeadLettersIgnored)
	counter(descDeadCut, rejects.DeadLettersCut)
	if s.Sink != nil {
		sink := s.Sink()
		counter(descDuplicates, sink.Duplicates)
		counter(descAlreadyOut, sink.AlreadyOut)
		counter(descRetries, sink.Retries)
		counter(descSinkErrors, sink.Errors)
		counter(descSinkDropped, sink.Dropped)
		gauge(descQueued, float64(sink.Queued))
		gauge(descInFlight, float64(sink.InFlight))
		gauge(descUnpublished, float64(sink.Unpublished))
	}
	if s.Thresholds != nil {
		th := s.Thresholds()
		counter(descConfig, th.Applied, "applied")
		counter(descConfig, th.Invalid, "invalid")
		counter(descConfig, th.Deleted, "deleted")
	}
}

// splitModel splits "provider/model"; a label without a slash is a model of no known
// provider.
func splitModel(label string) (provider, model string) {
	for i := 0; i < len(label); i++ {
		if label[i] == '/' {
			return label[:i], label[i+1:]
		}
	}
	return "", label
}

// NewRegistry returns a registry with the Go and process collectors and the build
// information gauge hangwatch_build_info, labelled with build (version, revision,
// dirty, goversion).
func NewRegistry(build map[string]string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hangwatch_build_info",
		Help:        "Build information of the running hangwatch; always 1.",
		ConstLabels: build,
	})
	buildInfo.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo)
	return reg
}

// Register registers the metrics of s.
func Register(reg prometheus.Registerer, s Sources) {
	reg.MustRegister(&collector{s: s})
	for _, c := range s.Extra {
		reg.MustRegister(c)
	}
}

// Observed is a Sink that records, for each output it publishes, the detection lag of a
// hang (from its deadline to its hand-over) and the caller's wait at a resolution.
type Observed struct {
	engine.Sink
	lag, wait prometheus.Histogram
}

// Observe wraps s, registering its histograms with reg.
func Observe(s engine.Sink, reg prometheus.Registerer) *Observed {
	o := &Observed{
		Sink: s,
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hangwatch_detection_lag_seconds",
			Help: "Time from a hang's deadline to its hand-over to NATS (in JetStream mode, to its queueing for the hang stream).",
			// From 100 µs to 10 s: detection is meant to take milliseconds, and a late one
			// (after an outage, a failover) is measured too.
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 10, 16),
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hangwatch_resolved_wait_seconds",
			Help:    "How long the caller waited, from the first unanswered turn to the reply, when a hang resolved.",
			Buckets: []float64{2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 45, 60, 120},
		}),
	}
	reg.MustRegister(o.lag, o.wait)
	return o
}

// Publish publishes out and records it.
func (o *Observed) Publish(callID string, out *detector.Output) error {
	start := time.Now()
	if err := o.Sink.Publish(callID, out); err != nil {
		return err
	}
	switch out.Kind {
	case detector.KindHang:
		o.lag.Observe((time.Duration(max(out.At-out.Deadline, 0)) + time.Since(start)).Seconds())
	case detector.KindResolved:
		o.wait.Observe(out.Wait.Seconds())
	}
	return nil
}
