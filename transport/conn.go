package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/logs"
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

	Logger *zap.Logger
}

// Conn is a NATS connection that reconnects forever with a capped, jittered backoff,
// reports what happens to it, and closes cleanly.
type Conn struct {
	nc      *nats.Conn
	log     *zap.Logger
	limited *zap.Logger
	closed  chan struct{}
	stats   connCounters
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

// reconnect backoff: from reconnectMin, doubling, up to reconnectMax, with ±20% jitter.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// backoff returns how long to wait before retry number attempt (from 0): from
// reconnectMin, doubling, up to reconnectMax, with ±20% jitter. Reconnections and the
// retries of JetStream mode share it.
func backoff(attempt int) time.Duration {
	d := reconnectMax
	if attempt < 16 {
		d = min(reconnectMin<<attempt, reconnectMax)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Connect connects to NATS. It fails fast, with ErrConnect, when the first connection
// cannot be made; later disconnections are retried forever.
func Connect(o ConnOptions) (*Conn, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &Conn{log: log, limited: logs.RateLimited(log), closed: make(chan struct{})}
	opts, err := c.options(o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrConnect, redactURL(o.URL), err)
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
		nats.CustomReconnectDelay(backoff),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || nc.IsDraining() {
				return // our own Close, not a fault
			}
			c.stats.disconnects.Add(1)
			c.log.Warn("disconnected from NATS", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.stats.reconnects.Add(1)
			c.log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
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

// NATS returns the underlying connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// Closed is closed once the connection is closed for good: by Close, or by NATS on an
// error it does not retry (an authorization revoked, a protocol violation).
func (c *Conn) Closed() <-chan struct{} { return c.closed }

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
