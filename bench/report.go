package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// Summary is the last line of a report: the headline figures as one JSON object.
//
//   - events: the events published to hangwatch (in process) over all its phases.
//   - e2e_vs_raw, e2e_vs_baseline: the sustained events/s of hangwatch (in process) in
//     the throughput phase (~30 KB events, closed loop, no loss) over that of the raw
//     nats.go subscriber and of the baseline.
//   - mem_vs_baseline: hangwatch's heap per idle live call over the baseline's, each
//     with everything it keeps for the call (memory phase).
//   - decode_mb_s: wire.Decode on the largest event of the stream (~30 KB), one
//     goroutine, in MB/s (10^6 bytes); decode_vs_encoding_json: that over
//     encoding/json decoding the same event into a struct of the same fields.
//   - idle_call_bytes: hangwatch's heap per idle call; armed_call_overhead_bytes: what
//     an armed call costs more, the retained snapshot excluded (memory phase).
//   - lag_p50_ms, lag_p99_ms, lag_max_ms: detection lag of hangwatch (in process), the
//     time the hang was received from NATS minus the true deadline (real-time phase).
//   - missed, false, duplicates: hangwatch's (in process) against the ground truth.
//
// A figure whose phase did not run is null.
type Summary struct {
	Events                 int64    `json:"events"`
	E2EVsRaw               *float64 `json:"e2e_vs_raw"`
	E2EVsBaseline          *float64 `json:"e2e_vs_baseline"`
	MemVsBaseline          *float64 `json:"mem_vs_baseline"`
	DecodeMBs              *float64 `json:"decode_mb_s"`
	DecodeVsEncodingJSON   *float64 `json:"decode_vs_encoding_json"`
	IdleCallBytes          *float64 `json:"idle_call_bytes"`
	ArmedCallOverheadBytes *float64 `json:"armed_call_overhead_bytes"`
	LagP50Ms               *float64 `json:"lag_p50_ms"`
	LagP99Ms               *float64 `json:"lag_p99_ms"`
	LagMaxMs               *float64 `json:"lag_max_ms"`
	Missed                 *int     `json:"missed"`
	False                  *int     `json:"false"`
	Duplicates             *int     `json:"duplicates"`
}

func round(v float64, digits int) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	p := math.Pow10(digits)
	r := math.Round(v*p) / p
	return &r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summary computes the summary of the results.
func (res *Results) Summary() Summary {
	s := Summary{Events: res.Published[SubjectEngine]}
	if e, ok := bySubject(res.Throughput, SubjectEngine); ok {
		if r, ok := bySubject(res.Throughput, SubjectRaw); ok {
			s.E2EVsRaw = round(e.EventsPerSec/r.EventsPerSec, 3)
		}
		if b, ok := bySubject(res.Throughput, SubjectBaseline); ok {
			s.E2EVsBaseline = round(e.EventsPerSec/b.EventsPerSec, 3)
		}
	}
	if e, ok := bySubject(res.Memory, SubjectEngine); ok {
		s.IdleCallBytes = round(e.Idle, 1)
		s.ArmedCallOverheadBytes = round(e.Overhead, 1)
		if b, ok := bySubject(res.Memory, SubjectBaseline); ok {
			s.MemVsBaseline = round(e.Idle/b.Idle, 3)
		}
	}
	if d := res.Decode; d.EventBytes > 0 {
		s.DecodeMBs = round(d.Hangwatch.MBPerSec, 1)
		s.DecodeVsEncodingJSON = round(d.Hangwatch.MBPerSec/d.JSON.MBPerSec, 2)
	}
	if e, ok := bySubject(res.Realtime, SubjectEngine); ok {
		s.LagP50Ms, s.LagP99Ms, s.LagMaxMs = round(ms(e.LagP50), 3), round(ms(e.LagP99), 3), round(ms(e.LagMax), 3)
		s.Missed, s.False, s.Duplicates = &e.Missed, &e.False, &e.Duplicates
	}
	return s
}

// JSON returns the summary as one line.
func (s Summary) JSON() string {
	data, _ := json.Marshal(s)
	return string(data)
}

var names = map[string]string{
	SubjectRaw:      "raw nats.go",
	SubjectEngine:   "hangwatch (in process)",
	SubjectBinary:   "hangwatch (binary)",
	SubjectBaseline: "baseline",
}

func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a/b) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Report writes the tables, the targets, and last the summary line.
func (res *Results) Report(w io.Writer) {
	c := res.Config
	fmt.Fprintf(w, "\nhangwatch load benchmark: %d CPUs, %s, seed %d, %s, took %v; load generator peak RSS %s\n",
		res.CPUs, res.GoVersion, c.Seed, res.Started.Format(time.RFC3339), res.Elapsed.Round(time.Second), mb(res.PeakRSS))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }

	if d := res.Decode; d.EventBytes > 0 {
		fmt.Fprintf(w, "\nDecode one %.1f KB conversation-update, one goroutine:\n", float64(d.EventBytes)/1e3)
		row("decoder", "MB/s", "ns/event", "allocs", "bytes", "vs hangwatch")
		for _, f := range []Figure{d.Hangwatch, d.JSON, d.Baseline} {
			row(f.Name, fmt.Sprintf("%.0f", f.MBPerSec), fmt.Sprintf("%.0f", f.NsPerOp), fmt.Sprint(f.AllocsPerOp),
				fmt.Sprint(f.BytesPerOp), ratio(f.MBPerSec, d.Hangwatch.MBPerSec))
		}
		tw.Flush()
	}

	if len(res.Throughput) > 0 {
		raw, _ := bySubject(res.Throughput, SubjectRaw)
		base, _ := bySubject(res.Throughput, SubjectBaseline)
		fmt.Fprintf(w, "\nThroughput: the same stream to each, closed loop (%d events in flight at most), as fast as each keeps up;\n"+
			"median of %d runs taken in turns. Stream: %d calls of %d turns a round, mean %.1f KB, largest %.1f KB;\n"+
			"rounds until %d events or %v.\n",
			c.Window, c.Repeat, res.Stream.Calls, c.PayloadTurns, res.Stream.MeanBytes/1e3, res.Stream.MaxSize/1e3, c.TPEvents, c.TPMaxTime)
		row("subject", "events", "events/s", "range", "MB/s", "CPU s/M events", "load gen CPU s/M", "peak RSS", "lost", "vs raw", "vs baseline")
		for _, r := range res.Throughput {
			row(names[r.Subject], fmt.Sprint(r.Events), fmt.Sprintf("%.0f", r.EventsPerSec),
				fmt.Sprintf("%.0f-%.0f", r.RateMin, r.RateMax), fmt.Sprintf("%.0f", r.MBPerSec),
				fmt.Sprintf("%.1f", r.CPUPerMillion()), fmt.Sprintf("%.1f", r.LoadGenCPU.Seconds()/float64(max(r.Events, 1))*1e6),
				mb(r.PeakRSS), fmt.Sprint(r.Lost), ratio(r.EventsPerSec, raw.EventsPerSec),
				ratio(r.EventsPerSec, base.EventsPerSec))
		}
		tw.Flush()
		for _, r := range res.Throughput {
			if r.Dropped > 0 || r.SlowConsumers > 0 {
				fmt.Fprintf(w, "%s: of the lost, %d dropped by its subscription; %d slow-consumer episodes on the server\n",
					names[r.Subject], r.Dropped, r.SlowConsumers)
			}
		}
	}

	if len(res.Memory) > 0 {
		fmt.Fprintf(w, "\nMemory: %d calls brought to idle (status-update, greeting), then armed (first user turn); heap after two GCs.\n"+
			"\"excl.\" leaves out the wire bytes of the events a call keeps (hangwatch: an armed call's snapshot; baseline: its latest\n"+
			"snapshot, idle or not, which it keeps decoded).\n", c.Calls)
		row("subject", "idle B/call", "idle excl.", "armed excl.", "armed overhead", "kept idle", "kept armed", "RSS/call idle", "RSS/call armed", "peak RSS")
		for _, r := range res.Memory {
			if !r.HeapKnown {
				row(names[r.Subject], "-", "-", "-", "-", "-", "-", fmt.Sprintf("%.0f", r.RSSIdle), fmt.Sprintf("%.0f", r.RSSArmed), mb(r.PeakRSS))
				continue
			}
			row(names[r.Subject], fmt.Sprintf("%.0f", r.Idle), fmt.Sprintf("%.0f", r.IdleExcl), fmt.Sprintf("%.0f", r.ArmedExcl),
				fmt.Sprintf("%.0f", r.Overhead), mb(r.IdleRetained), mb(r.ArmedRetained),
				fmt.Sprintf("%.0f", r.RSSIdle), fmt.Sprintf("%.0f", r.RSSArmed), mb(r.PeakRSS))
		}
		tw.Flush()
	}

	if len(res.Realtime) > 0 {
		r0 := res.Realtime[0]
		fmt.Fprintf(w, "\nReal time: %d live calls for %v each, %.0f events/s published (%.1f KB mean), then %d hang-ups (counted\n"+
			"in events); lag = hang received by the load generator - true deadline; own = deadline to the hang handed to\n"+
			"the subject's encoding and publishing code, inside the subject.\n",
			r0.Calls, r0.Duration, r0.EventsPerSec(), float64(r0.Bytes)/float64(max(r0.Events, 1))/1e3, r0.HangUps)
		row("subject", "events", "late", "lost", "stalls", "resolved", "unresolved", "missed", "false", "dups", "wrong", "outcomes missed",
			"lag p50", "lag p99", "lag max", "own p50", "own p99", "own max", "CPU s/M events", "peak RSS", "heap/live call")
		for _, r := range res.Realtime {
			heap := "-"
			if r.HeapPerCall > 0 {
				heap = fmt.Sprintf("%.0f B", r.HeapPerCall)
			}
			row(names[r.Subject], fmt.Sprint(r.Events), fmt.Sprint(r.Late), fmt.Sprint(r.Lost), fmt.Sprint(r.Stalls),
				fmt.Sprint(r.Resolved), fmt.Sprint(r.Unresolved), fmt.Sprint(r.Missed), fmt.Sprint(r.False), fmt.Sprint(r.Duplicates),
				fmt.Sprint(r.WrongReason+r.WrongStage+r.WrongWait+r.WrongEndedReason+r.FalseResolved+r.FalseUnresolved),
				fmt.Sprint(r.MissedResolved+r.MissedUnresolved),
				fmtMs(r.LagP50), fmtMs(r.LagP99), fmtMs(r.LagMax), ownLag(r.OwnLag, r.OwnLag.P50), ownLag(r.OwnLag, r.OwnLag.P99), ownLag(r.OwnLag, r.OwnLag.Max),
				fmt.Sprintf("%.1f", r.CPUPerMillion()), mb(r.PeakRSS), heap)
		}
		tw.Flush()
		fmt.Fprintln(w, "wrong: outputs of a stall with the wrong reason, stage, wait or ended reason, and resolutions or unresolved of stretches\n"+
			"that have none; outcomes missed: stalls whose hang-resolved or hang-unresolved did not come. By stage (stalls observed):")
		for _, r := range res.Realtime {
			fmt.Fprintf(w, "  %s: awaiting-assistant %d, awaiting-tool %d, after-tool %d\n", names[r.Subject],
				r.Stages[detector.StageAwaitingAssistant], r.Stages[detector.StageAwaitingTool], r.Stages[detector.StageAfterTool])
		}
	}

	for _, e := range res.Errors {
		fmt.Fprintf(w, "\nERROR %s\n", e)
	}
	if c.Stress {
		ss := res.StressSummary()
		ss.targets(w)
		fmt.Fprintln(w, ss.JSON())
		return
	}
	s := res.Summary()
	res.targets(w, s)
	fmt.Fprintln(w, s.JSON())
}

// StressSummary is the last line of a stress report (`make bench-stress`): hangwatch's
// figures in the real-time phase (the binary's, else the in-process subject's), the
// baseline's beside them, and their ratios.
//
//   - events, gb: what was published to hangwatch, hang-ups included (GB = 10^9 bytes).
//   - stalls, missed, false, duplicates: against the ground truth; errors counts every
//     disagreement (sim.Tally.Errors: wrong reasons, stages, waits, ended reasons,
//     outcomes missed or false too).
//   - late: events the load generator published over 500 ms late (a machine too busy:
//     the truth of their calls no longer holds, and the run is void unless it is 0);
//     lost: events published that the subject did not apply.
//   - lag_p50_ms, lag_p99_ms, lag_max_ms: detection lag, the hang received from NATS
//     minus the true deadline.
//   - rss_mb: peak RSS (VmHWM) of the subject's process; cpu_s its CPU time.
//   - baseline_*: the same of the baseline; *_vs_baseline: hangwatch's over the
//     baseline's.
type StressSummary struct {
	Events             int64    `json:"events"`
	GB                 *float64 `json:"gb"`
	Stalls             *int     `json:"stalls"`
	Missed             *int     `json:"missed"`
	False              *int     `json:"false"`
	Duplicates         *int     `json:"duplicates"`
	Errors             *int     `json:"errors"`
	Late               *int64   `json:"late"`
	Lost               *int64   `json:"lost"`
	LagP50Ms           *float64 `json:"lag_p50_ms"`
	LagP99Ms           *float64 `json:"lag_p99_ms"`
	LagMaxMs           *float64 `json:"lag_max_ms"`
	RSSMB              *float64 `json:"rss_mb"`
	CPUS               *float64 `json:"cpu_s"`
	BaselineMissed     *int     `json:"baseline_missed"`
	BaselineFalse      *int     `json:"baseline_false"`
	BaselineDuplicates *int     `json:"baseline_duplicates"`
	BaselineLagP50Ms   *float64 `json:"baseline_lag_p50_ms"`
	BaselineLagP99Ms   *float64 `json:"baseline_lag_p99_ms"`
	BaselineLagMaxMs   *float64 `json:"baseline_lag_max_ms"`
	BaselineRSSMB      *float64 `json:"baseline_rss_mb"`
	BaselineCPUS       *float64 `json:"baseline_cpu_s"`
	LagP99VsBaseline   *float64 `json:"lag_p99_vs_baseline"`
	RSSVsBaseline      *float64 `json:"rss_vs_baseline"`
	CPUVsBaseline      *float64 `json:"cpu_vs_baseline"`
}

// StressSummary computes the summary of a stress run.
func (res *Results) StressSummary() StressSummary {
	var s StressSummary
	e, ok := bySubject(res.Realtime, SubjectBinary)
	if !ok {
		e, ok = bySubject(res.Realtime, SubjectEngine)
	}
	if ok {
		s.Events, s.GB = e.Events, round(float64(e.Bytes)/1e9, 2)
		errs := e.Errors()
		s.Stalls, s.Missed, s.False, s.Duplicates, s.Errors = &e.Stalls, &e.Missed, &e.False, &e.Duplicates, &errs
		s.Late, s.Lost = &e.Late, &e.Lost
		s.LagP50Ms, s.LagP99Ms, s.LagMaxMs = round(ms(e.LagP50), 3), round(ms(e.LagP99), 3), round(ms(e.LagMax), 3)
		s.RSSMB, s.CPUS = round(float64(e.PeakRSS)/1e6, 1), round(e.CPU.Seconds(), 1)
	}
	b, okb := bySubject(res.Realtime, SubjectBaseline)
	if okb {
		s.BaselineMissed, s.BaselineFalse, s.BaselineDuplicates = &b.Missed, &b.False, &b.Duplicates
		s.BaselineLagP50Ms, s.BaselineLagP99Ms, s.BaselineLagMaxMs = round(ms(b.LagP50), 3), round(ms(b.LagP99), 3), round(ms(b.LagMax), 3)
		s.BaselineRSSMB, s.BaselineCPUS = round(float64(b.PeakRSS)/1e6, 1), round(b.CPU.Seconds(), 1)
	}
	if ok && okb {
		s.LagP99VsBaseline = round(float64(e.LagP99)/float64(b.LagP99), 3)
		s.RSSVsBaseline = round(float64(e.PeakRSS)/float64(b.PeakRSS), 3)
		s.CPUVsBaseline = round(e.CPU.Seconds()/b.CPU.Seconds(), 3)
	}
	return s
}

// JSON returns the summary as one line.
func (s StressSummary) JSON() string {
	data, _ := json.Marshal(s)
	return string(data)
}

// targets writes the goals of the stress load (issue 12) with the measured values.
func (s StressSummary) targets(w io.Writer) {
	fmt.Fprintln(w, "\nTargets of the stress load (reported, not asserted):")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	atMost := func(name string, v *float64, target float64, unit string) {
		switch {
		case v == nil:
			fmt.Fprintf(tw, "  %s ≤ %g%s\t-\tnot measured\n", name, target, unit)
		case *v <= target:
			fmt.Fprintf(tw, "  %s ≤ %g%s\t%.4g%s\tmet\n", name, target, unit, *v, unit)
		default:
			fmt.Fprintf(tw, "  %s ≤ %g%s\t%.4g%s\tMISSED by %.1f%%\n", name, target, unit, *v, unit, (*v-target)/target*100)
		}
	}
	if s.Late != nil && *s.Late > 0 {
		fmt.Fprintf(tw, "  VOID: the load generator published %d events late (the machine was too busy)\t\t\n", *s.Late)
	}
	atMost("lag p99", s.LagP99Ms, 2, " ms")
	atMost("peak RSS", s.RSSMB, 200, " MB")
	if s.Missed != nil {
		verdict := "met"
		if *s.Missed+*s.False+*s.Duplicates > 0 {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "  missed = false = duplicates = 0\t%d, %d, %d\t%s\n", *s.Missed, *s.False, *s.Duplicates, verdict)
	}
	tw.Flush()
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }

func ownLag(q LagQuantiles, d time.Duration) string {
	if q.N == 0 {
		return "-"
	}
	return fmtMs(d)
}

// targets writes each target of the issue with its measured value.
func (res *Results) targets(w io.Writer, s Summary) {
	fmt.Fprintln(w, "\nTargets (reported, not asserted):")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	check := func(name string, v *float64, target float64, atLeast bool, unit string) {
		if v == nil {
			fmt.Fprintf(tw, "  %s\t-\tnot measured\n", name)
			return
		}
		met := *v >= target
		if !atLeast {
			met = *v <= target
		}
		verdict := "met"
		if !met {
			verdict = fmt.Sprintf("MISSED by %.1f%%", math.Abs(*v-target)/target*100)
		}
		op := "≥"
		if !atLeast {
			op = "≤"
		}
		fmt.Fprintf(tw, "  %s %s %g%s\t%.4g%s\t%s\n", name, op, target, unit, *v, unit, verdict)
	}
	check("e2e_vs_raw", s.E2EVsRaw, 0.95, true, "")
	check("e2e_vs_baseline", s.E2EVsBaseline, 5, true, "")
	check("mem_vs_baseline", s.MemVsBaseline, 0.2, false, "")
	check("decode", s.DecodeMBs, 1000, true, " MB/s")
	check("idle call", s.IdleCallBytes, 200, false, " B")
	check("lag p99", s.LagP99Ms, 2, false, " ms")
	if r, ok := bySubject(res.Realtime, SubjectEngine); ok {
		verdict := "met"
		if r.Missed+r.False+r.Duplicates > 0 {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "  missed = false = duplicates = 0\t%d, %d, %d\t%s\n", r.Missed, r.False, r.Duplicates, verdict)
		if r.Calls != 100_000 {
			fmt.Fprintf(tw, "  (the lag target is set at 100,000 live calls and 10,000 events/s; this run had %d)\t\t\n", r.Calls)
		}
	}
	tw.Flush()
}
