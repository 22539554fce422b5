package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"sync"
	"testing"

	"github.com/hangwatch/hangwatch/bench/baseline"
	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/jsonref"
	"github.com/hangwatch/hangwatch/wire"
)

// Decoders are the decoders the figures compare, by name; each decodes data once.
var decoders = []struct {
	name   string
	decode func(data []byte) error
}{
	{"wire.Decode", func() func([]byte) error {
		var ev detector.Event
		return func(data []byte) error { return wire.Decode(&ev, data, wire.DefaultLimits()) }
	}()},
	{"encoding/json, lean struct", func(data []byte) error {
		var ev jsonref.Event
		return json.Unmarshal(data, &ev)
	}},
	{"baseline.Decode, whole event", func(data []byte) error {
		_, err := baseline.Decode(data, 1<<20)
		return err
	}},
}

var benchInit sync.Once

// decodeFigure runs one decoder on data for about cfg.DecodeTime, on one goroutine.
func decodeFigure(cfg *Config, name string, decode func([]byte) error, data []byte) (Figure, error) {
	benchInit.Do(func() {
		testing.Init()
		_ = flag.Set("test.benchtime", cfg.DecodeTime.String())
	})
	if err := decode(data); err != nil {
		return Figure{}, fmt.Errorf("%s: %w", name, err)
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			_ = decode(data)
		}
	})
	ns := float64(res.T.Nanoseconds()) / float64(res.N)
	return Figure{Name: name, NsPerOp: ns, MBPerSec: float64(len(data)) / ns * 1e3,
		AllocsPerOp: res.AllocsPerOp(), BytesPerOp: res.AllocedBytesPerOp()}, nil
}

// decodeFigures renders the throughput stream and measures the decoders on its largest
// event, before any subject runs, so that nothing else competes for the CPU.
func (s *session) decodeFigures() (*stream, error) {
	s.prog.begin("render stream", func() (float64, string) { return 0, "" })
	cfg := *s.cfg
	if !cfg.runs(PhaseThroughput) {
		// Only the decode figures need it: a few calls give the same largest event,
		// without the load generator holding hundreds of MB through the run.
		cfg.TPCalls = min(cfg.TPCalls, 50)
	}
	st, err := newStream(&cfg)
	s.prog.end()
	if err != nil {
		return nil, err
	}
	s.res.Stream = StreamInfo{Calls: cfg.TPCalls, Events: len(st.events), MeanBytes: st.meanBytes(), MaxSize: float64(len(st.max))}
	s.prog.note("throughput stream: %d calls, %d events a round, mean %.1f KB, largest %.1f KB",
		cfg.TPCalls, len(st.events), st.meanBytes()/1e3, float64(len(st.max))/1e3)
	data := st.max
	figs := make([]Figure, len(decoders))
	for i, d := range decoders {
		s.prog.begin("decode: "+d.name, func() (float64, string) { return float64(i) / float64(len(decoders)), "" })
		figs[i], err = decodeFigure(s.cfg, d.name, d.decode, data)
		s.prog.end()
		if err != nil {
			return nil, err
		}
	}
	s.res.Decode = DecodeResult{EventBytes: len(data), Hangwatch: figs[0], JSON: figs[1], Baseline: figs[2]}
	return st, nil
}
