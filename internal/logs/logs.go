// Package logs holds what hangwatch's packages share about logging.
package logs

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RateLimited returns a logger that lets through the first entry of each message per
// second and drops the rest: for what a publisher can flood, such as bad input, refused
// calls or slow-consumer errors. The next entry of a message that it lets through says
// how many of that message it dropped since the last one, in the field "suppressed".
// Metrics count every one. Give each reason its own message to limit them apart.
//
// The second is measured on the entries' own times (the logger's clock, zap.WithClock),
// so the limit reads no clock of its own. Loggers derived with With share the limit.
func RateLimited(l *zap.Logger) *zap.Logger {
	lim := &limiter{windows: make(map[key]*window)}
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return &rateLimitedCore{Core: c, lim: lim}
	}))
}

// SuppressedKey is the field that says how many entries of a message were dropped.
const SuppressedKey = "suppressed"

const (
	// interval is how often a message may be logged.
	interval = time.Second
	// maxMessages bounds the messages whose window is remembered. Messages are constant
	// strings in the code, far fewer than this; past it, expired windows are forgotten.
	maxMessages = 1024
)

// key identifies a message: the same text at two levels is limited apart.
type key struct {
	level zapcore.Level
	msg   string
}

// window is the second a message was last let through in, and what was dropped since.
type window struct {
	start      time.Time
	suppressed int64
}

// limiter holds the windows of every message, shared by a logger and those derived
// from it.
type limiter struct {
	mu      sync.Mutex
	windows map[key]*window
}

// admit reports whether the entry may pass and, if so, how many entries of its message
// were dropped since the last one that passed.
func (l *limiter) admit(ent zapcore.Entry) (ok bool, suppressed int64) {
	k := key{ent.Level, ent.Message}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windows[k]
	if w == nil {
		if len(l.windows) >= maxMessages {
			l.forgetExpired(ent.Time)
		}
		l.windows[k] = &window{start: ent.Time}
		return true, 0
	}
	// A time before the window (a clock stepped back) opens a new one rather than
	// silencing the message until the clock catches up.
	if d := ent.Time.Sub(w.start); d >= interval || d < 0 {
		suppressed = w.suppressed
		*w = window{start: ent.Time}
		return true, suppressed
	}
	w.suppressed++
	return false, 0
}

// forgetExpired drops the windows that have ended: what they dropped goes uncounted in
// the logs, never in the metrics.
func (l *limiter) forgetExpired(now time.Time) {
	for k, w := range l.windows {
		if now.Sub(w.start) >= interval {
			delete(l.windows, k)
		}
	}
}

// rateLimitedCore lets an entry through its core when the limiter admits it.
type rateLimitedCore struct {
	zapcore.Core
	lim *limiter
}

func (c *rateLimitedCore) With(fields []zapcore.Field) zapcore.Core {
	return &rateLimitedCore{Core: c.Core.With(fields), lim: c.lim}
}

func (c *rateLimitedCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.Enabled(ent.Level) {
		return ce
	}
	ok, suppressed := c.lim.admit(ent)
	if !ok {
		return ce
	}
	if suppressed > 0 {
		return c.Core.With([]zapcore.Field{zap.Int64(SuppressedKey, suppressed)}).Check(ent, ce)
	}
	return c.Core.Check(ent, ce)
}
