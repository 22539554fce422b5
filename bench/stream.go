package bench

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hangwatch/hangwatch/internal/sim"
)

// stream is the throughput phase's stream: the events of TPCalls calls of the
// simulation, interleaved, rendered once and replayed in rounds. Every call has
// PayloadTurns turns, so that its history grows to PayloadBytes; the stream keeps its
// conversation-updates of at least TPMinBytes and its end-of-call-report: the end of
// long calls, ~30 KB an event, as a subject that joins late (a restart) sees them. Each
// round gives
// the calls fresh ids, patched into the payloads and the subjects, so that every round
// is new calls to the subject.
type stream struct {
	events []streamEvent
	bytes  int64 // of one round
	calls  uint64
	max    []byte // the largest event, for the decode figures
}

// streamEvent is one event of the stream.
type streamEvent struct {
	data  []byte
	typ   string
	at    int    // offset of the call index, the last 12 hex digits of the call id
	index uint64 // call index in round 0
}

// A simulated call id is "WC-", a UUID, and ends with the call index in 12 hex digits.
const (
	callIDLen   = 3 + 36
	callIDIndex = 12
)

// newStream renders the stream. It uses every CPU.
func newStream(cfg *Config) (*stream, error) {
	sc := cfg.baseSim()
	sc.TurnsMin, sc.TurnsMax = cfg.PayloadTurns, cfg.PayloadTurns
	s, err := sim.New(sc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	start := time.UnixMilli(1_763_647_331_000)
	perCall := make([][]streamEvent, cfg.TPCalls)
	var wg sync.WaitGroup
	workers := 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(perCall); i += workers {
				perCall[i] = callEvents(s, uint64(i), start, cfg.TPMinBytes)
			}
		})
	}
	wg.Wait()
	st := &stream{calls: uint64(cfg.TPCalls)}
	for k := 0; ; k++ {
		added := false
		for _, evs := range perCall {
			if k < len(evs) {
				st.events = append(st.events, evs[k])
				st.bytes += int64(len(evs[k].data))
				if len(evs[k].data) > len(st.max) {
					st.max = evs[k].data
				}
				added = true
			}
		}
		if !added {
			break
		}
	}
	for _, ev := range st.events {
		if ev.at < 0 {
			return nil, fmt.Errorf("bench: a call id is missing from a payload")
		}
	}
	return st, nil
}

// callEvents renders the events of one call that the stream keeps.
func callEvents(s *sim.Sim, index uint64, start time.Time, minBytes int) []streamEvent {
	sc := s.Script(index, start.Add(time.Duration(index)*time.Millisecond))
	id := []byte(sc.CallID())
	var out []streamEvent
	for ev := range sc.Events() {
		if ev.Type == sim.TypeStatusUpdate || (ev.Type == sim.TypeConversationUpdate && len(ev.Data) < minBytes) {
			continue
		}
		at := bytes.Index(ev.Data, id)
		if at >= 0 {
			at += len(id) - callIDIndex
		}
		out = append(out, streamEvent{data: slices.Clone(ev.Data), typ: ev.Type, at: at, index: index})
	}
	return out
}

// meanBytes is the mean size of an event.
func (st *stream) meanBytes() float64 { return float64(st.bytes) / float64(len(st.events)) }

// next patches event i of round r with the call index of that round and returns its
// subject and payload. The payload is the stream's own: it must be published (copied)
// before the next call.
func (st *stream) next(r, i int) (string, []byte) {
	ev := &st.events[i]
	index := ev.index + uint64(r)*st.calls
	const hex = "0123456789abcdef"
	digits := ev.data[ev.at : ev.at+callIDIndex]
	for k := callIDIndex - 1; k >= 0; k-- {
		digits[k] = hex[index&0xf]
		index >>= 4
	}
	id := ev.data[ev.at+callIDIndex-callIDLen : ev.at+callIDIndex]
	return "voice.events." + string(id) + "." + ev.typ, ev.data
}
