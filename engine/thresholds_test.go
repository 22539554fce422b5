package engine

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// testThresholds are thresholds per team and assistant that a test can change: an
// assistant's config wins over its team's, which wins over the default.
type testThresholds struct {
	mu   sync.Mutex
	def  detector.Config
	keys map[string]*detector.Config // "team.X", "assistant.Y"
	asks int
}

func newTestThresholds() *testThresholds {
	return &testThresholds{def: detector.DefaultConfig(), keys: map[string]*detector.Config{}}
}

func (th *testThresholds) set(key string, t detector.Thresholds) {
	cfg := th.def.With(t)
	th.mu.Lock()
	th.keys[key] = &cfg
	th.mu.Unlock()
}

func (th *testThresholds) For(team, assistant string) *detector.Config {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.asks++
	if c := th.keys["assistant."+assistant]; c != nil {
		return c
	}
	if c := th.keys["team."+team]; c != nil {
		return c
	}
	return &th.def
}

// TestEngineThresholdsPerCall: each call runs on the thresholds of its team or
// assistant; the hang says which threshold fired.
func TestEngineThresholdsPerCall(t *testing.T) {
	th := newTestThresholds()
	th.set("team.fast", detector.Thresholds{Timeout: 3 * time.Second, MaxWait: 6 * time.Second})
	th.set("team.slow", detector.Thresholds{Timeout: 8 * time.Second})
	th.set("assistant.eager", detector.Thresholds{Timeout: 2 * time.Second})
	h := newHarness(t, WithThresholds(th))
	for _, x := range []struct{ id, team, assistant string }{
		{"default", "other", "x"}, {"fast", "fast", "x"}, {"slow", "slow", "x"}, {"eager", "slow", "eager"},
	} {
		h.send(withTeam(conv(x.id, 1, user("user-1", 0)), x.team, x.assistant))
	}
	for range 10 {
		h.advance(time.Second)
	}
	want := []string{
		"hang eager user-1 turn-timeout 2000ms@2000 threshold=2s",
		"hang fast user-1 turn-timeout 3000ms@3000 threshold=3s",
		"hang default user-1 turn-timeout 5000ms@5000 threshold=5s",
		"hang slow user-1 turn-timeout 8000ms@8000 threshold=8s",
	}
	if got := withThresholds(h.sink.take()); !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

func withThresholds(ps []published) []string {
	s := briefs(ps)
	for i, p := range ps {
		s[i] += fmt.Sprintf(" threshold=%v", p.out.Threshold)
	}
	return s
}

// TestEngineThresholdsChange: a change applies to the deadlines armed after it; a
// deadline armed before keeps its thresholds.
func TestEngineThresholdsChange(t *testing.T) {
	th := newTestThresholds()
	th.set("team.t", detector.Thresholds{Timeout: 3 * time.Second})
	h := newHarness(t, WithThresholds(th))
	h.send(withTeam(conv("before", 1, user("user-1", 0)), "t", "a"))
	h.send(withTeam(conv("re-armed", 1, user("user-1", 0)), "t", "a"))
	h.advance(time.Second)
	th.set("team.t", detector.Thresholds{Timeout: 6 * time.Second})
	h.send(withTeam(conv("after", 1001, user("user-1", 1000)), "t", "a"))
	h.send(withTeam(conv("re-armed", 1001, user("user-1", 0), user("user-2", 1000)), "t", "a"))
	for range 10 {
		h.advance(time.Second)
	}
	want := []string{
		"hang before user-1 turn-timeout 3000ms@3000 threshold=3s",
		"hang after user-1 turn-timeout 6000ms@7000 threshold=6s",
		"hang re-armed user-2 turn-timeout 6000ms@7000 threshold=6s",
	}
	got := withThresholds(h.sink.take())
	slices.Sort(got[1:])
	if !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
}

// TestEngineThresholdsDisabled: the calls of a team or assistant that is not watched are
// not held, and their events are counted as unwatched.
func TestEngineThresholdsDisabled(t *testing.T) {
	th := newTestThresholds()
	th.set("team.off", detector.Thresholds{Timeout: 5 * time.Second, Disabled: true})
	th.set("assistant.off", detector.Thresholds{Timeout: 5 * time.Second, Disabled: true})
	h := newHarness(t, WithThresholds(th))
	h.send(withTeam(conv("team-off", 1, user("user-1", 0)), "off", "a"))
	h.send(withTeam(conv("team-off", 2, user("user-1", 0), user("user-2", 0)), "off", "a"))
	h.send(withTeam(conv("assistant-off", 1, user("user-1", 0)), "on", "off"))
	h.send(withTeam(conv("watched", 1, user("user-1", 0)), "on", "a"))
	h.advance(5 * time.Second)
	if got, want := briefs(h.sink.take()), []string{"hang watched user-1 turn-timeout 5000ms@5000"}; !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Unwatched != 3 || st.Calls != 1 || st.Events != 1 {
		t.Errorf("unwatched %d, calls %d, events %d; want 3, 1, 1", st.Unwatched, st.Calls, st.Events)
	}
}

// TestEngineToolTimeout: while a stretch awaits a tool, its turn timeout is the tool
// timeout; the result moves the deadline back, which may have passed already.
func TestEngineToolTimeout(t *testing.T) {
	th := newTestThresholds()
	th.set("team.t", detector.Thresholds{Timeout: 5 * time.Second, MaxWait: 30 * time.Second, ToolTimeout: 20 * time.Second})
	tests := []struct {
		name   string
		result int64 // ms; 0: none
		want   string
	}{
		{name: "no result: the tool timeout", want: "hang c1 user-1 turn-timeout 20000ms@20000 awaiting-tool threshold=20s"},
		{name: "a result in time: the turn timeout", result: 3000, want: "hang c1 user-1 turn-timeout 5000ms@5000 after-tool threshold=5s"},
		{name: "a result after the turn timeout: at once", result: 8000, want: "hang c1 user-1 turn-timeout 8000ms@8000 after-tool threshold=5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, WithThresholds(th))
			h.send(withTeam(conv("c1", 1, user("user-1", 0)), "t", "a"))
			h.advance(time.Second)
			h.send(withTeam(conv("c1", 1000, user("user-1", 0), toolCall("t-1", 1000, "x")), "t", "a"))
			for i := int64(2); i <= 25; i++ {
				h.advance(time.Second)
				if tt.result == i*1000 {
					h.send(withTeam(conv("c1", tt.result, user("user-1", 0), toolCall("t-1", 1000, "x"),
						toolResult("t-1r", tt.result, "x")), "t", "a"))
				}
			}
			var got []string
			for _, p := range h.sink.take() {
				got = append(got, fmt.Sprintf("%s %v threshold=%v", brief(p), p.out.Stage, p.out.Threshold))
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
		})
	}
}
