package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/subject"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// DefaultSubject is the default of --ingest-subject: the layout SPEC §1 advises.
const DefaultSubject = "voice.events.{callId}.{type}"

// Placeholders are the placeholders of an ingest subject, in the order Render takes
// their values.
var Placeholders = []string{"callId", "type", "teamId", "assistantId"}

// Defaults of Options.
const (
	DefaultPublishTimeout    = 5 * time.Second
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultMaxInFlight       = 256
)

// ErrOptions is wrapped by the errors of New.
var ErrOptions = errors.New("http ingest")

// Options configures a Server. Zero values take the defaults above.
type Options struct {
	// Addr is the host:port Run listens on (--http-listen).
	Addr string
	// Subject is the subject template events are published on (default DefaultSubject),
	// with the placeholders {callId}, {type}, {teamId} and {assistantId}.
	Subject string
	// Secret, when set, must come with each POST as X-Vapi-Secret or as
	// Authorization: Bearer (--ingest-secret).
	Secret string
	// Limits bound what an event may be: larger bodies answer 413 (--max-event-bytes).
	Limits wire.Limits
	// DeadLetter, when set, is the subject bad input is republished on, unchanged, with
	// the headers of transport's dead letters.
	DeadLetter string
	// JetStream, when set, publishes through JetStream: 202 means the stream stored the
	// event. Without it, 202 means the server has it (a flush round trip completed).
	JetStream jetstream.JetStream
	// PublishTimeout bounds the flush round trip or the stream's ack; past it the
	// request answers 503.
	PublishTimeout time.Duration
	// TLSCert and TLSKey are PEM files: with both, the server speaks HTTPS only.
	TLSCert, TLSKey string
	// Ready is what /readyz reports (default: the NATS connection is connected).
	Ready func() bool
	// The http.Server's limits.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// ShutdownTimeout bounds how long Run waits for requests in flight once its
	// context is done; then it closes their connections.
	ShutdownTimeout time.Duration
	// MaxInFlight bounds the POSTs handled at once, and with the event size the memory
	// they hold; past it a POST answers 503 with Retry-After.
	MaxInFlight int
	Logger      *zap.Logger
	// Limited logs what a publisher can flood (bad input, refusals, errors of a
	// connection); the caller makes it rate-limited (default Logger).
	Limited *zap.Logger
}

// Server is the HTTP ingest. Its Handler can also be served by another server.
type Server struct {
	o         Options
	nc        *nats.Conn
	tmpl      subject.Template
	limits    wire.Limits
	secretSum [sha256.Size]byte
	tls       *tls.Config
	inflight  chan struct{}
	events    sync.Pool // *detector.Event, which keeps the capacity of its slices
	log       *zap.Logger
	limited   *zap.Logger
	rejects   *transport.Rejects
	stats     counters
	// handlers counts the requests being handled, so that Serve returns only once
	// every handler has: http.Server.Close does not wait for them.
	handlers sync.WaitGroup
}

type counters struct {
	codes         [600]atomic.Int64 // by HTTP status code
	publishErrors atomic.Int64
}

// New checks the options and returns a server that publishes through nc. It loads the
// TLS certificate now, so that a bad file fails at start.
func New(nc *nats.Conn, o Options) (*Server, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: no NATS connection", ErrOptions)
	}
	if o.Subject == "" {
		o.Subject = DefaultSubject
	}
	tmpl, err := subject.Parse(o.Subject, Placeholders...)
	if err != nil {
		return nil, fmt.Errorf("%w: subject: %w", ErrOptions, err)
	}
	if o.DeadLetter != "" {
		if err := wire.ValidateSubject(o.DeadLetter); err != nil {
			return nil, fmt.Errorf("%w: dead letter: %w", ErrOptions, err)
		}
	}
	setDefault(&o.PublishTimeout, DefaultPublishTimeout)
	setDefault(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&o.ReadTimeout, DefaultReadTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&o.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&o.MaxInFlight, DefaultMaxInFlight)
	if o.WriteTimeout <= o.PublishTimeout {
		return nil, fmt.Errorf("%w: write timeout %v must be above the publish timeout %v", ErrOptions, o.WriteTimeout, o.PublishTimeout)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Limited == nil {
		o.Limited = o.Logger
	}
	if o.Ready == nil {
		o.Ready = nc.IsConnected
	}
	lim := o.Limits
	def := wire.DefaultLimits()
	setDefault(&lim.MaxBytes, def.MaxBytes)
	setDefault(&lim.MaxDepth, def.MaxDepth)
	s := &Server{
		o: o, nc: nc, tmpl: tmpl, limits: lim,
		inflight: make(chan struct{}, o.MaxInFlight),
		log:      o.Logger, limited: o.Limited,
		rejects: transport.NewRejects(nc, o.DeadLetter, o.Logger, o.Limited),
	}
	s.events.New = func() any { return new(detector.Event) }
	if o.Secret != "" {
		s.secretSum = sha256.Sum256([]byte(o.Secret))
	}
	switch {
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return nil, fmt.Errorf("%w: TLS needs both a certificate and a key file", ErrOptions)
	case o.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS: %w", ErrOptions, err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run listens on Options.Addr and serves until ctx is done; see Serve.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("http ingest: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln (with TLS when configured) until ctx is done, then shuts down
// gracefully: it stops accepting, lets the requests in flight finish for up to
// ShutdownTimeout, then closes what is left. It returns nil after a clean stop, and
// only once every connection is closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.o.ReadHeaderTimeout,
		ReadTimeout:       s.o.ReadTimeout,
		WriteTimeout:      s.o.WriteTimeout,
		IdleTimeout:       s.o.IdleTimeout,
		MaxHeaderBytes:    s.o.MaxHeaderBytes,
		TLSConfig:         s.tls,
		ErrorLog:          zap.NewStdLog(s.limited.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.log.Info("http ingest listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", s.tls != nil),
		zap.String("subject", s.tmpl.String()), zap.Bool("jetstream", s.o.JetStream != nil), zap.Bool("secret", s.o.Secret != ""))
	served := make(chan error, 1)
	go func() {
		if s.tls != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("http ingest: %w", err) // never http.ErrServerClosed: only Shutdown closes it
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		s.log.Warn("http ingest: requests still in flight at shutdown, closing them", zap.Error(err))
		err = srv.Close()
	}
	<-served // http.ErrServerClosed
	s.handlers.Wait()
	if err != nil {
		return fmt.Errorf("http ingest: shutdown: %w", err)
	}
	return nil
}
