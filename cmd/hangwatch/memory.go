package main

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/engine"
)

// memoryOverhead is what the process takes beside the bytes its budgets bound (retained
// outputs, events in flight, NATS's buffer) and the calls' own state: the runtime, the
// connection, the garbage of the events just applied.
const memoryOverhead = 48 << 20

// setMemoryLimit sets the Go runtime's soft memory limit from the budgets, so that the
// garbage collector keeps the heap near what they allow instead of letting it grow to
// twice the live data (SPEC §2, Bounds: the process stays within the budget plus a fixed
// overhead, 150 MB with the defaults): the retained bytes, a quarter of the bytes in
// flight and of NATS's pending buffer (they fill only in bursts, which the soft limit
// meets with more collection rather than more memory), an estimate of the live calls'
// state, and memoryOverhead. Within a container, never above 90% of its cgroup's limit;
// a GOMEMLIMIT in the environment wins.
func setMemoryLimit(o *sidecarOptions, log *zap.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory limit from GOMEMLIMIT", zap.Int64("bytes", debug.SetMemoryLimit(-1)))
		return
	}
	const perCall = 400 // bytes a live call takes, armed, with headroom (see the README)
	limit := int64(*o.maxRetained) + (int64(*o.maxInflight)+int64(*o.maxPending))/4 + o.maxCalls*perCall/10 + memoryOverhead
	source := "budgets"
	if cg, err := memlimit.FromCgroup(); err == nil && cg > 0 && int64(cg/10*9) < limit {
		limit, source = int64(cg/10*9), "cgroup"
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit set", zap.Int64("bytes", limit), zap.String("from", source))
}

// setGCPercent sets the collector's GOGC to engine.DefaultGCPercent, unless GOGC is in
// the environment.
func setGCPercent(log *zap.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		log.Info("GC percent from GOGC", zap.String("gogc", v))
		return
	}
	debug.SetGCPercent(engine.DefaultGCPercent)
	log.Info("GC percent set", zap.Int("gogc", engine.DefaultGCPercent))
}

// memoryReturner returns memory to the system after a burst: when the bytes calls
// retain fell by a quarter of the budget from their peak since the last return, at most
// every returnEvery. The runtime's scavenger returns it too, but slowly.
func memoryReturner(e *engine.Engine, log *zap.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		const check, returnEvery = time.Second, 10 * time.Second
		t := time.NewTicker(check)
		defer t.Stop()
		var peak int64
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			r := e.Stats().Retained
			peak = max(peak, r)
			if peak-r > e.MaxRetained()/4 && time.Since(last) >= returnEvery {
				debug.FreeOSMemory()
				log.Info("memory returned after a burst", zap.Int64("retained_peak", peak), zap.Int64("retained", r))
				peak, last = r, time.Now()
			}
		}
	}
}
