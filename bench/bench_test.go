package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/sim"
	"github.com/hangwatch/hangwatch/wire"
)

func TestMarker(t *testing.T) {
	tests := []struct {
		give   []byte
		want   int64
		wantOK bool
	}{
		{give: marker(42), want: 42, wantOK: true},
		{give: marker(1 << 40), want: 1 << 40, wantOK: true},
		{give: []byte(`{"message":{}}`)},
		{give: []byte("bench-marker x")},
	}
	for _, tt := range tests {
		got, ok := parseMarker(tt.give)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseMarker(%q) = %d, %v; want %d, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
	// A marker is bad input to hangwatch, which is what sends it back.
	var ev detector.Event
	if err := wire.Decode(&ev, marker(1), wire.DefaultLimits()); err == nil {
		t.Error("a marker decodes as an event")
	}
}

// TestStream checks that each round of the throughput stream is fresh calls: the ids
// written over payloads and subjects are the simulation's ids of the round's calls.
func TestStream(t *testing.T) {
	cfg := QuickConfig()
	cfg.TPCalls = 3
	st, err := newStream(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.events) < 3*5 || st.meanBytes() < float64(cfg.TPMinBytes) {
		t.Fatalf("%d events of mean %.0f bytes: too few, too small", len(st.events), st.meanBytes())
	}
	simCfg := sim.DefaultConfig()
	simCfg.Seed = cfg.Seed
	s, err := sim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, round := range []int{0, 1, 5} {
		for i := range st.events {
			subject, data := st.next(round, i)
			var ev detector.Event
			if err := wire.Decode(&ev, data, wire.DefaultLimits()); err != nil {
				t.Fatalf("round %d event %d: %v", round, i, err)
			}
			index, ok := s.ParseCallID(ev.CallID)
			wantIndex := st.events[i].index + uint64(round)*st.calls
			if !ok || index != wantIndex {
				t.Errorf("round %d event %d: call %s, index %d, want %d", round, i, ev.CallID, index, wantIndex)
			}
			if got := ev.CallID[len(ev.CallID)-12:]; got != fmt.Sprintf("%012x", wantIndex) {
				t.Errorf("round %d event %d: call id %s, want index %x", round, i, ev.CallID, wantIndex)
			}
			if want := "voice.events." + ev.CallID + "." + ev.Type.String(); subject != want {
				t.Errorf("subject %q, want %q", subject, want)
			}
		}
	}
}

func TestTuneThink(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Calls, cfg.Rate = 100_000, 10_000
	sc, err := cfg.simConfig()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.EventRate() * float64(sc.Calls); math.Abs(got-cfg.Rate)/cfg.Rate > 0.02 {
		t.Errorf("tuned to %.0f events/s, want %.0f", got, cfg.Rate)
	}
	if sc.Ramp < 10*time.Second || sc.Ramp > 40*time.Second {
		t.Errorf("ramp %v, want about the time a call takes to publish two events", sc.Ramp)
	}
	cfg.Calls, cfg.Rate = 1, 1e6
	if _, err := cfg.simConfig(); err == nil {
		t.Error("a rate no think time reaches is accepted")
	}
}

// TestSummaryKeys checks the last line of the report: exactly the keys of the issue, in
// its order.
func TestSummaryKeys(t *testing.T) {
	want := []string{"events", "e2e_vs_raw", "e2e_vs_baseline", "mem_vs_baseline", "decode_mb_s",
		"decode_vs_encoding_json", "idle_call_bytes", "armed_call_overhead_bytes", "lag_p50_ms", "lag_p99_ms",
		"lag_max_ms", "missed", "false", "duplicates"}
	res := &Results{Published: map[string]int64{}}
	var out bytes.Buffer
	res.Report(&out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	dec := json.NewDecoder(strings.NewReader(last))
	var got []string
	if _, err := dec.Token(); err != nil {
		t.Fatalf("last line %q: %v", last, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tok.(string))
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys %q\nwant %q", got, want)
	}
}

// TestRun runs every phase at a tiny scale, with short thresholds, against the raw,
// in-process and baseline subjects (this test binary re-run as each), and checks that
// every number is there and that both detectors match the ground truth.
func TestRun(t *testing.T) {
	// Under the race detector a process sleeps a second on exit unless told not to.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	cfg := QuickConfig()
	cfg.Calls, cfg.Rate, cfg.Duration, cfg.Ramp = 300, 300, 3*time.Second, 300*time.Millisecond
	cfg.TurnsMin, cfg.TurnsMax = 4, 8
	cfg.Timeout, cfg.MaxWait, cfg.StallShare, cfg.HelloShare = 1200*time.Millisecond, 2500*time.Millisecond, 0.3, 0.1
	cfg.TPCalls, cfg.TPEvents, cfg.TPMaxTime, cfg.Repeat = 4, 150, time.Second, 1
	cfg.DecodeTime, cfg.Out = 5*time.Millisecond, t.TempDir()
	cfg.Self = []string{os.Args[0]}
	var progress bytes.Buffer
	res, err := Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("errors: %q\n%s", res.Errors, progress.String())
	}
	for _, r := range res.Throughput {
		if r.Events < int64(cfg.TPEvents) || r.EventsPerSec <= 0 || r.Lost != 0 {
			t.Errorf("throughput %+v", r)
		}
	}
	for _, r := range res.Memory {
		if r.Idle <= 0 || r.Armed != int64(cfg.Calls) {
			t.Errorf("memory %+v", r)
		}
	}
	stalls := 0
	for _, r := range res.Realtime {
		// hangwatch must agree with the truth on every output; the baseline, which knows
		// no stage and publishes no hang-unresolved, on its hangs and resolutions.
		wrong := r.Errors()
		if r.Subject == SubjectBaseline {
			wrong = r.Missed + r.False + r.Duplicates + r.WrongReason + r.WrongWait + r.FalseResolved + r.MissedResolved
		}
		if wrong > 0 || r.Lost != 0 || r.Late != 0 {
			t.Errorf("realtime %s: %v lost %d late %d", r.Subject, r.Tally, r.Lost, r.Late)
		}
		stalls += r.Stalls
	}
	if len(res.Throughput) != 3 || len(res.Memory) != 2 || len(res.Realtime) != 2 || stalls == 0 {
		t.Errorf("%d throughput, %d memory, %d realtime results, %d stalls", len(res.Throughput), len(res.Memory), len(res.Realtime), stalls)
	}
	s := res.Summary()
	if s.E2EVsRaw == nil || s.MemVsBaseline == nil || s.LagP99Ms == nil || s.Missed == nil || *s.Missed != 0 {
		t.Errorf("summary %s", s.JSON())
	}
	if path, err := res.PlotLags(cfg.Out); err != nil || path == "" {
		t.Errorf("PlotLags() = %q, %v", path, err)
	}
}

// TestStressSummary checks the last line of a stress report: the binary's figures when
// it ran, the baseline's beside them, and their ratios.
func TestStressSummary(t *testing.T) {
	res := &Results{Config: Config{Stress: true}, Published: map[string]int64{}, Realtime: []RealtimeResult{
		{Subject: SubjectBinary, Events: 400_000, Bytes: 3_100_000_000, LagP99: 2 * time.Millisecond, PeakRSS: 150e6, CPU: 10 * time.Second},
		{Subject: SubjectBaseline, Events: 400_000, LagP99: 8 * time.Millisecond, PeakRSS: 600e6, CPU: 40 * time.Second},
	}}
	var out bytes.Buffer
	res.Report(&out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"events": 400_000, "gb": 3.1, "lag_p99_ms": 2, "rss_mb": 150,
		"baseline_lag_p99_ms": 8, "lag_p99_vs_baseline": 0.25, "rss_vs_baseline": 0.25, "cpu_vs_baseline": 0.25} {
		if v, ok := got[k].(float64); !ok || v != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if !strings.Contains(out.String(), "lag p99 ≤ 2 ms") || !strings.Contains(out.String(), "peak RSS ≤ 200 MB") {
		t.Errorf("the report does not state the stress targets:\n%s", out.String())
	}
}
