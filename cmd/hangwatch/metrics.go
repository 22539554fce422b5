package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// sources are what the metrics read at scrape time: the counters and gauges the
// engine and transport keep anyway, so that the hot path pays nothing for them.
type sources struct {
	engine *engine.Engine
	conn   *transport.Conn
	input  func() transport.SourceStats
	ready  func() bool // subscribed and not draining
	// In JetStream mode only; jsInput holds input's counters too, so a scrape reads it
	// instead.
	jsInput func() transport.JetStreamStats
	jsSink  func() transport.JetStreamSinkStats
}

// collector turns the stats of the engine and transport into Prometheus metrics.
type collector struct{ s sources }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hangwatch_"+name, help, labels, nil)
}

var (
	descEvents        = desc("events_received_total", "Events decoded from NATS, by type.", "type")
	descBadInput      = desc("bad_input_total", "Events rejected as bad input, by reason.", "reason")
	descDeadLetters   = desc("dead_letters_total", "Rejected events republished on the dead-letter subject.")
	descDeadErrors    = desc("dead_letter_errors_total", "Rejected events that could not be dead-lettered.")
	descApplied       = desc("events_applied_total", "Events applied to a call.")
	descIgnored       = desc("events_ignored_total", "Events that changed nothing: stale snapshots, events after a call's end, hangwatch's own output.")
	descCalls         = desc("calls", "Calls held, by state: idle, armed (unanswered, not hung yet), hung, ended (remembered to ignore late events).", "state")
	descRetained      = desc("retained_bytes", "Payload bytes held by armed calls for their hang.")
	descRefused       = desc("calls_refused_total", "Events of new calls refused because --max-calls was reached.")
	descExpired       = desc("calls_expired_total", "Calls forgotten after --call-ttl without an event.")
	descEnded         = desc("calls_ended_total", "Calls ended by end-of-call-report or status finished/forwarded.")
	descHangs         = desc("hangs_total", "Hangs detected, by reason.", "reason")
	descResolved      = desc("hangs_resolved_total", "Hangs resolved by a reply.")
	descPublishErrors = desc("publish_errors_total", "Hangs and hang-resolved that could not be published.")
	descConnected     = desc("nats_connected", "1 when connected to NATS.")
	descDisconnects   = desc("nats_disconnects_total", "Disconnections from NATS.")
	descReconnects    = desc("nats_reconnects_total", "Reconnections to NATS.")
	descSlow          = desc("nats_slow_consumer_total", "Slow-consumer episodes: times NATS began to drop events because hangwatch fell behind.")
	descDropped       = desc("nats_dropped_events_total", "Events NATS dropped because hangwatch fell behind (core NATS).")
	descDeadIgnored   = desc("dead_letters_ignored_total", "Dead letters that came back in on a consumed subject and were dropped.")
	descAsyncErrors   = desc("nats_async_errors_total", "Other errors NATS reported asynchronously.")

	descReplayed    = desc("jetstream_replayed_total", "Stored events replayed at start to rebuild the live calls.")
	descReplaySkip  = desc("jetstream_replay_skipped_total", "Stored events the replay could not decode (they were bad input when they came).")
	descConsumeErr  = desc("jetstream_consume_errors_total", "Errors the live consumer recovered from: missed heartbeats, a consumer closed by the server.")
	descSinkErrors  = desc("hang_publish_errors_total", "Attempts to store an output in the hang stream that failed (each is retried).")
	descSinkDropped = desc("hang_publish_dropped_total", "Outputs the hang stream refused for good (larger than it accepts).")
	descUnpublished = desc("hang_unpublished", "Outputs left unpublished when the sink closed at shutdown.")
	descRedelivered = desc("jetstream_redelivered_total", "Live events the server delivered again (an ack was lost or late).")
	descAckErrors   = desc("jetstream_ack_errors_total", "Acknowledgements of applied events that could not be sent.")
	descDuplicates  = desc("hang_stream_duplicates_total", "Outputs the hang stream dropped as duplicates: stalls detected again after a restart.")
	descRetries     = desc("hang_publish_retries_total", "Publications of outputs retried after a failure.")
	descQueued      = desc("hang_publish_queue", "Outputs waiting to be stored in the hang stream.")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	// In JetStream mode the source's counters come with the rest of its stats, read once.
	var js transport.JetStreamStats
	if c.s.jsInput != nil {
		js = c.s.jsInput()
	} else {
		js.SourceStats = c.s.input()
	}
	in := js.SourceStats
	for _, t := range []detector.Type{detector.TypeConversationUpdate, detector.TypeStatusUpdate,
		detector.TypeEndOfCallReport, detector.TypeOther, detector.TypeOutput} {
		counter(descEvents, in.Events[t], t.String())
	}
	for _, r := range wire.Reasons() {
		counter(descBadInput, in.Bad[r], r.String())
	}
	counter(descDeadLetters, in.DeadLettered)
	counter(descDeadErrors, in.DeadLetterErrors)
	counter(descDeadIgnored, in.DeadLettersIgnored)
	counter(descDropped, in.Dropped)

	st := c.s.engine.Stats()
	counter(descApplied, st.Events)
	counter(descIgnored, st.Ignored)
	gauge(descCalls, st.Idle, "idle")
	gauge(descCalls, st.Armed, "armed")
	gauge(descCalls, st.Hung, "hung")
	gauge(descCalls, st.Tombs, "ended")
	gauge(descRetained, st.Retained)
	counter(descRefused, st.Refused)
	counter(descExpired, st.Expired)
	counter(descEnded, st.Ended)
	counter(descHangs, st.HangsTurnTimeout, detector.ReasonTurnTimeout.String())
	counter(descHangs, st.HangsMaxWait, detector.ReasonMaxWait.String())
	counter(descResolved, st.Resolved)
	counter(descPublishErrors, st.PublishErrors)

	cs := c.s.conn.Stats()
	connected := int64(0)
	if cs.Connected {
		connected = 1
	}
	gauge(descConnected, connected)
	counter(descDisconnects, cs.Disconnects)
	counter(descReconnects, cs.Reconnects)
	counter(descSlow, cs.SlowConsumers)
	counter(descAsyncErrors, cs.AsyncErrors)

	if c.s.jsInput != nil {
		counter(descReplayed, js.Replayed)
		counter(descReplaySkip, js.ReplaySkipped)
		counter(descRedelivered, js.Redelivered)
		counter(descAckErrors, js.AckErrors)
		counter(descConsumeErr, js.ConsumeErrors)
	}
	if c.s.jsSink != nil {
		sink := c.s.jsSink()
		counter(descDuplicates, sink.Duplicates)
		counter(descRetries, sink.Retries)
		counter(descSinkErrors, sink.Errors)
		counter(descSinkDropped, sink.Dropped)
		gauge(descQueued, int64(sink.Queued))
		gauge(descUnpublished, sink.Unpublished)
	}
}

// observed is a Sink that records, for each output it publishes, the detection lag of a
// hang (from its deadline to its publication) and the caller's wait at a resolution.
type observed struct {
	engine.Sink
	clock clock.Clock
	lag   prometheus.Histogram
	wait  prometheus.Histogram
}

func newObserved(s engine.Sink, clk clock.Clock, reg prometheus.Registerer) *observed {
	o := &observed{
		Sink:  s,
		clock: clk,
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hangwatch_detection_lag_seconds",
			Help: "Time from a hang's deadline to its hand-over to NATS (in JetStream mode, to its queueing for the hang stream).",
			// From 100 µs to 1 s: detection is meant to take milliseconds.
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 13),
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

func (o *observed) Publish(callID string, out *detector.Output) error {
	if err := o.Sink.Publish(callID, out); err != nil {
		return err
	}
	switch out.Kind {
	case detector.KindHang:
		o.lag.Observe(max(time.Duration(o.clock.Now().UnixNano()-out.Deadline), 0).Seconds())
	case detector.KindResolved:
		o.wait.Observe(out.Wait.Seconds())
	}
	return nil
}

// newRegistry returns a registry with the process and Go collectors and build info.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	revision := buildRevision()
	if revision == "" {
		revision = "unknown"
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hangwatch_build_info",
		Help:        "Build information of the running hangwatch; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "revision": revision},
	})
	buildInfo.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo)
	return reg
}

// metricsServer serves /metrics, /healthz (the process serves) and /readyz (connected
// to NATS and subscribed, and not draining).
type metricsServer struct {
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

func startMetrics(addr string, reg *prometheus.Registry, s sources, log *zap.Logger) (*metricsServer, error) {
	reg.MustRegister(collector{s})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.conn.Stats().Connected || !s.ready() {
			http.Error(w, "not ready: not connected, not subscribed yet, or draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &metricsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, log: log}
	log.Info("serving metrics", zap.String("addr", ln.Addr().String()))
	return m, nil
}

// serve serves until shutdown; it returns nil once shut down.
func (m *metricsServer) serve() error {
	if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (m *metricsServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.log.Warn("metrics server shutdown", zap.Error(err))
	}
}
