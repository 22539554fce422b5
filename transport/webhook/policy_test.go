package webhook

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s, minute = time.Second, time.Minute
	tests := []struct {
		retry int
		rnd   float64
		want  time.Duration
	}{
		{retry: 0, rnd: 0, want: s / 2},
		{retry: 0, rnd: 1 - 1e-12, want: s},
		{retry: 0, rnd: 0.5, want: 750 * time.Millisecond},
		{retry: 1, rnd: 0, want: s},
		{retry: 3, rnd: 0.5, want: 6 * s},
		{retry: 5, rnd: 0, want: 16 * s},
		{retry: 6, rnd: 0, want: 30 * s}, // 64 s, capped at 1 min
		{retry: 6, rnd: 1 - 1e-12, want: minute},
		{retry: 40, rnd: 0, want: 30 * s},
		{retry: 1000, rnd: 0.5, want: 45 * s},
	}
	for _, tt := range tests {
		got := Backoff(tt.retry, time.Second, time.Minute, tt.rnd)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("Backoff(%d, rnd %v) = %v, want %v", tt.retry, tt.rnd, got, tt.want)
		}
	}
}

func TestDecide(t *testing.T) {
	p := policy{initial: time.Second, max: time.Minute, maxAge: time.Hour}
	timeout := errors.New("context deadline exceeded")
	tests := []struct {
		name     string
		give     result
		attempts int
		age      time.Duration
		want     Outcome
		wantWait time.Duration
	}{
		{name: "200", give: result{status: 200}, attempts: 1, want: Delivered},
		{name: "204", give: result{status: 204}, attempts: 5, want: Delivered},
		{name: "500, first retry", give: result{status: 500}, attempts: 1, want: Retried, wantWait: time.Second},
		{name: "502, fourth retry", give: result{status: 502}, attempts: 4, want: Retried, wantWait: 8 * time.Second},
		{name: "timeout", give: result{err: timeout}, attempts: 1, want: Retried, wantWait: time.Second},
		{name: "408", give: result{status: 408}, attempts: 1, want: Retried, wantWait: time.Second},
		{name: "429", give: result{status: 429}, attempts: 2, want: Retried, wantWait: 2 * time.Second},
		{name: "429 with Retry-After", give: result{status: 429, retryAfter: 7 * time.Second, hasRetry: true}, attempts: 1, want: Retried, wantWait: 7 * time.Second},
		{name: "503 with a Retry-After over the cap", give: result{status: 503, retryAfter: time.Hour, hasRetry: true}, attempts: 1, want: Retried, wantWait: time.Minute},
		{name: "503 with a Retry-After under the backoff", give: result{status: 503, retryAfter: 0, hasRetry: true}, attempts: 3, want: Retried, wantWait: 4 * time.Second},
		{name: "301 is no success", give: result{status: 301}, attempts: 1, want: Retried, wantWait: time.Second},
		{name: "100", give: result{status: 100}, attempts: 1, want: Retried, wantWait: time.Second},
		{name: "400", give: result{status: 400}, attempts: 1, want: GaveUp},
		{name: "401", give: result{status: 401}, attempts: 3, want: GaveUp},
		{name: "404", give: result{status: 404}, attempts: 1, want: GaveUp},
		{name: "410", give: result{status: 410}, attempts: 1, want: GaveUp},
		{name: "499", give: result{status: 499}, attempts: 1, want: GaveUp},
		{name: "the retry would pass the max age", give: result{status: 500}, attempts: 7, age: time.Hour - 30*time.Second, want: GaveUp},
		{name: "the retry is within the max age", give: result{status: 500}, attempts: 7, age: time.Hour - 61*time.Second, want: Retried, wantWait: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// rnd just under 1: the longest wait the jitter draws.
			got, wait, why := p.decide(tt.give, tt.attempts, tt.age, 1-1e-12)
			if got != tt.want {
				t.Fatalf("decide = %v (%s), want %v", got, why, tt.want)
			}
			if d := wait - tt.wantWait; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("wait %v, want %v", wait, tt.wantWait)
			}
			if (got == GaveUp) != (why != "") {
				t.Errorf("reason %q for %v", why, got)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 5, 8, 40, 0, 0, time.UTC)
	tests := []struct {
		give   string
		want   time.Duration
		wantOK bool
	}{
		{give: "7", want: 7 * time.Second, wantOK: true},
		{give: " 0 ", want: 0, wantOK: true},
		{give: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second, wantOK: true},
		{give: now.Add(-time.Minute).Format(http.TimeFormat), want: 0, wantOK: true},
		{give: "99999999999", want: 24 * time.Hour, wantOK: true},
		{give: "-1"},
		{give: "soon"},
		{give: ""},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.give, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v %v, want %v %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}
