package transport

import (
	"slices"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// TestE2EOutageDuringProofCarriesGap: a proof begins at 1 s while the engine is behind
// (its flush is answered, its barrier waits behind a held delivery); a user turn comes
// at 1.5 s; then the server restarts (down from 1.5 s to 2 s by the fake clock) before
// that proof has ended, and a reply published meanwhile would be lost. The outage came
// after the proof's round trip, so that proof marks 1 s without it, and the next proof
// reports it, as a gap from 1 s: the hang of the stretch armed at 1.5 s carries
// inputGapMs (SPEC §2: every hang whose stretch was armed before an input gap does).
func TestE2EOutageDuringProofCarriesGap(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.MaxWait = 0
	h := newCoreE2E(t, cfg)
	h.settle() // mark at 0 s

	// The engine is behind: it holds an event, the rest waits in the subscription.
	h.pause()
	h.advance(time.Second)
	probes := h.src.Stats().Probes
	h.src.Probe() // proof A, begun at 1 s
	eventually(t, "proof A begun", func() bool { return h.src.Stats().Probes > probes })
	if err := h.conn.NATS().Flush(); err != nil { // proof A's round trip is done
		t.Fatal(err)
	}

	h.advance(500 * time.Millisecond) // 1.5 s
	h.pub.publish("lost", convUpdate("lost", ms(1500*time.Millisecond), userTurn("user-1", ms(1500*time.Millisecond))))
	if err := h.conn.NATS().Flush(); err != nil { // the user turn is in hangwatch's queue
		t.Fatal(err)
	}

	// The outage: a reply published now would be lost.
	reconnected := h.conn.Reconnected()
	h.srv.stop()
	eventually(t, "disconnected", func() bool { return !h.conn.NATS().IsConnected() })
	h.advance(500 * time.Millisecond) // 2 s
	h.srv.start(t)
	select {
	case <-reconnected:
	case <-time.After(waitFor):
		t.Fatal("not reconnected")
	}

	h.rec.release()
	h.settle()
	h.advance(5 * time.Second) // 7 s: the deadline at 6.5 s passed
	h.settle()

	outs := h.sink.all()
	if got, want := kinds(outs), []string{"hang lost"}; !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", outs, want)
	}
	var gaps []string
	for _, e := range h.rec.all() {
		if isGap(e) {
			gaps = append(gaps, e.String())
		}
	}
	if outs[0].out.InputGap == 0 {
		t.Errorf("hang of a stretch armed at 1.5 s, before an outage at 1.5-2 s: inputGap = 0, want > 0; gaps reported: %v", gaps)
	}
	if st := h.src.Stats(); st.Gaps != 1 {
		t.Errorf("source Stats().Gaps = %d, want 1 (the outage, once); gaps reported: %v", st.Gaps, gaps)
	}
}
