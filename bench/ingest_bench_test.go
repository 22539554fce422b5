package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/bench/baseline"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/wire"
)

// benchStream is a small throughput stream: 50 calls of ~30 KB events.
var benchStream = sync.OnceValue(func() *stream {
	cfg := QuickConfig()
	cfg.TPCalls = 50
	st, err := newStream(&cfg)
	if err != nil {
		panic(err)
	}
	return st
})

// BenchmarkDecode decodes the largest event of the stream, a ~30 KB conversation-update
// of the simulation, with each decoder of the load report's decode figures.
func BenchmarkDecode(b *testing.B) {
	data := benchStream().max
	for _, d := range decoders {
		b.Run(fmt.Sprintf("decoder=%s/size=%dKB", benchName(d.name), len(data)/1000), func(b *testing.B) {
			if err := d.decode(data); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_ = d.decode(data)
			}
		})
	}
}

// benchName names a decoder in a benchmark: "wire.Decode", "encoding/json",
// "baseline.Decode".
func benchName(s string) string {
	name, _, _ := strings.Cut(s, ",")
	return strings.ReplaceAll(name, "/", "-")
}

// discard is a sink that publishes nothing.
type discard struct{}

func (discard) Publish(string, *detector.Output) error { return nil }

// handSource hands the engine's intake to the benchmark.
type handSource struct{ intake chan engine.Intake }

func (s handSource) Run(ctx context.Context, in engine.Intake) error {
	s.intake <- in
	<-ctx.Done()
	return nil
}

// rawMsg is a message as a subscription hands it over: its own copy of the bytes.
type rawMsg struct {
	data     []byte
	received time.Time
	pool     *sync.Pool
}

func (m *rawMsg) Data() []byte                { return m.data }
func (m *rawMsg) Received() (time.Time, bool) { return m.received, false }
func (m *rawMsg) Partition() int              { return -1 }
func (m *rawMsg) Done()                       { m.pool.Put(m) }
func (m *rawMsg) Reject(error)                { m.pool.Put(m) }

// BenchmarkIngest measures what each detector costs per event in process, NATS left
// out: the stream's events, each in a fresh copy as a subscription hands them over,
// decoded and applied. hangwatch is the engine as run.go builds it: wire.Decode in its
// pipeline's decode workers and the shards applying the events (GOMAXPROCS of each),
// timed until every event is applied; the baseline is Handle, on the benchmark's
// goroutine.
func BenchmarkIngest(b *testing.B) {
	st := benchStream()
	b.Run("subject=hangwatch", func(b *testing.B) {
		src := handSource{intake: make(chan engine.Intake, 1)}
		decode := engine.DecoderFunc(func(ev *detector.Event, data []byte) error { return wire.Decode(ev, data, wire.DefaultLimits()) })
		e, err := engine.New(src, decode, discard{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = e.Run(ctx) })
		defer func() { cancel(); wg.Wait() }()
		in := <-src.intake
		var pool sync.Pool
		pool.New = func() any { return &rawMsg{pool: &pool} }
		ingest(b, st, func(data []byte) {
			m := pool.Get().(*rawMsg)
			m.data, m.received = data, time.Now()
			in.Deliver(m)
		}, func() {
			// The pipeline and the shards may still hold events: applying them is part of
			// the cost.
			if err := e.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("subject=baseline", func(b *testing.B) {
		d, err := baseline.New(baseline.DefaultConfig(), func(string, string, []byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		ingest(b, st, func(data []byte) {
			if err := d.Handle(data, time.Now()); err != nil {
				b.Fatal(err)
			}
		}, func() {})
	})
}

// ingest hands the stream's events to handle, then times flush, which returns once
// everything handed over has been applied, before it reports the rates.
func ingest(b *testing.B, st *stream, handle func([]byte), flush func()) {
	b.ReportAllocs()
	var bytes int64
	n := 0
	for b.Loop() {
		data := slices.Clone(st.payload(n/len(st.events), n%len(st.events)))
		bytes += int64(len(data))
		handle(data)
		n++
	}
	b.StartTimer() // b.Loop stopped it
	flush()
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}
