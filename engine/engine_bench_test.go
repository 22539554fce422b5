package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// benchSource hands its Intake to the benchmark. It asks for no mark: nothing fires.
type benchSource struct{ in chan Intake }

func (s *benchSource) Run(ctx context.Context, in Intake) error {
	s.in <- in
	<-ctx.Done()
	return nil
}

type discardSink struct{}

func (discardSink) Publish(string, *detector.Output) error { return nil }

// benchMsg is a message of a benchmark, reused once the engine is done with it.
type benchMsg struct {
	data     []byte
	received time.Time
}

func (m *benchMsg) Data() []byte                { return m.data }
func (m *benchMsg) Received() (time.Time, bool) { return m.received, false }
func (m *benchMsg) Partition() int              { return -1 }
func (m *benchMsg) Done()                       {}
func (m *benchMsg) Reject(error)                {}

// benchEngine runs an engine for a benchmark and returns its intake and a stop function.
func benchEngine(b *testing.B, d Decoder, opts ...Option) (*Engine, Intake, func()) {
	b.Helper()
	src := &benchSource{in: make(chan Intake, 1)}
	e, err := New(src, d, discardSink{}, append([]Option{WithClock(clock.Real())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	in := <-src.in
	return e, in, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}
}

func syncEngine(b *testing.B, e *Engine) {
	b.Helper()
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// callID returns a call id shaped like the pipeline's (39 bytes).
func callID(i int) string { return fmt.Sprintf("WC-%08x-1b7d-4c61-9a3e-2d8b7c6e%04x", i, i&0xffff) }

// shared is one payload that every event of the benchmarks carries, so that what they
// measure is the engine's own cost per call, without the retained snapshot.
var shared detector.Payload = payload("shared") // boxed once: an event that carries it allocates nothing

// roundDecoder decodes the messages of BenchmarkEngineEvents: 8 bytes, the call's index
// and the round. Round 2k holds the history from the reply of turn k-1 to user turn k
// (armed), round 2k+1 user turn k and its reply (answered): a sliding window of two
// messages, so that the cost does not grow with the rounds. Decoding copies two
// messages: it is cheap, and the benchmark measures the engine.
type roundDecoder struct{ ids []string }

func (d *roundDecoder) Decode(ev *detector.Event, data []byte) error {
	i, round := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
	k := uint64(round / 2)
	user := detector.Message{Role: detector.RoleUser, ID: "user", Key: 2*k + 2, Index: 1}
	prev := detector.Message{Role: detector.RoleReply, ID: "reply", Key: 2*k + 1, Index: 0}
	if round%2 == 1 {
		user.Index = 0
		prev = detector.Message{Role: detector.RoleReply, ID: "reply", Key: 2*k + 3, Index: 1}
		ev.Messages = append(ev.Messages[:0], user, prev)
	} else {
		ev.Messages = append(ev.Messages[:0], prev, user)
	}
	ev.Type, ev.Status, ev.CallID = detector.TypeConversationUpdate, detector.StatusOngoing, d.ids[i]
	ev.HasHistory, ev.Count = true, 2
	ev.Time = 1_763_647_331_000 + int64(round)
	ev.Payload = shared
	return nil
}

// BenchmarkEngineEvents measures the throughput of the engine (decode excluded) with
// `calls` live calls over 2 shards. Each round gives every call one event, in turn a
// user turn that arms it and a reply that answers it, delivered from one goroutine as a
// subscription does.
func BenchmarkEngineEvents(b *testing.B) {
	for _, calls := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			d := &roundDecoder{ids: make([]string, calls)}
			msgs := make([]benchMsg, calls)
			for i := range calls {
				d.ids[i] = callID(i)
				msgs[i].data = make([]byte, 8)
				binary.LittleEndian.PutUint32(msgs[i].data, uint32(i))
			}
			e, in, stop := benchEngine(b, d, WithShards(2), WithDecoders(2))
			defer stop()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				i, round := n%calls, uint32(n/calls)
				m := &msgs[i]
				binary.LittleEndian.PutUint32(m.data[4:], round)
				m.received = time.Now()
				in.Deliver(m)
				n++
				if n%calls == 0 {
					syncEngine(b, e) // every message of the round is done before it is reused
				}
			}
			syncEngine(b, e)
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			if st := e.Stats(); st.Events != int64(n) || st.Ignored != 0 {
				b.Fatalf("applied %d events, ignored %d; want %d, 0", st.Events, st.Ignored, n)
			}
		})
	}
}

// stateDecoder decodes the messages of BenchmarkEngineMemory: a call id and a last byte
// that says whether the call is armed (a user turn unanswered) or idle (answered).
type stateDecoder struct{}

var (
	idleHistory  = []detector.Message{{Role: detector.RoleUser, ID: "user-1", Key: 2}, {Role: detector.RoleReply, ID: "r-1", Key: 3, Index: 1}}
	armedHistory = []detector.Message{{Role: detector.RoleUser, ID: "user-1", Key: 2}}
)

func (stateDecoder) Decode(ev *detector.Event, data []byte) error {
	id := data[:len(data)-1]
	ev.Type, ev.Status = detector.TypeConversationUpdate, detector.StatusOngoing
	ev.CallID = unsafe.String(unsafe.SliceData(id), len(id)) // the engine copies what it keeps
	ev.Messages = append(ev.Messages[:0], idleHistory...)
	if data[len(data)-1] == 'a' {
		ev.Messages = append(ev.Messages[:0], armedHistory...)
	}
	ev.HasHistory, ev.Count, ev.Payload = true, int32(len(ev.Messages)), shared
	return nil
}

// BenchmarkEngineMemory reports the heap bytes the engine holds per call: idle (nothing
// unanswered) and armed (a stretch unanswered; the retained snapshot itself excluded).
func BenchmarkEngineMemory(b *testing.B) {
	for _, calls := range []int{100_000, 1_000_000} {
		for _, armed := range []bool{false, true} {
			state := "idle"
			if armed {
				state = "armed"
			}
			b.Run(fmt.Sprintf("calls=%d/%s", calls, state), func(b *testing.B) {
				for b.Loop() {
					b.ReportMetric(engineHeapPerCall(b, calls, armed), "B/call")
				}
			})
		}
	}
}

func engineHeapPerCall(b *testing.B, calls int, armed bool) float64 {
	before := heapInUse()
	// A fake clock that never moves: delivering a million events takes longer than the
	// turn timeout, and an armed call must stay armed to be measured.
	fake := clockwork.NewFakeClockAt(start)
	e, in, stop := benchEngine(b, stateDecoder{}, WithClock(fake), WithShards(2), WithDecoders(2))
	state := byte('i')
	if armed {
		state = 'a'
	}
	now := fake.Now()
	for i := range calls {
		in.Deliver(&benchMsg{data: append([]byte(callID(i)), state), received: now})
	}
	syncEngine(b, e)
	after := heapInUse()
	if st := e.Stats(); st.Calls != int64(calls) || (armed && st.Armed != int64(calls)) {
		b.Fatalf("Stats() = %+v, want %d calls", st, calls)
	}
	runtime.KeepAlive(e)
	stop()
	return float64(after-before) / float64(calls)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// scanDecoder decodes like roundDecoder, after reading every byte of the message
// passes times, as a decoder of JSON would (here a hash): the cost of decoding grows
// with the size. Eight passes of xxhash make about 1.2 GB/s on this machine, the
// speed of the wire decoder on real histories.
type scanDecoder struct {
	roundDecoder
	passes int
}

func (d *scanDecoder) Decode(ev *detector.Event, data []byte) error {
	var h uint64
	for range d.passes {
		h ^= xxhash.Sum64(data)
	}
	if h == 1 { // never: keeps the hash from being optimised away
		return fmt.Errorf("decode: %x", h)
	}
	return d.roundDecoder.Decode(ev, data[:8])
}

// BenchmarkPipeline measures messages per second through the whole input path
// (Deliver, the byte budget, decode workers, the sequencer, the shards) with 1 and 2
// decode workers, for messages that cost nothing to decode and for 16 KiB messages
// decoded at about 1.2 GB/s.
func BenchmarkPipeline(b *testing.B) {
	const calls = 1000
	for _, size := range []int{8, 16 << 10} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("bytes=%d/decoders=%d", size, workers), func(b *testing.B) {
				d := &scanDecoder{roundDecoder: roundDecoder{ids: make([]string, calls)}, passes: 8}
				if size <= 8 {
					d.passes = 0
				}
				msgs := make([]benchMsg, calls)
				for i := range calls {
					d.ids[i] = callID(i)
					msgs[i].data = make([]byte, size)
					for j := 8; j < size; j++ {
						msgs[i].data[j] = byte(j)
					}
					binary.LittleEndian.PutUint32(msgs[i].data, uint32(i))
				}
				e, in, stop := benchEngine(b, d, WithShards(2), WithDecoders(workers))
				defer stop()
				b.ReportAllocs()
				b.SetBytes(int64(size))
				n := 0
				for b.Loop() {
					i, round := n%calls, uint32(n/calls)
					m := &msgs[i]
					binary.LittleEndian.PutUint32(m.data[4:], round)
					m.received = time.Now()
					in.Deliver(m)
					n++
					if n%calls == 0 {
						syncEngine(b, e)
					}
				}
				syncEngine(b, e)
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}
