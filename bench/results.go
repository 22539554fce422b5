package bench

import (
	"time"

	"github.com/hangwatch/hangwatch/internal/sim"
)

// Results are the measurements of a run.
type Results struct {
	Config    Config
	CPUs      int
	GoVersion string
	Started   time.Time
	Elapsed   time.Duration
	// PeakRSS is the load generator's own (publisher, NATS server, observer).
	PeakRSS int64

	// Stream describes the throughput stream.
	Stream StreamInfo
	// Decode holds the decode figures, on the largest event of the stream.
	Decode     DecodeResult
	Throughput []ThroughputResult
	Memory     []MemoryResult
	Realtime   []RealtimeResult
	// Published counts the events published to each subject, over all its phases.
	Published map[string]int64
	// Errors are the failures of phases that did not stop the run.
	Errors []string
}

// StreamInfo describes one round of the throughput stream.
type StreamInfo struct {
	Calls, Events      int
	MeanBytes, MaxSize float64
}

// Figure is a micro-benchmark result.
type Figure struct {
	Name        string
	MBPerSec    float64
	NsPerOp     float64
	AllocsPerOp int64
	BytesPerOp  int64
}

// DecodeResult compares decoders on one event.
type DecodeResult struct {
	EventBytes int
	// Hangwatch is wire.Decode; JSON encoding/json into a struct of the fields
	// that detection reads, the pass-through values raw (as transport's
	// BenchmarkDecodeEncodingJSON); Baseline is bench/baseline's Decode of the whole
	// event.
	Hangwatch, JSON, Baseline Figure
}

// ThroughputResult is a subject's sustained rate in the closed loop.
type ThroughputResult struct {
	Subject string
	// Events and Bytes were published, and all decoded within Elapsed.
	Events, Bytes int64
	Elapsed       time.Duration
	EventsPerSec  float64
	MBPerSec      float64
	// CPU is the subject's CPU time over the phase; LoadGenCPU that of the load
	// generator (publisher, NATS server, observer).
	CPU, LoadGenCPU time.Duration
	PeakRSS         int64
	// Lost counts the events published that the subject did not receive, whatever
	// the cause. Dropped counts those that its subscription reports NATS dropped, and
	// SlowConsumers the server's slow-consumer episodes over the phase: both tell why
	// events were lost, and are part of Lost, not more of it.
	Lost, Dropped, SlowConsumers int64
	// Runs is the number of runs this median is taken from; RateMin and RateMax the
	// range of their rates. Lost, Dropped and SlowConsumers are the worst of them.
	Runs             int
	RateMin, RateMax float64
}

// CPUPerMillion is the subject's CPU seconds per million events.
func (r ThroughputResult) CPUPerMillion() float64 {
	return r.CPU.Seconds() / float64(max(r.Events, 1)) * 1e6
}

// MemoryResult is a subject's heap per call, at rest.
type MemoryResult struct {
	Subject string
	Calls   int
	// HeapKnown is false for the binary, which reports no heap: only RSS.
	HeapKnown bool
	// Idle is the heap per idle call, everything included; IdleExcl and ArmedExcl the
	// heap per idle and armed call less the wire bytes of the events that the calls
	// keep (Retained); Overhead is ArmedExcl - IdleExcl.
	Idle, IdleExcl, ArmedExcl, Overhead float64
	IdleRetained, ArmedRetained         int64
	// Armed counts the calls the subject reports armed after the arming events.
	Armed int64
	// RSSIdle and RSSArmed are the RSS per call over the RSS before the calls.
	RSSIdle, RSSArmed float64
	PeakRSS           int64
}

// RealtimeResult is a subject's detection under live load.
type RealtimeResult struct {
	Subject  string
	Calls    int
	Duration time.Duration
	// Events, Bytes, Late and MaxLate are the simulation's: what it published, and how
	// late (see sim.Stats). HangUps are the end-of-call-reports of the calls still live
	// at the end, published after Duration; Events includes them.
	Events, Bytes, Late, HangUps int64
	MaxLate                      time.Duration
	Lost                         int64
	// Tally is the tally against the ground truth (its Calls are the calls started,
	// its lags in ascending order).
	sim.Tally
	LagP50, LagP99, LagMax time.Duration
	// OwnLag is the subject's own share of the lag: from the deadline to the hang's
	// hand-over to the code that encodes and publishes it, measured inside the subject
	// (not for the binary).
	OwnLag  LagQuantiles
	CPU     time.Duration
	PeakRSS int64
	// HeapPerCall is the heap the latest GC found live, over the live calls, sampled
	// near the end of the run (0 for the binary).
	HeapPerCall float64
	LiveCalls   int64
}

// EventsPerSec is the rate the simulation published at during Duration: the hang-ups
// at the end are left out, as they come after it.
func (r RealtimeResult) EventsPerSec() float64 {
	return float64(r.Events-r.HangUps) / r.Duration.Seconds()
}

// CPUPerMillion is the subject's CPU seconds per million events.
func (r RealtimeResult) CPUPerMillion() float64 {
	return r.CPU.Seconds() / float64(max(r.Events, 1)) * 1e6
}

// bySubject returns the result of subject among rs.
func bySubject[R interface{ subject() string }](rs []R, subject string) (R, bool) {
	for _, r := range rs {
		if r.subject() == subject {
			return r, true
		}
	}
	var zero R
	return zero, false
}

func (r ThroughputResult) subject() string { return r.Subject }
func (r MemoryResult) subject() string     { return r.Subject }
func (r RealtimeResult) subject() string   { return r.Subject }
