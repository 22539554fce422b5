package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Outcome is what came of an attempt to deliver an output to one URL.
type Outcome uint8

// The outcomes, the label values of webhook_deliveries_total{outcome}.
const (
	// Delivered: the receiver answered 2xx.
	Delivered Outcome = iota
	// Retried: the attempt failed (an answer other than 2xx, a timeout, a network
	// error) and will be retried.
	Retried
	// GaveUp: the receiver refused for good (400-499 but 408 and 429), or the output's
	// max age was reached: it is not retried.
	GaveUp
	numOutcomes
)

var outcomeNames = [...]string{"delivered", "retried", "gave-up"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcomes returns every outcome, so that counters can start at zero.
func Outcomes() []Outcome { return []Outcome{Delivered, Retried, GaveUp} }

// Backoff returns the wait before retry number retry (0 for the first retry): initial
// doubled per retry, capped at max, with equal jitter: the wait is drawn in [d/2, d]
// by rnd in [0, 1] (rand draws [0, 1)). Equal rather than full jitter: full jitter may draw a wait near 0,
// retrying at once an endpoint that just failed; half the wait is kept so that retries
// spread out and still back off.
func Backoff(retry int, initial, max time.Duration, rnd float64) time.Duration {
	d := max
	if retry < 32 && initial<<retry > 0 && initial<<retry < max {
		d = initial << retry
	}
	return d/2 + time.Duration(rnd*float64(d-d/2))
}

// policy decides what follows an attempt.
type policy struct {
	initial, max time.Duration // the backoff
	maxAge       time.Duration
}

// result is what an attempt got: a status code, or an error (a timeout, a network
// error) with status 0; and the Retry-After of a 429 or 503, when it has one.
type result struct {
	status     int
	err        error
	retryAfter time.Duration
	hasRetry   bool
}

// decide returns the outcome of an attempt, and for Retried the wait before the next
// one. attempts counts the attempts made, this one included; age is the output's age
// now; rnd draws the jitter. A retry that would come after the output's max age is not
// made: the output is given up now.
func (p policy) decide(r result, attempts int, age time.Duration, rnd float64) (Outcome, time.Duration, string) {
	switch {
	case r.err == nil && r.status >= 200 && r.status < 300:
		return Delivered, 0, ""
	case r.err == nil && r.status >= 400 && r.status < 500 && r.status != http.StatusRequestTimeout && r.status != http.StatusTooManyRequests:
		return GaveUp, 0, "refused with " + strconv.Itoa(r.status)
	}
	wait := Backoff(attempts-1, p.initial, p.max, rnd)
	if r.hasRetry {
		// Honour the receiver's Retry-After, within the cap: never sooner than it asks.
		wait = min(max(wait, r.retryAfter), p.max)
	}
	if age+wait > p.maxAge {
		return GaveUp, 0, "max age reached"
	}
	return Retried, wait, ""
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date (RFC 9110
// §10.2.3), as a wait from now. A date in the past is a wait of 0.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
