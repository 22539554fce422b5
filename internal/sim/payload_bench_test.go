package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// sixtyTurns makes calls of exactly 60 in-time turns with payloads of size bytes.
func sixtyTurns(size int) func(*Config) {
	return func(c *Config) {
		c.TurnsMin, c.TurnsMax = 60, 60
		c.StallShare, c.HelloShare = 0, 0
		c.PayloadBytes, c.PayloadTurns = size, 60
	}
}

// BenchmarkConversationUpdate renders the last conversation-update of a 60-turn call:
// the whole history regenerated from the cursor, as the Runner does for every event.
func BenchmarkConversationUpdate(b *testing.B) {
	for _, size := range []int{30_000, 100_000} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			s := newSim(b, sixtyTurns(size))
			sc := s.Script(1, t0)
			c := sc.cursor()
			for c.phase != phEnd {
				c.next(&s.p)
			}
			buf := sc.appendEvent(nil, &c)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = sc.appendEvent(buf[:0], &c)
			}
			b.ReportMetric(float64(len(buf)), "bytes/event")
		})
	}
}

// BenchmarkCall renders every event of a 60-turn call of 30 KB payloads.
func BenchmarkCall(b *testing.B) {
	s := newSim(b, sixtyTurns(30_000))
	var events, bytes int
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		for ev := range s.Script(i, t0).Events() {
			events++
			bytes += len(ev.Data)
		}
		i++
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// BenchmarkTally tallies ten minutes of 10,000 calls against no observation: the cost
// of recomputing the truth.
func BenchmarkTally(b *testing.B) {
	s := newSim(b, func(c *Config) { c.Calls, c.Ramp = 10_000, 10*time.Second })
	truth := s.Truth(t0)
	obs := []Observation{{Kind: detector.KindHang, CallID: s.CallID(1), FirstUserMessageID: "user-1", At: t0}}
	var calls int
	for b.Loop() {
		calls = truth.Tally(obs, t0.Add(10*time.Minute)).Calls
	}
	b.ReportMetric(float64(calls)*float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
