package baseline

import (
	"encoding/json"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// published is an output as the harness received it.
type published struct {
	subject, msgID string
	out            Output
}

// harness drives a Detector on a fake clock. clockwork runs each AfterFunc callback in
// a goroutine of its own, so after moving the clock to a deadline the harness waits
// until the detector has run the callbacks that were due: outputs then come in a
// deterministic order, stamped with the exact deadline.
type harness struct {
	t     testing.TB
	clock *clockwork.FakeClock
	d     *Detector
	mu    sync.Mutex
	outs  []published
}

func newHarness(t testing.TB, cfg Config, start time.Time) *harness {
	t.Helper()
	h := &harness{t: t, clock: clockwork.NewFakeClockAt(start)}
	d, err := New(cfg, h.publish, WithClock(h.clock))
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	t.Cleanup(d.Close)
	return h
}

func (h *harness) publish(subject, msgID string, data []byte) error {
	var out Output
	if err := json.Unmarshal(data, &out); err != nil {
		h.t.Errorf("output is not valid JSON: %v\n%s", err, data)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outs = append(h.outs, published{subject: subject, msgID: msgID, out: out})
	return nil
}

func (h *harness) outputs() []published {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]published(nil), h.outs...)
}

// advanceTo moves the clock to t, stopping at every deadline on the way until its
// callbacks have run.
func (h *harness) advanceTo(t time.Time) {
	h.t.Helper()
	for {
		due, n := h.d.nextDue(t)
		if n == 0 {
			break
		}
		fired := h.d.Stats().Fired
		if d := due.Sub(h.clock.Now()); d > 0 {
			h.clock.Advance(d)
		}
		for h.d.Stats().Fired < fired+int64(n) {
			runtime.Gosched()
		}
	}
	if d := t.Sub(h.clock.Now()); d > 0 {
		h.clock.Advance(d)
	}
}

// handle delivers an event at t.
func (h *harness) handle(data []byte, t time.Time) error {
	h.t.Helper()
	h.advanceTo(t)
	return h.d.Handle(data, h.clock.Now())
}

// nextDue returns the earliest deadline not after until among the armed timers, and
// how many timers share it.
func (d *Detector) nextDue(until time.Time) (time.Time, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var first time.Time
	n := 0
	for _, c := range d.calls {
		switch {
		case c.timer == nil || c.due.After(until):
		case n == 0 || c.due.Before(first):
			first, n = c.due, 1
		case c.due.Equal(first):
			n++
		}
	}
	return first, n
}
