package engine

import (
	"sync/atomic"

	"github.com/hangwatch/hangwatch/detector"
)

// counters are a shard's statistics. Only the shard writes them; Stats reads them from
// any goroutine.
type counters struct {
	events, ignored, refused, ended, expired atomic.Int64
	hangsTurnTimeout, hangsMaxWait, resolved atomic.Int64
	publishErrors                            atomic.Int64
	state                                    [detector.StateEnded + 1]atomic.Int64 // calls per state
	retained                                 atomic.Int64                          // payload bytes held
}

// Stats is a snapshot of the engine's counters (totals since start) and gauges.
type Stats struct {
	Events           int64 // events applied to a call
	Ignored          int64 // events that changed nothing: stale snapshots, events after the end, own output
	Refused          int64 // events of new calls refused at max-calls
	Ended            int64 // calls ended by their events
	Expired          int64 // calls forgotten after the call TTL
	HangsTurnTimeout int64 // hangs published because of the turn timeout
	HangsMaxWait     int64 // hangs published because of the max wait
	Resolved         int64 // hang-resolved published
	PublishErrors    int64 // outputs the sink failed to publish

	Calls    int64 // calls held, ended ones included
	Idle     int64 // calls with nothing unanswered
	Armed    int64 // calls with an unanswered stretch that has not hung
	Hung     int64 // calls whose unanswered stretch hung
	Tombs    int64 // ended calls remembered so that late events are ignored
	Retained int64 // payload bytes held by armed calls
}

// Hangs returns the number of hangs published.
func (s Stats) Hangs() int64 { return s.HangsTurnTimeout + s.HangsMaxWait }

// Stats returns the engine's counters and gauges, summed over its shards.
func (e *Engine) Stats() Stats {
	var st Stats
	for _, s := range e.shards {
		c := &s.stats
		st.Events += c.events.Load()
		st.Ignored += c.ignored.Load()
		st.Refused += c.refused.Load()
		st.Ended += c.ended.Load()
		st.Expired += c.expired.Load()
		st.HangsTurnTimeout += c.hangsTurnTimeout.Load()
		st.HangsMaxWait += c.hangsMaxWait.Load()
		st.Resolved += c.resolved.Load()
		st.PublishErrors += c.publishErrors.Load()
		st.Idle += c.state[detector.StateIdle].Load()
		st.Armed += c.state[detector.StateArmed].Load()
		st.Hung += c.state[detector.StateHung].Load()
		st.Tombs += c.state[detector.StateEnded].Load()
		st.Retained += c.retained.Load()
	}
	st.Calls = st.Idle + st.Armed + st.Hung + st.Tombs
	return st
}
