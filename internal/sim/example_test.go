package sim_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/sim"
)

// A script is one call: its events on demand, and the stretches that must hang.
func ExampleScript() {
	cfg := sim.DefaultConfig()
	cfg.StallShare = 0.5
	s, err := sim.New(cfg)
	if err != nil {
		panic(err)
	}
	sc := s.Script(2, time.UnixMilli(1_763_647_331_000))
	for ev := range sc.Events() {
		if ev.Messages > 3 {
			break
		}
		fmt.Printf("%-9v %s messages=%d\n", ev.At, ev.Type, ev.Messages)
	}
	for _, st := range sc.Stalls()[:1] {
		fmt.Printf("%s hangs at %v (%v), resolved by %s after %v\n",
			st.FirstUserMessageID, st.Deadline, st.Reason, st.ReplyMessageID, st.Wait)
	}
	// Output:
	// 0s        status-update messages=0
	// 390ms     conversation-update messages=1
	// 5.261s    conversation-update messages=2
	// 7.067s    conversation-update messages=3
	// user-4 hangs at 26.993s (turn-timeout), resolved by user-4-kxMHAKamMf-1763647360566 after 8.026s
}

// The demo: run the simulation in real time beside an engine, note every hang and
// resolution that comes back, and compare with the ground truth at the end.
func ExampleRunner() {
	cfg := sim.DefaultConfig()
	cfg.Calls, cfg.HangUpOnStop = 200, true
	s, err := sim.New(cfg)
	if err != nil {
		panic(err)
	}
	publish := func(subject string, data []byte) error {
		return nil // nc.Publish(subject, data)
	}
	r := sim.NewRunner(s, publish)

	var (
		mu  sync.Mutex
		obs []sim.Observation
	)
	// Called for every hang and hang-resolved read back from NATS.
	_ = func(kind detector.Kind, callID, first, reason string, waitMs, timestampMs int64) {
		mu.Lock()
		defer mu.Unlock()
		obs = append(obs, sim.Observation{Kind: kind, CallID: callID, FirstUserMessageID: first,
			Reason: sim.ParseReason(reason), Wait: time.Duration(waitMs) * time.Millisecond,
			At: time.UnixMilli(timestampMs)})
		if _, ok := r.Truth().Expect(callID, first); !ok && kind == detector.KindHang {
			fmt.Println("unexpected hang of", callID)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx); err != nil {
		panic(err)
	}
	// Here, give the engine a second to publish its last hangs (drain the
	// subscription) before tallying.
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(r.Truth().Tally(obs, r.Stats().Cutoff).Summary())
}
