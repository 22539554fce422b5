package detector

import (
	"fmt"
	"testing"
)

// benchEvent is a conversation-update of h, decoded once, received at ms.
func benchEvent(at int64, h ...msg) *Event {
	ev := conv(at, h...).ev
	ev.Received, ev.Wall, ev.Payload = eng(at), wallNs(at), payload("p")
	return ev
}

// BenchmarkCallApply measures one detector step per event, decode excluded, on a call
// whose history has grown to turns messages: the user speaks (the call arms), then the
// assistant replies (it goes idle), as in every turn of a conversation.
func BenchmarkCallApply(b *testing.B) {
	for _, turns := range []int{2, 60} {
		b.Run(fmt.Sprintf("turns=%d", turns), func(b *testing.B) {
			var hist []msg
			for i := range turns/2 - 1 {
				at := int64(i) * 10_000
				hist = append(hist, hello(fmt.Sprintf("user-%d", i), at), reply(fmt.Sprintf("user-%d-reply", i), at+500))
			}
			at := int64(turns) * 5000
			asked := append(hist[:len(hist):len(hist)], hello("user-last", at))
			answered := append(asked[:len(asked):len(asked)], reply("user-last-reply", at+500))
			evAsk, evAns := benchEvent(at, asked...), benchEvent(at+500, answered...)
			cfg := DefaultConfig()
			b.ReportAllocs()
			for b.Loop() {
				var c Call
				c.Apply(&cfg, evAsk, evAsk.Received)
				c.Apply(&cfg, evAns, evAns.Received)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/event")
		})
	}
}

// BenchmarkCallApplyIdle measures the commonest events: a snapshot or status update of a
// call with nothing unanswered.
func BenchmarkCallApplyIdle(b *testing.B) {
	ev := benchEvent(1000, hello("user-1", 0), reply("user-1-reply", 500))
	st := &Event{Type: TypeStatusUpdate, Status: StatusOngoing, Received: eng(1000), Wall: wallNs(1000)}
	cfg := DefaultConfig()
	var c Call
	b.ReportAllocs()
	for b.Loop() {
		c.Apply(&cfg, ev, ev.Received)
		c.Apply(&cfg, st, st.Received)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/event")
}

// BenchmarkCallTick measures a hang: arm, then the deadline tick.
func BenchmarkCallTick(b *testing.B) {
	ev := benchEvent(0, hello("user-1", 0))
	cfg := DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		var c Call
		c.Apply(&cfg, ev, ev.Received)
		c.Tick(&cfg, eng(10_000), eng(10_000))
	}
}
