package engine

import (
	"sync"
	"sync/atomic"
)

// limits are the engine's bounds on calls held (SPEC §2, Bounds): live calls in all, and
// per team. Ended calls do not count: they are tombs.
type limits struct {
	max, perTeam int64
	live         atomic.Int64

	mu    sync.Mutex
	teams map[string]*team
}

// team counts a team's live calls. Its name is interned: every call of the team shares
// it.
type team struct {
	name string
	live int64
}

func newLimits(maxCalls, perTeam int64) *limits {
	return &limits{max: maxCalls, perTeam: perTeam, teams: make(map[string]*team)}
}

// refusal says why a new call was refused.
type refusal uint8

const (
	admitted refusal = iota
	refusedMaxCalls
	refusedPerTeam
)

var refusalNames = [...]string{"", "max-calls", "max-calls-per-team"}

// admit counts a new call of team in, unless a limit is reached. It returns the team's
// interned record, which release gives back.
func (l *limits) admit(name string) (*team, refusal) {
	if l.live.Add(1) > l.max {
		l.live.Add(-1)
		return nil, refusedMaxCalls
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.teams[name]
	if t == nil {
		t = &team{name: clone(name)}
		l.teams[t.name] = t
	}
	if l.perTeam > 0 && t.live >= l.perTeam {
		l.live.Add(-1)
		if t.live == 0 {
			delete(l.teams, t.name)
		}
		return nil, refusedPerTeam
	}
	t.live++
	return t, admitted
}

// release counts a call of t out.
func (l *limits) release(t *team) {
	l.live.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.live--; t.live == 0 {
		delete(l.teams, t.name)
	}
}
