package logs

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// zapClock gives zap the time of a clockwork clock.
type zapClock struct{ clockwork.Clock }

func (c zapClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// newLimited returns a rate-limited logger at info level whose entries are observed and
// whose time is clk's.
func newLimited(clk clockwork.Clock) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return RateLimited(zap.New(core, zap.WithClock(zapClock{clk}))), logs
}

// step is a line of a script: advance the clock, then log msg at level.
type step struct {
	advance time.Duration
	level   zapcore.Level
	msg     string
}

// logged is what the observer saw of an entry: its message and its suppressed field
// (-1: none).
type logged struct {
	msg        string
	suppressed int64
}

func TestRateLimited(t *testing.T) {
	tests := []struct {
		name string
		give []step
		want []logged
	}{
		{
			name: "the first of a second passes, the next that passes counts the rest",
			give: []step{{msg: "bad input"}, {msg: "bad input"}, {msg: "bad input"}, {msg: "bad input"},
				{advance: time.Second, msg: "bad input"}, {advance: time.Second, msg: "bad input"}},
			want: []logged{{"bad input", -1}, {"bad input", 3}, {"bad input", -1}},
		},
		{
			name: "the second is counted from the entry that passed",
			give: []step{{msg: "m"}, {advance: 600 * time.Millisecond, msg: "m"}, {advance: 399 * time.Millisecond, msg: "m"},
				{advance: time.Millisecond, msg: "m"}},
			want: []logged{{"m", -1}, {"m", 2}},
		},
		{
			name: "messages are limited apart",
			give: []step{{msg: "a"}, {msg: "b"}, {msg: "a"}, {msg: "b"}, {msg: "b"}, {advance: time.Second, msg: "b"}, {msg: "a"}},
			want: []logged{{"a", -1}, {"b", -1}, {"b", 2}, {"a", 1}},
		},
		{
			name: "levels are limited apart",
			give: []step{{msg: "m"}, {level: zapcore.WarnLevel, msg: "m"}, {level: zapcore.WarnLevel, msg: "m"}, {advance: time.Second, level: zapcore.WarnLevel, msg: "m"}},
			want: []logged{{"m", -1}, {"m", -1}, {"m", 1}},
		},
		{
			name: "entries below the level are neither logged nor counted",
			give: []step{{msg: "m"}, {level: zapcore.DebugLevel, msg: "m"}, {level: zapcore.DebugLevel, msg: "m"}, {advance: time.Second, msg: "m"}},
			want: []logged{{"m", -1}, {"m", -1}},
		},
		{
			name: "a clock stepped back opens a new second",
			give: []step{{msg: "m"}, {msg: "m"}, {advance: -time.Minute, msg: "m"}},
			want: []logged{{"m", -1}, {"m", 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clockwork.NewFakeClockAt(time.Date(2026, 12, 5, 21, 31, 48, 0, time.UTC))
			log, obs := newLimited(clk)
			for _, s := range tt.give {
				clk.Advance(s.advance)
				if ce := log.Check(s.level, s.msg); ce != nil {
					ce.Write(zap.String("reason", "not-json"))
				}
			}
			got := observed(t, obs)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("logged %v, want %v", got, tt.want)
			}
		})
	}
}

// observed returns the entries logged, checking that each kept its own fields.
func observed(t *testing.T, obs *observer.ObservedLogs) []logged {
	t.Helper()
	var got []logged
	for _, e := range obs.All() {
		l := logged{msg: e.Message, suppressed: -1}
		fields := e.ContextMap()
		if n, ok := fields[SuppressedKey]; ok {
			l.suppressed = n.(int64)
		}
		if fields["reason"] != "not-json" {
			t.Errorf("entry %q lost its field reason: %v", e.Message, fields)
		}
		got = append(got, l)
	}
	return got
}

// TestRateLimitedWith: loggers derived with With share the limit and keep their fields.
func TestRateLimitedWith(t *testing.T) {
	clk := clockwork.NewFakeClock()
	log, obs := newLimited(clk)
	a, b := log.With(zap.String("component", "a")), log.With(zap.String("component", "b"))
	a.Info("refused")
	b.Info("refused")
	log.Info("refused")
	clk.Advance(time.Second)
	b.Info("refused")
	all := obs.All()
	if len(all) != 2 {
		t.Fatalf("logged %d entries, want 2: %v", len(all), all)
	}
	if got := all[0].ContextMap()["component"]; got != "a" {
		t.Errorf("first entry: component = %v, want a", got)
	}
	if got := all[1].ContextMap(); got["component"] != "b" || got[SuppressedKey] != int64(2) {
		t.Errorf("second entry: fields %v, want component b and %s 2", got, SuppressedKey)
	}
}

// TestRateLimitedConcurrent: entries logged at once by many goroutines are each either
// let through or counted, never both or neither.
func TestRateLimitedConcurrent(t *testing.T) {
	clk := clockwork.NewFakeClock()
	log, obs := newLimited(clk)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				log.Info("slow consumer")
			}
		})
	}
	wg.Wait()
	clk.Advance(time.Second)
	log.Info("slow consumer")
	all := obs.All()
	if len(all) != 2 {
		t.Fatalf("logged %d entries, want 2", len(all))
	}
	if got := all[1].ContextMap()[SuppressedKey]; got != int64(goroutines*each-1) {
		t.Errorf("suppressed = %v, want %d", got, goroutines*each-1)
	}
}

// TestRateLimitedForgetsExpired: past maxMessages distinct messages, the windows that
// ended are forgotten, and a new message is still let through.
func TestRateLimitedForgetsExpired(t *testing.T) {
	clk := clockwork.NewFakeClock()
	log, obs := newLimited(clk)
	for i := range maxMessages {
		log.Info(fmt.Sprint("message ", i))
	}
	clk.Advance(time.Second)
	log.Info("one more")
	log.Info("one more")
	if got := obs.Len(); got != maxMessages+1 {
		t.Errorf("logged %d entries, want %d", got, maxMessages+1)
	}
	core := log.Core().(*rateLimitedCore)
	if got := len(core.lim.windows); got != 1 {
		t.Errorf("%d windows remembered, want 1: the expired ones forgotten", got)
	}
}
