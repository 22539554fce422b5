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
// under -race): memory must stay flat once every call is live, and no hang may be
// missed, false or repeated. SOAK_CALLS and SOAK_DURATION change the scale.
func TestSoak(t *testing.T) {
	calls, duration := 100_000, 5*time.Minute
	if v, err := strconv.Atoi(os.Getenv("SOAK_CALLS")); err == nil {
		calls = v
	}
	if v, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = v
	}
	cfg := sim.DefaultConfig()
	cfg.Calls, cfg.Seed = calls, uint64(time.Now().UnixNano())
	// Long calls with slow talkers, so that 100k live calls make a few thousand events
	// a second, which the race detector can follow on two cores; the stalls are many.
	cfg.Ramp = duration / 5
	cfg.ThinkMin, cfg.ThinkMax = 30*time.Second, 60*time.Second
	cfg.TurnsMin, cfg.TurnsMax = 10, 30
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
	tally, st, err := simulate(ctx, simOptions{cfg: cfg, listen: "127.0.0.1:0", log: zap.NewNop(),
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
	// Flat memory: once the ramp is over, the heap of the last third of the run stays
	// within 25% of that of the middle third.
	third := len(samples) / 3
	if third < 2 {
		t.Fatalf("%d samples: run it longer", len(samples))
	}
	avg := func(ss []sample) float64 {
		var sum float64
		for _, s := range ss {
			sum += float64(s.heap)
		}
		return sum / float64(len(ss))
	}
	mid, last := avg(samples[third:2*third]), avg(samples[2*third:])
	if last > mid*1.25 {
		t.Errorf("heap grew from %.0f MB to %.0f MB between the middle and the last third", mid/(1<<20), last/(1<<20))
	}
}
