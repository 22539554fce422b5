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
	// stop is when the Runner stopped and, with HangUpOnStop, ended every live call
	// (Unix ms); 0 while unknown.
	stop int64
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

// Observation is a hang, hang-resolved or hang-unresolved that an engine published,
// as the observer read it off the wire.
type Observation struct {
	// Kind is detector.KindHang, KindResolved or KindUnresolved; any other value counts
	// as a hang.
	Kind detector.Kind
	// CallID and FirstUserMessageID are call.id and hang.firstUserMessageId: together
	// they name the stretch.
	CallID, FirstUserMessageID string
	// Reason and Stage are hang.reason and hang.stage (see ParseReason and ParseStage).
	Reason detector.Reason
	Stage  detector.Stage
	// Wait is hang.waitMs of a hang-resolved or hang-unresolved.
	Wait time.Duration
	// EndedReason is hang.endedReason of a hang-unresolved.
	EndedReason string
	// At is when it was published: message.timestamp, the engine's detection time.
	At time.Time
}

// ParseObservation reads an output as an engine publishes it (SPEC §3). A
// message.type other than "hang-resolved" and "hang-unresolved" counts as a hang. at is
// when it was received, in the precision the observer has; with the zero time, At is
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
				Stage              string `json:"stage"`
				FirstUserMessageID string `json:"firstUserMessageId"`
				WaitMs             int64  `json:"waitMs"`
				EndedReason        string `json:"endedReason"`
			} `json:"hang"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return Observation{}, fmt.Errorf("parse observation: %w", err)
	}
	m := &out.Message
	kind := detector.KindHang
	switch m.Type {
	case detector.KindResolved.String():
		kind = detector.KindResolved
	case detector.KindUnresolved.String():
		kind = detector.KindUnresolved
	}
	if at.IsZero() {
		at = time.UnixMilli(m.Timestamp)
	}
	return Observation{
		Kind: kind, CallID: m.Call.ID, FirstUserMessageID: m.Hang.FirstUserMessageID,
		Reason: ParseReason(m.Hang.Reason), Stage: ParseStage(m.Hang.Stage),
		Wait: time.Duration(m.Hang.WaitMs) * time.Millisecond, EndedReason: m.Hang.EndedReason,
		At: at,
	}, nil
}

// StageUnknown is what ParseStage returns for a value that is no stage, or none: it
// differs from every stage, so that a missing stage counts as a wrong one.
const StageUnknown detector.Stage = 255

// ParseStage returns the Stage of a hang.stage value, or StageUnknown.
func ParseStage(s string) detector.Stage {
	for _, st := range detector.Stages() {
		if st.String() == s {
			return st
		}
	}
	return StageUnknown
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

// Tally is the comparison of the outputs observed with the ground truth, over a run
// observed until a given end.
//
// A stretch that must hang by the end counts among Stalls. One that must hang within
// Margin before the end counts only if it was observed (the engine may not have had the
// time), and one that hangs after the end does not count at all: its observations, and
// any unexpected observation made after the end (the silence of a call that the end of
// the run cut off looks like a stall), count as Beyond.
//
// Each counted stall must have its hang, and then one outcome: its hang-resolved when
// the reply came, its hang-unresolved when the caller hung up in silence. An outcome
// due within Margin before the end counts only if observed; one due after the end is
// not expected, except that a Runner with HangUpOnStop ends every live call when it
// stops, which makes a hang-unresolved (endedReason EndedByStop) of every stretch still
// hung then, unless the reply came between the end and the stop.
type Tally struct {
	// Calls and Turns are the calls started and the turns begun by the end.
	Calls, Turns int
	// Stalls are the stretches that must have hung; Hangs the distinct stretches
	// observed to hang: those of Stalls, plus False. Resolved and Unresolved count the
	// Stalls whose hang-resolved, or hang-unresolved, was observed as expected.
	Stalls, Hangs, Resolved, Unresolved int
	// Stopped counts those of Unresolved that the stop of the Runner ended
	// (EndedByStop), not the caller.
	Stopped int
	// Stages counts the observed hangs of Stalls by their true stage.
	Stages [3]int
	// Missed counts the Stalls not observed to hang; False the observed hangs of
	// stretches that must not hang.
	Missed, False int
	// Duplicates counts the observations beyond the first of a hang, a resolution or
	// an unresolved.
	Duplicates int
	// WrongReason and WrongStage count the observed outputs of Stalls with another
	// reason or stage than expected; WrongWait the hang-resolved and hang-unresolved
	// whose waitMs differs from the truth, WrongEndedReason the hang-unresolved whose
	// endedReason does.
	WrongReason, WrongStage, WrongWait, WrongEndedReason int
	// MissedResolved and MissedUnresolved count the Stalls whose expected outcome was
	// not observed; FalseResolved and FalseUnresolved the observed outcomes of
	// stretches that have none, or the other one.
	MissedResolved, MissedUnresolved int
	FalseResolved, FalseUnresolved   int
	// Beyond counts the observations left out because they concern the time after
	// the end.
	Beyond int
	// Lags are the detection lags of the observed Stalls, At minus the true deadline,
	// in ascending order.
	Lags []time.Duration
}

// Errors returns the number of every disagreement with the truth: missed, false,
// duplicate and wrong outputs, and missed or false outcomes.
func (t Tally) Errors() int {
	return t.Missed + t.False + t.Duplicates + t.WrongReason + t.WrongStage + t.WrongWait + t.WrongEndedReason +
		t.MissedResolved + t.MissedUnresolved + t.FalseResolved + t.FalseUnresolved
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
// unresolved=… missed=… false=…, then the stages, the other counts and the lag
// quantiles.
func (t Tally) Summary() string {
	return fmt.Sprintf("calls=%d turns=%d stalls=%d hangs=%d resolved=%d unresolved=%d missed=%d false=%d"+
		" duplicates=%d awaiting_assistant=%d awaiting_tool=%d after_tool=%d"+
		" wrong_reason=%d wrong_stage=%d wrong_wait=%d wrong_ended_reason=%d"+
		" missed_resolved=%d missed_unresolved=%d false_resolved=%d false_unresolved=%d beyond=%d"+
		" lag_p50=%v lag_p99=%v lag_max=%v",
		t.Calls, t.Turns, t.Stalls, t.Hangs, t.Resolved, t.Unresolved, t.Missed, t.False, t.Duplicates,
		t.Stages[detector.StageAwaitingAssistant], t.Stages[detector.StageAwaitingTool], t.Stages[detector.StageAfterTool],
		t.WrongReason, t.WrongStage, t.WrongWait, t.WrongEndedReason,
		t.MissedResolved, t.MissedUnresolved, t.FalseResolved, t.FalseUnresolved, t.Beyond,
		t.Lag(0.5), t.Lag(0.99), t.Lag(1))
}

// String returns Summary.
func (t Tally) String() string { return t.Summary() }

// stretchKey names a stretch: a call index and the number of its first user turn.
type stretchKey struct {
	call  uint64
	first int32
}

// seen are the observations of one stretch, by kind: indexes into the observations.
type seen struct {
	hangs, resolved, unresolved []int
	expected                    bool // a stall of the truth claimed them
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
		switch o.Kind {
		case detector.KindResolved:
			s.resolved = append(s.resolved, i)
		case detector.KindUnresolved:
			s.unresolved = append(s.unresolved, i)
		default:
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
	falseOf := func(i int) *int {
		switch observed[i].Kind {
		case detector.KindResolved:
			return &total.FalseResolved
		case detector.KindUnresolved:
			return &total.FalseUnresolved
		}
		return &total.False
	}
	for _, s := range byStretch {
		if s.expected {
			continue
		}
		if len(s.hangs) > 0 {
			unexpected(s.hangs[0], &total.False)
			total.Duplicates += len(s.hangs) - 1
		}
		for _, i := range append(s.resolved, s.unresolved...) {
			unexpected(i, falseOf(i))
		}
	}
	for _, i := range stray {
		unexpected(i, falseOf(i))
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
			j := judge{observed: observed, byStretch: byStretch, end: endMs, margin: t.sim.p.margin, tally: &parts[p],
				stop: t.stop, hangUpOnStop: t.sim.cfg.HangUpOnStop}
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
	t.Unresolved += o.Unresolved
	t.Stopped += o.Stopped
	for i := range t.Stages {
		t.Stages[i] += o.Stages[i]
	}
	t.Missed += o.Missed
	t.False += o.False
	t.Duplicates += o.Duplicates
	t.WrongReason += o.WrongReason
	t.WrongStage += o.WrongStage
	t.WrongWait += o.WrongWait
	t.WrongEndedReason += o.WrongEndedReason
	t.MissedResolved += o.MissedResolved
	t.MissedUnresolved += o.MissedUnresolved
	t.FalseResolved += o.FalseResolved
	t.FalseUnresolved += o.FalseUnresolved
	t.Beyond += o.Beyond
	t.Lags = append(t.Lags, o.Lags...)
}

// judge compares the stalls of the calls of one worker of walk with the observations.
type judge struct {
	observed     []Observation
	byStretch    map[stretchKey]*seen
	end          int64 // Unix ms
	margin       int64
	stop         int64 // Unix ms, 0 while unknown
	hangUpOnStop bool
	tally        *Tally
	sc           Script // the call being walked
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
	if s == nil {
		s = &seen{}
	}
	// Each stretch is one stall of one call, so no other goroutine writes s.
	s.expected = true
	switch {
	case deadline > j.end:
		t.Beyond += len(s.hangs) + len(s.resolved) + len(s.unresolved)
		return
	case deadline > j.end-j.margin && len(s.hangs) == 0:
		return // too near the end to be sure that it is due
	}
	t.Stalls++
	if len(s.hangs) > 0 {
		t.Hangs++
		t.Stages[min(int(r.stage), len(t.Stages)-1)]++
		t.Duplicates += len(s.hangs) - 1
		o := &j.observed[s.hangs[0]]
		j.check(o, &r)
		t.Lags = append(t.Lags, o.At.Sub(time.UnixMilli(deadline)))
	} else {
		t.Missed++
	}
	j.outcome(s, &r)
}

// check compares the reason and stage of an output of stall r with the truth.
func (j *judge) check(o *Observation, r *stallRec) {
	if o.Reason != r.reason {
		j.tally.WrongReason++
	}
	if o.Stage != r.stage {
		j.tally.WrongStage++
	}
}

// outcome judges the hang-resolved and hang-unresolved observed of stall r, which hung
// by the end.
func (j *judge) outcome(s *seen, r *stallRec) {
	t := j.tally
	at := j.sc.start + r.end // the reply, or the caller's hang-up
	// own: the stall's own outcome was published (before the end), or may have been
	// (between the end and the stop, when the stop is known); stopped: the stop may
	// have ended the call first.
	own := at < j.end || at < j.stop
	stopped := j.hangUpOnStop && at >= j.end
	required := at <= j.end-j.margin || (stopped && j.sc.start+r.deadline <= j.end-j.margin)
	// An outcome that is not this stall's is false, unless it concerns the time after
	// the end, which the tally leaves out.
	wrong := func(count *int) {
		if at >= j.end {
			t.Beyond++
		} else {
			*count++
		}
	}

	matched := false
	for k, i := range s.resolved {
		o := &j.observed[i]
		switch {
		case !r.resolved || !own:
			wrong(&t.FalseResolved)
			continue
		case k > 0 || matched:
			t.Duplicates++
			continue
		}
		matched = true
		t.Resolved++
		j.check(o, r)
		if o.Wait != time.Duration(r.end-r.firstAt)*time.Millisecond {
			t.WrongWait++
		}
	}
	for k, i := range s.unresolved {
		o := &j.observed[i]
		switch {
		case (r.resolved || !own) && !stopped:
			wrong(&t.FalseUnresolved)
			continue
		case k > 0 || matched:
			t.Duplicates++
			continue
		}
		matched = true
		t.Unresolved++
		j.check(o, r)
		switch {
		case !r.resolved && own && o.EndedReason == EndedByCustomer:
			if o.Wait != time.Duration(r.end-r.firstAt)*time.Millisecond {
				t.WrongWait++
			}
		case stopped && o.EndedReason == EndedByStop:
			t.Stopped++
			if j.stop != 0 && o.Wait != time.Duration(j.stop-j.sc.start-r.firstAt)*time.Millisecond {
				t.WrongWait++
			}
		default:
			t.WrongEndedReason++
		}
	}
	if !matched && required {
		if r.resolved && !stopped {
			t.MissedResolved++
		} else {
			t.MissedUnresolved++
		}
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
