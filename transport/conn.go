package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ConnOptions says how to reach NATS and who to be there.
type ConnOptions struct {
	// URL is the server URL, or a comma-separated list of them.
	URL string
	// Name is the connection name the server shows (default "hangwatch").
	Name string
	// ConnectTimeout bounds the first connection (default 5 s): hangwatch does not start
	// against a server it cannot reach. After that it reconnects forever.
	ConnectTimeout time.Duration

	// Credentials: at most one of Creds, NkeySeed, User/Password and Token.
	Creds          string // a .creds file (JWT and NKey seed)
	NkeySeed       string // a file holding an NKey seed
	User, Password string
	Token          string

	// TLS: a CA to verify the server, and a client certificate for mutual TLS.
	TLSCA, TLSCert, TLSKey string

	// Now reads the clock the outages it logs are measured with (default time.Now).
	Now func() time.Time

	Logger *zap.Logger
	// Limited logs what a publisher can flood (bad input, refusals, errors of a
	// connection); the caller makes it rate-limited (default Logger).
	Limited *zap.Logger
}

// Conn is a NATS connection that reconnects forever with a capped, jittered backoff,
// reports what happens to it, and closes cleanly.
type Conn struct {
	nc      *nats.Conn
	log     *zap.Logger
	limited *zap.Logger
	closed  chan struct{}
	stats   connCounters
	now     func() time.Time

	mu           sync.Mutex
	disconnected time.Time     // when the connection was last lost; zero while connected
	reconnected  chan struct{} // closed and replaced at each reconnection
}

type connCounters struct {
	disconnects, reconnects, slowConsumers, asyncErrors atomic.Int64
}

// ConnStats are the counters of a Conn since it connected.
type ConnStats struct {
	Connected     bool
	Disconnects   int64
	Reconnects    int64
	SlowConsumers int64 // messages dropped because a subscription fell behind, by event
	AsyncErrors   int64 // other errors the server or the client reported asynchronously
}

// ErrConnect is wrapped by the error of a connection that could not be made.
var ErrConnect = errors.New("connect to NATS")

// Reconnection: every attempt within a second of the last, with jitter, so that an
// outage of the server costs as little input as it can (SPEC §2: what core NATS
// publishes while hangwatch is disconnected is lost).
const (
	reconnectMin = 50 * time.Millisecond
	reconnectMax = 500 * time.Millisecond
	// retryMax caps the backoff of the retries of JetStream mode, which wait on a server
	// that answers.
	retryMax = 5 * time.Second
)

// reconnectDelay returns how long to wait before reconnection attempt number attempt
// (from 1): from reconnectMin, doubling, up to reconnectMax, with ±20% jitter.
func reconnectDelay(attempt int) time.Duration {
	return jitter(min(reconnectMin<<min(max(attempt-1, 0), 16), reconnectMax))
}

// backoff returns how long to wait before retry number attempt (from 0) of an
// operation the server refused or did not answer: from 100 ms, doubling, up to retryMax,
// with ±20% jitter.
func backoff(attempt int) time.Duration {
	return jitter(min(100*time.Millisecond<<min(attempt, 16), retryMax))
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Pings: a server that stops answering (paused, cut off) is noticed within about
// pingInterval*(maxPingsOut+1), and the connection then reconnects.
const (
	pingInterval = 2 * time.Second
	maxPingsOut  = 2
)

// Connect connects to NATS. It fails fast, with ErrConnect, when the first connection
// cannot be made; later disconnections are retried forever.
func Connect(o ConnOptions) (*Conn, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	limited := o.Limited
	if limited == nil {
		limited = log
	}
	c := &Conn{log: log, limited: limited, closed: make(chan struct{}), now: o.Now, reconnected: make(chan struct{})}
	if c.now == nil {
		c.now = time.Now
	}
	opts, err := c.options(o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w (check --nats-url and that the server runs; leave --nats-url out to run an embedded server)", ErrConnect, redactURL(o.URL), err)
	}
	c.nc = nc
	log.Info("connected to NATS", zap.String("url", nc.ConnectedUrlRedacted()), zap.String("server_id", nc.ConnectedServerId()))
	return c, nil
}

func (c *Conn) options(o ConnOptions) ([]nats.Option, error) {
	name := o.Name
	if name == "" {
		name = "hangwatch"
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || nc.IsDraining() {
				return // our own Close, not a fault
			}
			c.stats.disconnects.Add(1)
			c.mu.Lock()
			if c.disconnected.IsZero() {
				c.disconnected = c.now()
			}
			c.mu.Unlock()
			c.log.Warn("disconnected from NATS", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.stats.reconnects.Add(1)
			c.mu.Lock()
			var outage time.Duration
			if !c.disconnected.IsZero() {
				outage = c.now().Sub(c.disconnected)
				c.disconnected = time.Time{}
			}
			close(c.reconnected)
			c.reconnected = make(chan struct{})
			c.mu.Unlock()
			c.log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()), zap.Duration("outage", outage))
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if errors.Is(err, nats.ErrSlowConsumer) {
				c.stats.slowConsumers.Add(1)
				c.limited.Warn("slow consumer: events dropped", zap.String("subject", subject), zap.Error(err))
				return
			}
			c.stats.asyncErrors.Add(1)
			c.limited.Error("NATS error", zap.String("subject", subject), zap.Error(err))
		}),
	}
	auth, err := authOptions(o)
	if err != nil {
		return nil, err
	}
	return append(opts, auth...), nil
}

// Reconnected returns a channel that is closed at the next reconnection.
func (c *Conn) Reconnected() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnected
}

// NATS returns the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// Closed is closed once the connection is closed for good: by Close, or by NATS on an
// error it does not retry (an authorization revoked, a protocol violation).
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// closedForGood logs that NATS closed the connection for good and returns the error a
// source ends with: nothing will come any more, so the process exits and is restarted
// rather than live on deaf. cause stands in when the connection says nothing.
func (c *Conn) closedForGood(log *zap.Logger, cause error) error {
	last := c.nc.LastError()
	log.Error("NATS closed the connection for good", zap.Error(last))
	switch {
	case last != nil:
		return fmt.Errorf("%w: %w", ErrConnClosed, last)
	case cause != nil:
		return fmt.Errorf("%w: %w", ErrConnClosed, cause)
	}
	return ErrConnClosed
}

// ErrConnClosed is returned by a source whose connection was closed under it.
var ErrConnClosed = errors.New("NATS connection closed")

// Stats returns the connection's counters.
func (c *Conn) Stats() ConnStats {
	return ConnStats{
		Connected:     c.nc.IsConnected(),
		Disconnects:   c.stats.disconnects.Load(),
		Reconnects:    c.stats.reconnects.Load(),
		SlowConsumers: c.stats.slowConsumers.Load(),
		AsyncErrors:   c.stats.asyncErrors.Load(),
	}
}

// Close flushes what was published, closes the connection and waits for it to be
// closed, until ctx is done; then it closes it at once.
func (c *Conn) Close(ctx context.Context) error {
	if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		c.nc.Close()
	}
	select {
	case <-c.closed:
		return nil
	case <-ctx.Done():
		c.nc.Close()
		<-c.closed
		return fmt.Errorf("close NATS connection: %w", ctx.Err())
	}
}
