package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"
)

// userAgent names hangwatch to receivers.
const userAgent = "hangwatch-webhook/1"

// maxDrain is what is read of an answer's body, so that the connection can be reused;
// a longer body closes it.
const maxDrain = 64 << 10

// endpoint is one URL and what attempts to it share in either mode.
type endpoint struct {
	url      string
	redacted string
	o        *Options
	wh       *standardwebhooks.Webhook
	policy   policy
	log      *zap.Logger
	limited  *zap.Logger
	stats    *counters
}

func newEndpoint(u string, o *Options, stats *counters) *endpoint {
	wh, _ := standardwebhooks.NewWebhook(o.Secret) // checked by withDefaults
	log := o.Logger.With(zap.String("url", redact(u)))
	return &endpoint{
		url: u, redacted: redact(u), o: o, wh: wh,
		policy:  policy{initial: o.InitialBackoff, max: o.MaxBackoff, maxAge: o.MaxAge},
		log:     log,
		limited: limitedOf(*o, u),
		stats:   stats,
	}
}

// post makes one attempt: it POSTs body, signed for id at the clock's now.
func (e *endpoint) post(ctx context.Context, id string, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	now := e.o.Clock.Now()
	sig, err := e.wh.Sign(id, now, body)
	if err != nil {
		return result{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := e.o.Client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = e.redacted // the error is logged: no token of the query in it
		}
		return result{err: err}
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	r := result{status: resp.StatusCode}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		r.retryAfter, r.hasRetry = parseRetryAfter(resp.Header.Get("Retry-After"), e.o.Clock.Now())
	}
	return r
}

// attempt makes one attempt at an output created at created, whose attempts so far
// (this one excluded) are before, and decides what follows, and why when it gives up.
// The caller acts on it, then calls done. It returns ok false when ctx ended the
// attempt: nothing is decided then, the output stays where it was.
func (e *endpoint) attempt(ctx context.Context, id string, body []byte, created time.Time, before int) (a Attempt, why string, ok bool) {
	a = Attempt{URL: e.url, MsgID: id, Attempts: before + 1}
	start := e.o.Clock.Now()
	if age := start.Sub(created); age > e.o.MaxAge {
		// Its turn came too late (a backlog, or a deliverer that was down).
		a.Outcome, a.Age, a.Attempts = GaveUp, age, before
		return a, "older than the max age", true
	}
	r := e.post(ctx, id, body)
	if ctx.Err() != nil {
		return a, "", false
	}
	end := e.o.Clock.Now()
	a.Status, a.Err, a.Duration, a.Age = r.status, r.err, end.Sub(start), end.Sub(created)
	a.Outcome, a.Wait, why = e.policy.decide(r, a.Attempts, a.Age, e.o.Rand())
	return a, why, true
}

// done counts, logs and reports an attempt, once the caller has acted on it.
func (e *endpoint) done(a Attempt, why string) {
	e.stats.outcomes[a.Outcome].Add(1)
	if a.Status != 0 || a.Err != nil { // an HTTP attempt was made
		e.stats.attempts.Add(1)
		e.stats.nanos.Add(int64(a.Duration))
	}
	switch a.Outcome {
	case GaveUp:
		e.limited.Warn("webhook delivery given up", zap.String("msg_id", a.MsgID), zap.String("why", why),
			zap.Int("status", a.Status), zap.Int("attempts", a.Attempts), zap.Duration("age", a.Age), zap.Error(a.Err))
	case Retried:
		e.limited.Info("webhook delivery failed, retrying", zap.String("msg_id", a.MsgID), zap.Int("status", a.Status),
			zap.Int("attempts", a.Attempts), zap.Duration("wait", a.Wait), zap.Error(a.Err))
	}
	if e.o.Observe != nil {
		e.o.Observe(a)
	}
}

// counters are the counters of a deliverer, over every URL.
type counters struct {
	outcomes [numOutcomes]atomic.Int64
	dropped  atomic.Int64
	attempts atomic.Int64 // HTTP attempts made
	nanos    atomic.Int64 // their total duration
}

// Stats are the counters of a deliverer, over every URL.
type Stats struct {
	// Outcomes counts the attempts by outcome (webhook_deliveries_total{outcome}),
	// and the outputs given up without an attempt as GaveUp.
	Outcomes map[Outcome]int64
	// Dropped counts the outputs Deliverer refused because a URL's queue was full.
	Dropped int64
	// Held is the number of outputs Deliverer holds now, over every URL: waiting,
	// being retried or in flight.
	Held int64
	// Attempts counts the HTTP attempts made, and AttemptTime is their total
	// duration: the count and sum of webhook_delivery_seconds, whose buckets
	// Options.Observe feeds with each Attempt.Duration.
	Attempts    int64
	AttemptTime time.Duration
}

func (c *counters) stats() Stats {
	st := Stats{Outcomes: map[Outcome]int64{}, Dropped: c.dropped.Load(),
		Attempts: c.attempts.Load(), AttemptTime: time.Duration(c.nanos.Load())}
	for _, o := range Outcomes() {
		st.Outcomes[o] = c.outcomes[o].Load()
	}
	return st
}

// limitedOf returns the limited logger of o for the endpoint u.
func limitedOf(o Options, u string) *zap.Logger {
	l := o.Limited
	if l == nil {
		l = o.Logger
	}
	return l.With(zap.String("url", redact(u)))
}
