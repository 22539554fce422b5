package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// Truth is the ground truth of a run that a Runner started at a given time: which calls
// started when, and which of their stretches must hang. It is recomputed from the
// configuration and the start instead of being recorded as the run goes, so it costs no
// memory however many calls run; it is immutable and safe for concurrent use.
type Truth struct {
	sim   *Sim
	start int64 // Unix milliseconds
	known bool  // false for the truth of a run that has not started: no call
}

// Truth returns the ground truth of a Runner of s whose Run started at start (see
// Stats.Start). A load generator that drives the scripts itself can use it as long as
// it follows the Runner's schedule.
func (s *Sim) Truth(start time.Time) *Truth {
	return &Truth{sim: s, start: start.UnixMilli(), known: true}
}

// Expect returns the stall of the call whose first user turn is firstUserMessageID, if
// that stretch must hang. It walks the calls of the call's slot up to it.
func (t *Truth) Expect(callID, firstUserMessageID string) (Stall, bool) {
	index, ok := t.sim.ParseCallID(callID)
	first, ok2 := parseUserID(firstUserMessageID)
	if !ok || !ok2 || !t.known {
		return Stall{}, false
	}
	calls := uint64(t.sim.p.calls)
	sc := t.sim.firstScript(int64(index%calls), t.start)
	for range index / calls {
		sc = sc.successor(sc.start + sc.scan(nil, nil))
	}
	var (
		found Stall
		hit   bool
	)
	sc.scan(nil, func(r stallRec) {
		if r.first == first {
			found, hit = sc.stall(r), true
		}
	})
	return found, hit
}

// Observation is a hang or hang-resolved that an engine published, as the observer
// read it off the wire.
type Observation struct {
	// Kind is detector.KindHang or detector.KindResolved; any other value counts as a
	// hang.
	Kind detector.Kind
	// CallID and FirstUserMessageID are call.id and hang.firstUserMessageId: together
	// they name the stretch.
	CallID, FirstUserMessageID string
	// Reason is hang.reason (see ParseReason).
	Reason detector.Reason
	// Wait is hang.waitMs of a hang-resolved.
	Wait time.Duration
	// At is when it was published: message.timestamp, the engine's detection time.
	At time.Time
}

// ParseObservation reads a hang or hang-resolved as an engine publishes it (SPEC §3).
// A message.type other than "hang-resolved" counts as a hang. at is when it was
// received, in the precision the observer has; with the zero time, At is
// message.timestamp, the engine's own detection time, to the millisecond.
func ParseObservation(data []byte, at time.Time) (Observation, error) {
	var out struct {
		Message struct {
			Timestamp int64  `json:"timestamp"`
			Type      string `json:"type"`
			Call      struct {
				ID string `json:"id"`
			} `json:"call"`
			Hang struct {
				Reason             string `json:"reason"`
				FirstUserMessageID string `json:"firstUserMessageId"`
				WaitMs             int64  `json:"waitMs"`
			} `json:"hang"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return Observation{}, fmt.Errorf("parse observation: %w", err)
	}
	m := &out.Message
	kind := detector.KindHang
	if m.Type == "hang-resolved" {
		kind = detector.KindResolved
	}
	if at.IsZero() {
		at = time.UnixMilli(m.Timestamp)
	}
	return Observation{
		Kind: kind, CallID: m.Call.ID, FirstUserMessageID: m.Hang.FirstUserMessageID,
		Reason: ParseReason(m.Hang.Reason), Wait: time.Duration(m.Hang.WaitMs) * time.Millisecond,
		At: at,
	}, nil
}

// ParseReason returns the Reason of a hang.reason value, or 0 for an unknown one.
func ParseReason(s string) detector.Reason {
	switch s {
	case detector.ReasonTurnTimeout.String():
		return detector.ReasonTurnTimeout
	case detector.ReasonMaxWait.String():
		return detector.ReasonMaxWait
	}
	return 0
}

// Tally is the comparison of observed hangs and resolutions with the ground truth, over
// a run observed until a given end.
//
// A stretch that must hang by the end counts among Stalls. One that must hang within
// Margin before the end counts only if it was observed (the engine may not have had the
// time), and one that hangs after the end does not count at all: its observations, and
// any unexpected observation made after the end (the silence of a call that the end of
// the run cut off looks like a stall), count as Beyond.
type Tally struct {
	// Calls and Turns are the calls started and the turns begun by the end.
	Calls, Turns int
	// Stalls are the stretches that must have hung; Hangs the distinct stretches
	// observed to hang: those of Stalls, plus False.
	Stalls, Hangs int
	// Resolved counts the Stalls whose resolution was observed.
	Resolved int
	// Missed counts the Stalls not observed to hang; False the observed hangs of
	// stretches that must not hang.
	Missed, False int
	// Duplicates counts the observations beyond the first of a hang or a resolution.
	Duplicates int
	// WrongReason counts the observed Stalls with another reason than expected.
	WrongReason int
	// Unresolved counts the Stalls whose reply came before the end (by Margin) without
	// an observed resolution; FalseResolved the observed resolutions of stretches
	// that have none (the caller hung up, or the stretch never hung).
	Unresolved, FalseResolved int
	// WrongWait counts the observed resolutions whose waitMs differs from the truth.
	WrongWait int
	// Beyond counts the observations left out because they concern the time after
	// the end.
	Beyond int
	// Lags are the detection lags of the observed Stalls, At minus the true deadline,
	// in ascending order.
	Lags []time.Duration
}

// Lag returns the q-quantile (0 ≤ q ≤ 1) of the detection lags by nearest rank, 0 when
// there is none.
func (t Tally) Lag(q float64) time.Duration { return Quantile(t.Lags, q) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted, in ascending order, by nearest
// rank: the smallest value that at least a share q of them do not exceed. It returns 0
// for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Summary returns the tally on one line: calls=… turns=… stalls=… hangs=… resolved=…
// missed=… false=…, then the other counts and the lag quantiles.
func (t Tally) Summary() string {
	return fmt.Sprintf("calls=%d turns=%d stalls=%d hangs=%d resolved=%d missed=%d false=%d"+
		" duplicates=%d wrong_reason=%d unresolved=%d false_resolved=%d wrong_wait=%d beyond=%d"+
		" lag_p50=%v lag_p99=%v lag_max=%v",
		t.Calls, t.Turns, t.Stalls, t.Hangs, t.Resolved, t.Missed, t.False,
		t.Duplicates, t.WrongReason, t.Unresolved, t.FalseResolved, t.WrongWait, t.Beyond,
		t.Lag(0.5), t.Lag(0.99), t.Lag(1))
}

// String returns Summary.
func (t Tally) String() string { return t.Summary() }

// stretchKey names a stretch: a call index and the number of its first user turn.
type stretchKey struct {
	call  uint64
	first int32
}

// seen are the observations of one stretch.
type seen struct {
	hangs, resolved []int // indexes into the observations
	expected        bool  // a stall of the truth claimed them
}

// Tally compares the observations with the ground truth of the run until end, normally
// Stats.Cutoff. It walks every call started by then, on all CPUs. Collect observations
// for a moment after the run has stopped (the detection lag of the engine and the
// transport) before tallying: a stall due just before the end still counts.
func (t *Truth) Tally(observed []Observation, end time.Time) Tally {
	endMs := end.UnixMilli()
	byStretch := make(map[stretchKey]*seen)
	var stray []int // observations of no call of the simulation
	for i, o := range observed {
		call, ok := t.sim.ParseCallID(o.CallID)
		first, ok2 := parseUserID(o.FirstUserMessageID)
		if !ok || !ok2 {
			stray = append(stray, i)
			continue
		}
		k := stretchKey{call, first}
		s := byStretch[k]
		if s == nil {
			s = &seen{}
			byStretch[k] = s
		}
		if o.Kind == detector.KindResolved {
			s.resolved = append(s.resolved, i)
		} else {
			s.hangs = append(s.hangs, i)
		}
	}

	var total Tally
	if t.known {
		total = t.walk(observed, byStretch, endMs)
	}

	// What no stall claimed is false, unless it was observed after the end.
	unexpected := func(i int, count *int) {
		if observed[i].At.UnixMilli() > endMs {
			total.Beyond++
		} else {
			*count++
		}
	}
	for _, s := range byStretch {
		if s.expected {
			continue
		}
		if len(s.hangs) > 0 {
			unexpected(s.hangs[0], &total.False)
			total.Duplicates += len(s.hangs) - 1
		}
		for _, i := range s.resolved {
			unexpected(i, &total.FalseResolved)
		}
	}
	for _, i := range stray {
		if observed[i].Kind == detector.KindResolved {
			unexpected(i, &total.FalseResolved)
		} else {
			unexpected(i, &total.False)
		}
	}
	total.Hangs += total.False
	slices.Sort(total.Lags)
	return total
}

// walk judges every call started by endMs, spreading the slots over the CPUs.
func (t *Truth) walk(observed []Observation, byStretch map[stretchKey]*seen, endMs int64) Tally {
	calls := t.sim.p.calls
	parts := make([]Tally, min(int64(runtime.GOMAXPROCS(0)), (calls+1023)/1024))
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			j := judge{observed: observed, byStretch: byStretch, end: endMs, margin: t.sim.p.margin, tally: &parts[p]}
			turn, stall := j.turn, j.stall
			for s := int64(p); s < calls; s += int64(len(parts)) {
				for j.sc = t.sim.firstScript(s, t.start); j.sc.start <= endMs; {
					j.tally.Calls++
					end := j.sc.scan(turn, stall)
					j.sc = j.sc.successor(j.sc.start + end)
				}
			}
		})
	}
	wg.Wait()
	var total Tally
	for _, p := range parts {
		total.add(p)
	}
	return total
}

func (t *Tally) add(o Tally) {
	t.Calls += o.Calls
	t.Turns += o.Turns
	t.Stalls += o.Stalls
	t.Hangs += o.Hangs
	t.Resolved += o.Resolved
	t.Missed += o.Missed
	t.False += o.False
	t.Duplicates += o.Duplicates
	t.WrongReason += o.WrongReason
	t.Unresolved += o.Unresolved
	t.FalseResolved += o.FalseResolved
	t.WrongWait += o.WrongWait
	t.Beyond += o.Beyond
	t.Lags = append(t.Lags, o.Lags...)
}

// judge compares the stalls of the calls of one worker of walk with the observations.
type judge struct {
	observed  []Observation
	byStretch map[stretchKey]*seen
	end       int64 // Unix ms
	margin    int64
	tally     *Tally
	sc        Script // the call being walked
}

func (j *judge) turn(at int64) {
	if j.sc.start+at <= j.end {
		j.tally.Turns++
	}
}

func (j *judge) stall(r stallRec) {
	t := j.tally
	deadline := j.sc.start + r.deadline
	s := j.byStretch[stretchKey{j.sc.index, r.first}]
	var hangs, resolved []int
	if s != nil {
		// Each stretch is one stall of one call, so no other goroutine writes s.
		s.expected = true
		hangs, resolved = s.hangs, s.resolved
	}
	switch {
	case deadline > j.end:
		t.Beyond += len(hangs) + len(resolved)
		return
	case deadline > j.end-j.margin && len(hangs) == 0:
		return // too near the end to be sure that it is due
	}
	t.Stalls++
	if len(hangs) > 0 {
		t.Hangs++
		t.Duplicates += len(hangs) - 1
		o := &j.observed[hangs[0]]
		if o.Reason != r.reason {
			t.WrongReason++
		}
		t.Lags = append(t.Lags, o.At.Sub(time.UnixMilli(deadline)))
	} else {
		t.Missed++
	}

	reply := j.sc.start + r.end
	switch {
	case len(resolved) > 0 && !r.resolved:
		t.FalseResolved += len(resolved)
	case len(resolved) > 0 && reply > j.end:
		t.Beyond += len(resolved)
	case len(resolved) > 0:
		t.Resolved++
		t.Duplicates += len(resolved) - 1
		if j.observed[resolved[0]].Wait != time.Duration(r.end-r.firstAt)*time.Millisecond {
			t.WrongWait++
		}
	case r.resolved && reply <= j.end-j.margin:
		t.Unresolved++
	}
}

// parseUserID returns N of "user-N".
func parseUserID(id string) (int32, bool) {
	rest, ok := strings.CutPrefix(id, "user-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || n < 1 {
		return 0, false
	}
	return int32(n), true
}
