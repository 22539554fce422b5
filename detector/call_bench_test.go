package detector

import (
	"fmt"
	"testing"
)

// BenchmarkCallApply measures one detector step per event, decode excluded, on a call
// whose history has grown to turns/2 stretches: the user speaks (the call arms), then
// the assistant replies (it goes idle), as in every turn of a conversation.
func BenchmarkCallApply(b *testing.B) {
	for _, turns := range []int{2, 60} {
		b.Run(fmt.Sprintf("turns=%d", turns), func(b *testing.B) {
			var hist []msg
			for i := range turns/2 - 1 {
				hist = append(hist, hello(fmt.Sprintf("user-%d", i), int64(i)*1000), reply(fmt.Sprintf("r-%d", i), int64(i)*1000+500))
			}
			asked := append(hist[:len(hist):len(hist)], hello("user-last", 0))
			answered := append(asked[:len(asked):len(asked)], reply("r-last", 0))
			evAsk := Event{Type: TypeConversationUpdate, Messages: int32(len(asked)), Stretches: stretches(asked), Payload: payload("a")}
			evAns := Event{Type: TypeConversationUpdate, Messages: int32(len(answered)), Stretches: stretches(answered), Payload: payload("b")}
			cfg := DefaultConfig()
			b.ReportAllocs()
			for b.Loop() {
				c := Call{}
				c.Apply(&cfg, &evAsk)
				c.Apply(&cfg, &evAns)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/event")
		})
	}
}

// BenchmarkCallApplyIdle measures the commonest event: a snapshot or status update of a
// call with nothing unanswered.
func BenchmarkCallApplyIdle(b *testing.B) {
	hist := []msg{hello("user-1", 0), reply("r-1", 500)}
	ev := Event{Type: TypeConversationUpdate, Messages: 2, Stretches: stretches(hist), Payload: payload("a")}
	st := Event{Type: TypeStatusUpdate, Status: StatusOngoing}
	cfg := DefaultConfig()
	var c Call
	b.ReportAllocs()
	for b.Loop() {
		c.Apply(&cfg, &ev)
		c.Apply(&cfg, &st)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/event")
}

// BenchmarkCallTick measures a hang: arm, then the deadline tick.
func BenchmarkCallTick(b *testing.B) {
	ev := Event{Type: TypeConversationUpdate, Messages: 1, Stretches: stretches([]msg{hello("user-1", 0)}), Payload: payload("a")}
	cfg := DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		c := Call{}
		c.Apply(&cfg, &ev)
		c.Tick(&cfg, ms(10_000))
	}
}
