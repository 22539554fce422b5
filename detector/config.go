package detector

import (
	"errors"
	"fmt"
	"time"
)

// Thresholds are the deadlines of SPEC §2. They may differ per team and assistant; a
// stretch keeps those in force when its deadline was armed.
type Thresholds struct {
	// Timeout is the turn timeout: a stretch hangs when its latest user turn has gone
	// unanswered this long.
	Timeout time.Duration
	// MaxWait is the longest wait from the first user turn of a stretch, however often the
	// caller speaks again. Zero disables it.
	MaxWait time.Duration
	// ToolTimeout replaces Timeout while the stretch awaits a tool's result. Zero means
	// Timeout.
	ToolTimeout time.Duration
	// Disabled says the calls are not watched: nothing arms, nothing is published.
	Disabled bool
}

// turn returns the turn timeout in force at stage s.
func (t *Thresholds) turn(s Stage) time.Duration {
	if s == StageAwaitingTool && t.ToolTimeout > 0 {
		return t.ToolTimeout
	}
	return t.Timeout
}

// Config holds the thresholds of detection and the bounds of a call's life.
type Config struct {
	Thresholds
	// MaxLag is how far before its arrival a message's own timestamp is trusted.
	MaxLag time.Duration
	// CallTTL is how long a call with no event is kept (one whose stretch has not hung
	// yet is kept until it has).
	CallTTL time.Duration
}

// DefaultConfig returns the defaults of SPEC §2.
func DefaultConfig() Config {
	return Config{
		Thresholds: Thresholds{Timeout: 5 * time.Second, MaxWait: 10 * time.Second},
		MaxLag:     time.Second,
		CallTTL:    2 * time.Hour,
	}
}

// ErrConfig is wrapped by every error of Config.Validate.
var ErrConfig = errors.New("invalid configuration")

// Validate checks the relations between the thresholds that SPEC §2 requires.
func (c Config) Validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout must be above 0, got %v", ErrConfig, c.Timeout)
	case c.MaxWait < 0 || (c.MaxWait > 0 && c.MaxWait <= c.Timeout):
		return fmt.Errorf("%w: max-wait must be 0 or above timeout %v, got %v", ErrConfig, c.Timeout, c.MaxWait)
	case c.ToolTimeout < 0:
		return fmt.Errorf("%w: tool-timeout must not be negative, got %v", ErrConfig, c.ToolTimeout)
	case c.MaxLag < 0 || c.MaxLag >= c.Timeout:
		return fmt.Errorf("%w: max-lag must be at least 0 and below timeout %v, got %v", ErrConfig, c.Timeout, c.MaxLag)
	case c.CallTTL <= c.Timeout || c.CallTTL <= c.MaxWait || c.CallTTL <= c.ToolTimeout:
		return fmt.Errorf("%w: call-ttl must be above timeout, max-wait and tool-timeout, got %v", ErrConfig, c.CallTTL)
	}
	return nil
}

// With returns c with the thresholds t, as the engine resolves them per team and
// assistant. A threshold that would outlive the call TTL is cut to just below it, and a
// turn timeout is kept above the max lag. A max wait at or below the timeout is kept: it
// fires first, as a caller who waits that long in all is owed.
func (c Config) With(t Thresholds) Config {
	c.Thresholds = t
	for _, d := range []*time.Duration{&c.Timeout, &c.MaxWait, &c.ToolTimeout} {
		*d = min(*d, c.CallTTL-time.Millisecond)
	}
	// A turn timeout within the max lag would make a turn that arrives late hang on
	// arrival, which Validate forbids of the flags: keep it just above.
	c.Timeout = max(c.Timeout, c.MaxLag+time.Millisecond)
	if c.ToolTimeout > 0 {
		c.ToolTimeout = max(c.ToolTimeout, c.MaxLag+time.Millisecond)
	}
	return c
}
