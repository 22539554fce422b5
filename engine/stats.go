package engine

import (
	"sync/atomic"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// counters are a shard's statistics. Only the shard writes them; Stats reads them from
// any goroutine.
type counters struct {
	events, ignored, ended, expired, revoked atomic.Int64
	unwatched, truncated, publishErrors      atomic.Int64
	shapeless                                atomic.Int64
	outcomes                                 [detector.TypeOutput + 1][numOutcomes]atomic.Int64
	refused                                  [len(refusalNames)]atomic.Int64
	outputs                                  [detector.KindUnresolved + 1][detector.ReasonMaxWait + 1][detector.StageAfterTool + 1]atomic.Int64
	state                                    [detector.StateEnded + 1]atomic.Int64 // live calls per state
	tombs                                    atomic.Int64                          // ended calls remembered
	evidence                                 atomic.Int64                          // the shard's evidence
}

// Stats is a snapshot of the engine's counters (totals since start) and gauges.
type Stats struct {
	Events    int64 // events applied to a call
	Ignored   int64 // events that changed nothing: stale snapshots, events after the end, own output
	Unwatched int64 // events of calls whose team or assistant is not watched
	// Shapeless counts calls whose events drive nothing: histories without a message
	// detection recognises (SPEC §5).
	Shapeless int64
	Ended     int64 // calls ended by their events
	Expired   int64 // calls forgotten after the call TTL
	Revoked   int64 // calls dropped because another instance took their partition
	// Refused counts events of new calls refused: at max-calls, at max-calls-per-team.
	RefusedMaxCalls, RefusedPerTeam int64
	// Outputs counts the outputs published, by kind, reason and stage.
	Outputs       map[OutputKey]int64
	PublishErrors int64 // outputs the sink failed to publish
	// Truncated counts the outputs handed to the sink whose history left older messages
	// out: their call was armed past the retained-bytes budget and kept only the tail of
	// its history, and there were messages before that tail.
	Truncated int64
	// Types counts the messages decoded, by event type; Bad those that were bad input.
	Types map[detector.Type]int64
	Bad   int64
	// ByOutcome counts the events decoded, by type and by what came of them.
	ByOutcome map[EventKey]int64

	Calls    int64 // live calls held
	Idle     int64 // calls with nothing unanswered
	Armed    int64 // calls with an unanswered stretch that has not hung
	Hung     int64 // calls whose unanswered stretch hung
	Tombs    int64 // ended calls remembered so that late events are ignored
	Retained int64 // payload bytes kept by calls for their outputs

	// WatermarkLag is how far behind the clock the input's evidence is, at the shard
	// furthest behind.
	WatermarkLag time.Duration
	// Gaps and GapTime are the input gaps reported by the source, and their total length.
	Gaps    int64
	GapTime time.Duration
	// Inflight is the bytes of the messages in the pipeline; InflightWaits the times the
	// source had to wait for room.
	Inflight, InflightWaits int64
	// Probes counts the marks the engine asked of the source.
	Probes int64
}

// Outcome is what came of an event.
type Outcome uint8

// The outcomes of an event: applied to its call; ignored (a stale snapshot, an event
// after the call's end, hangwatch's own output); its call not watched (its team or
// assistant is disabled); its call refused (a limit).
const (
	OutcomeApplied Outcome = iota
	OutcomeIgnored
	OutcomeUnwatched
	OutcomeRefused
	numOutcomes
)

var outcomeNames = [...]string{"applied", "ignored", "unwatched", "refused"}

func (o Outcome) String() string { return outcomeNames[o] }

// Outcomes returns every Outcome.
func Outcomes() []Outcome {
	return []Outcome{OutcomeApplied, OutcomeIgnored, OutcomeUnwatched, OutcomeRefused}
}

// EventKey names a count of events.
type EventKey struct {
	Type    detector.Type
	Outcome Outcome
}

// OutputKey names a count of outputs.
type OutputKey struct {
	Kind   detector.Kind
	Reason detector.Reason
	Stage  detector.Stage
}

// Hangs returns the number of hangs published.
func (s Stats) Hangs() int64 { return s.count(detector.KindHang) }

// Resolved returns the number of hang-resolved published.
func (s Stats) Resolved() int64 { return s.count(detector.KindResolved) }

// Unresolved returns the number of hang-unresolved published.
func (s Stats) Unresolved() int64 { return s.count(detector.KindUnresolved) }

func (s Stats) count(k detector.Kind) int64 {
	var n int64
	for key, v := range s.Outputs {
		if key.Kind == k {
			n += v
		}
	}
	return n
}

// Stats returns the engine's counters and gauges, summed over its shards.
func (e *Engine) Stats() Stats {
	st := Stats{Outputs: map[OutputKey]int64{}, Types: map[detector.Type]int64{}, ByOutcome: map[EventKey]int64{}}
	now := e.mono.Now()
	for _, s := range e.shards {
		c := &s.stats
		st.Events += c.events.Load()
		st.Ignored += c.ignored.Load()
		st.Unwatched += c.unwatched.Load()
		st.Shapeless += c.shapeless.Load()
		for t := range c.outcomes {
			for o := range c.outcomes[t] {
				if n := c.outcomes[t][o].Load(); n > 0 {
					st.ByOutcome[EventKey{detector.Type(t), Outcome(o)}] += n
				}
			}
		}
		st.Ended += c.ended.Load()
		st.Expired += c.expired.Load()
		st.Revoked += c.revoked.Load()
		st.RefusedMaxCalls += c.refused[refusedMaxCalls].Load()
		st.RefusedPerTeam += c.refused[refusedPerTeam].Load()
		st.PublishErrors += c.publishErrors.Load()
		st.Truncated += c.truncated.Load()
		for k := range c.outputs {
			for r := range c.outputs[k] {
				for g := range c.outputs[k][r] {
					if n := c.outputs[k][r][g].Load(); n > 0 {
						st.Outputs[OutputKey{detector.Kind(k), detector.Reason(r), detector.Stage(g)}] += n
					}
				}
			}
		}
		st.Idle += c.state[detector.StateIdle].Load()
		st.Armed += c.state[detector.StateArmed].Load()
		st.Hung += c.state[detector.StateHung].Load()
		st.Tombs += c.tombs.Load()
		st.WatermarkLag = max(st.WatermarkLag, time.Duration(max(now-max(c.evidence.Load(), e.born), 0)))
	}
	for t := range e.stats.typ {
		if n := e.stats.typ[t].Load(); n > 0 {
			st.Types[detector.Type(t)] = n
		}
	}
	st.Bad = e.stats.bad.Load()
	st.Calls = st.Idle + st.Armed + st.Hung
	st.Retained = e.retained.Load()
	st.Gaps, st.GapTime = e.gaps.stats()
	st.Inflight, st.InflightWaits = e.pipe.budget.load()
	st.Probes = e.stats.probes.Load()
	return st
}

// TopTeams returns the n teams with the most hangs, and the hangs of all the others.
func (e *Engine) TopTeams(n int) ([]LabelCount, int64) { return e.teams.top(n) }

// TopModels returns the n provider/model pairs with the most hangs, and the hangs of the
// others.
func (e *Engine) TopModels(n int) ([]LabelCount, int64) { return e.models.top(n) }

// MaxRetained returns the retained-bytes budget.
func (e *Engine) MaxRetained() int64 { return e.maxRetained }
