package webhook

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
)

// Defaults of Options.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAge         = time.Hour
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultInFlight       = 4
	DefaultQueue          = 10000
)

// ErrOptions is wrapped by the errors of New and NewJetStream.
var ErrOptions = errors.New("webhook delivery")

// Options configures delivery in either mode. Zero values take the defaults above.
type Options struct {
	// URLs are the endpoints (--deliver-url): each gets every output.
	URLs []string
	// Secret signs the deliveries (--deliver-secret): "whsec_" and the base64 of the
	// key, as Standard Webhooks gives it.
	Secret string
	// Timeout bounds one attempt, from the request to the end of the answer's headers
	// (--deliver-timeout).
	Timeout time.Duration
	// MaxAge is how long an output is retried, from its creation (--deliver-max-age):
	// a retry that would come later is not made, and an output older than this when
	// its turn comes is given up without an attempt.
	MaxAge time.Duration
	// InitialBackoff and MaxBackoff shape the waits between attempts: about
	// InitialBackoff before the first retry, doubling, capped at MaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// InFlight bounds the attempts in flight to one URL at once.
	InFlight int
	// Queue bounds the outputs Deliverer holds for one URL, waiting or being retried;
	// past it, Deliver drops them (counted). JetStream mode holds them in the stream.
	Queue int
	// Client makes the requests (default: one that follows no redirect, since a
	// redirect of a POST may turn it into a GET; a 3xx is retried).
	Client *http.Client
	// Clock reads the time of attempts, ages and waits (default the real clock).
	Clock clock.Clock
	// Rand draws the jitter, in [0, 1) (default math/rand/v2).
	Rand func() float64
	// Observe, when set, is called after each attempt, from the goroutine that made
	// it: it must be quick. The metrics of deliveries and their latency hang on it.
	Observe func(Attempt)
	Logger  *zap.Logger
	// Limited logs what a publisher can flood (bad input, refusals, errors of a
	// connection); the caller makes it rate-limited (default Logger).
	Limited *zap.Logger
}

// Attempt is what Options.Observe is told of one attempt, or of an output given up
// without an attempt (Status 0, Duration 0, Err nil).
type Attempt struct {
	URL     string // as configured
	MsgID   string // the webhook-id
	Outcome Outcome
	// Status is the answer's status code; 0 when none came (Err says why).
	Status int
	Err    error
	// Duration is the time the attempt took (webhook_delivery_seconds).
	Duration time.Duration
	// Age is the output's age when the attempt ended: for Delivered, the latency of
	// the delivery.
	Age time.Duration
	// Attempts counts the attempts at this output to this URL, this one included.
	Attempts int
	// Wait is, for Retried, how long until the next attempt.
	Wait time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if len(o.URLs) == 0 {
		return o, fmt.Errorf("%w: no URL", ErrOptions)
	}
	seen := map[string]bool{}
	for _, u := range o.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return o, fmt.Errorf("%w: URL %q: want http:// or https:// and a host", ErrOptions, redact(u))
		}
		if seen[u] {
			return o, fmt.Errorf("%w: URL %q given twice", ErrOptions, redact(u))
		}
		seen[u] = true
	}
	if o.Secret == "" {
		return o, fmt.Errorf("%w: no secret: deliveries are signed", ErrOptions)
	}
	if _, err := standardwebhooks.NewWebhook(o.Secret); err != nil {
		return o, fmt.Errorf("%w: secret: want whsec_ and base64: %w", ErrOptions, err)
	}
	setDefault(&o.Timeout, DefaultTimeout)
	setDefault(&o.MaxAge, DefaultMaxAge)
	setDefault(&o.InitialBackoff, DefaultInitialBackoff)
	setDefault(&o.MaxBackoff, DefaultMaxBackoff)
	setDefault(&o.InFlight, DefaultInFlight)
	setDefault(&o.Queue, DefaultQueue)
	switch {
	case o.Timeout < 0 || o.MaxAge < 0 || o.InitialBackoff < 0 || o.MaxBackoff < o.InitialBackoff:
		return o, fmt.Errorf("%w: timeout, max age and backoff must be positive, the max backoff at least the initial", ErrOptions)
	case o.InFlight < 0 || o.Queue < 0:
		return o, fmt.Errorf("%w: in flight and queue must be positive", ErrOptions)
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// redact returns a URL without what may be a credential (user info, query,
// fragment), for logs and errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery, p.Fragment, p.RawFragment = nil, "", "", ""
	return p.String()
}
