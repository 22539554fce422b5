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
// round gives the calls fresh ids, the simulation's ids of the round's call indexes,
// written over the payloads and the subjects, so that every round is new calls to the
// subject.
type stream struct {
	sim    *sim.Sim
	idLen  int // of every call id
	events []streamEvent
	bytes  int64 // of one round
	calls  uint64
	max    []byte // the largest event, for the decode figures
}

// streamEvent is one event of the stream.
type streamEvent struct {
	data, subject     []byte
	dataAt, subjectAt int    // offsets of the call id
	index             uint64 // call index in round 0
}

// renderWorkers is how many goroutines render the stream.
const renderWorkers = 4

// newStream renders the stream, on renderWorkers goroutines.
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
	for w := range renderWorkers {
		wg.Go(func() {
			for i := w; i < len(perCall); i += renderWorkers {
				perCall[i] = callEvents(s, uint64(i), start, cfg.TPMinBytes)
			}
		})
	}
	wg.Wait()
	st := &stream{sim: s, idLen: len(s.CallID(0)), calls: uint64(cfg.TPCalls)}
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
		if ev.dataAt < 0 || ev.subjectAt < 0 {
			return nil, fmt.Errorf("bench: a call id is missing from a payload or a subject")
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
		if ev.Type == sim.TypeEndOfCallReport && len(out) == 0 {
			// A caller who hung up before the history grew that large: the end of a call
			// never seen is only remembered, not applied, and the binary counts what it
			// applied.
			continue
		}
		subject := []byte(ev.Subject)
		out = append(out, streamEvent{
			data: slices.Clone(ev.Data), subject: subject,
			dataAt: bytes.Index(ev.Data, id), subjectAt: bytes.Index(subject, id), index: index,
		})
	}
	return out
}

// meanBytes is the mean size of an event.
func (st *stream) meanBytes() float64 { return float64(st.bytes) / float64(len(st.events)) }

// next writes the id of its call in round r over event i and returns its subject and
// payload. The payload is the stream's own: it must be published (copied) before the
// next call.
func (st *stream) next(r, i int) (string, []byte) {
	ev := &st.events[i]
	data := st.payload(r, i)
	copy(ev.subject[ev.subjectAt:], data[ev.dataAt:ev.dataAt+st.idLen])
	return string(ev.subject), data
}

// payload is next without the subject, which costs an allocation.
func (st *stream) payload(r, i int) []byte {
	ev := &st.events[i]
	var buf [64]byte
	copy(ev.data[ev.dataAt:], st.sim.AppendCallID(buf[:0], ev.index+uint64(r)*st.calls))
	return ev.data
}
