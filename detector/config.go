package detector

import (
	"errors"
	"fmt"
	"time"
)

// Config holds the thresholds of detection.
type Config struct {
	// Timeout is the turn timeout: a stretch hangs when its latest user turn has gone
	// unanswered this long.
	Timeout time.Duration
	// MaxWait is the longest wait from the first user turn of a stretch, however often the
	// caller speaks again. Zero disables it.
	MaxWait time.Duration
	// MaxLag is how far before its arrival a message's own timestamp is trusted.
	MaxLag time.Duration
	// CallTTL is how long a call with no event is kept, and how long an ended call
	// stays remembered so that late events do not resurrect it.
	CallTTL time.Duration
}

// DefaultConfig returns the defaults of SPEC §2.
func DefaultConfig() Config {
	return Config{
		Timeout: 5 * time.Second,
		MaxWait: 10 * time.Second,
		MaxLag:  time.Second,
		CallTTL: 2 * time.Hour,
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
	case c.MaxLag < 0:
		return fmt.Errorf("%w: max-lag must not be negative, got %v", ErrConfig, c.MaxLag)
	case c.CallTTL <= c.Timeout || c.CallTTL <= c.MaxWait:
		return fmt.Errorf("%w: call-ttl must be above timeout and max-wait, got %v", ErrConfig, c.CallTTL)
	}
	return nil
}
