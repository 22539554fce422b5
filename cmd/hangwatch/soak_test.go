//go:build soak

package main

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/sim"
)

// TestSoak runs 100,000 simulated calls through the sidecar for minutes (`make soak`,
// under -race): memory must follow the calls held, not the events processed, and no
// hang may be missed, false or repeated. SOAK_CALLS and SOAK_DURATION change the scale.
func TestSoak(t *testing.T) {
	calls, duration := 100_000, 10*time.Minute
	if v, err := strconv.Atoi(os.Getenv("SOAK_CALLS")); err == nil {
		calls = v
	}
	if v, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = v
	}
	cfg := sim.DefaultConfig()
	cfg.Calls, cfg.Seed = calls, uint64(time.Now().UnixNano())
	// Short calls of slow talkers: 100k live calls make about 2,000 small events a
	// second, which the race detector follows on two cores (the broker, the pipeline and
	// the engine all run instrumented in this process), and calls end and are replaced
	// all along the run. Stalls are many.
	cfg.Ramp = time.Minute
	cfg.ThinkMin, cfg.ThinkMax = 120*time.Second, 180*time.Second
	cfg.TurnsMin, cfg.TurnsMax = 1, 3
	cfg.StallShare, cfg.HelloShare = 0.1, 0.03
	cfg.PayloadBytes = 0

	type sample struct {
		at   time.Duration
		heap uint64
		live int64
	}
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	begin := time.Now()
	// Ended calls are remembered for the call TTL; one above the longest silence of a
	// live call (ThinkMax) but far below 2 h lets them go within the run.
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	tally, st, err := simulate(ctx, simOptions{cfg: cfg, listen: "127.0.0.1:0", log: zap.NewNop(), args: []string{"--call-ttl", "4m"},
		onStart: func(_ string, sc *sidecar) {
			wg.Go(func() {
				tick := time.NewTicker(10 * time.Second)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					s := sample{time.Since(begin).Round(time.Second), ms.HeapAlloc, sc.engine.Stats().Calls}
					t.Logf("%v: heap %d MB, %d calls held", s.at, s.heap>>20, s.live)
					mu.Lock()
					samples = append(samples, s)
					mu.Unlock()
				}
			})
		}})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("events=%d bytes=%d late=%d max_late=%v\n%s", st.Events, st.Bytes, st.Late, st.MaxLate, tally.Summary())
	if tally.Missed != 0 || tally.False != 0 || tally.Duplicates != 0 || tally.WrongReason != 0 {
		t.Errorf("against the ground truth: %s", tally.Summary())
	}
	if tally.Stalls < calls/100 {
		t.Errorf("only %d stalls: the soak did not exercise detection", tally.Stalls)
	}
	if st.Late > 0 {
		t.Errorf("%d events were published late (up to %v): the machine could not keep up, the truth is void for them", st.Late, st.MaxLate)
	}
	// Flat memory: what the run holds above the heap it started from, per call held,
	// is the same in the last quarter of the run as in the second (after the ramp),
	// within 25%: memory follows the calls, not the millions of events they made.
	quarter := len(samples) / 4
	if quarter < 2 {
		t.Fatalf("%d samples: run it longer", len(samples))
	}
	perCall := func(ss []sample) float64 {
		var heap, held float64
		for _, s := range ss {
			heap += float64(s.heap) - float64(base.HeapAlloc)
			held += float64(s.live)
		}
		return heap / held
	}
	second, last := perCall(samples[quarter:2*quarter]), perCall(samples[3*quarter:])
	t.Logf("heap above the start per call held: %.0f B in the second quarter, %.0f B in the last", second, last)
	if last > second*1.25 {
		t.Errorf("memory per call held grew from %.0f B to %.0f B between the second and the last quarter", second, last)
	}
}
