package transport

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// DefaultEmbeddedListen is the default of --embedded-listen.
const DefaultEmbeddedListen = "127.0.0.1:4222"

// EmbeddedOptions configures an embedded NATS server.
type EmbeddedOptions struct {
	// Listen is host:port; port 0 picks a free port.
	Listen string
	// User and Password, when set, are required of every client: for a server that
	// listens beyond loopback.
	User, Password string
	// JetStream enables JetStream, storing in StoreDir.
	JetStream bool
	StoreDir  string
	Logger    *zap.Logger
}

// Embedded is a NATS server running in this process, so that hangwatch works on a bare
// machine and tests run against a real broker.
type Embedded struct {
	srv *server.Server
}

// ErrEmbedded is wrapped by the errors of an embedded server that could not start.
var ErrEmbedded = errors.New("start embedded NATS server")

// StartEmbedded starts a NATS server and returns once it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	host, portText, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: listen address %q: %w", ErrEmbedded, o.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%w: listen address %q: bad port", ErrEmbedded, o.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // for nats-server, port 0 means its default, 4222
	}
	if (o.User == "") != (o.Password == "") {
		return nil, fmt.Errorf("%w: give both a user and a password, or neither", ErrEmbedded)
	}
	opts := &server.Options{
		ServerName:             "hangwatch-embedded",
		Host:                   host,
		Port:                   port,
		NoSigs:                 true, // signals belong to cmd
		Username:               o.User,
		Password:               o.Password,
		JetStream:              o.JetStream,
		StoreDir:               o.StoreDir,
		DisableJetStreamBanner: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEmbedded, err)
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(serverLogger{log.Named("nats-server").Sugar(), fatal}, false, false, false)
	srv.Start()
	// The server reports a failure to listen (a busy port) through its logger, not
	// through Start: watch for it rather than wait out the readiness timeout.
	for deadline := time.Now().Add(10 * time.Second); !srv.ReadyForConnections(20 * time.Millisecond); {
		select {
		case msg := <-fatal:
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("%w: %s", ErrEmbedded, msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("%w: not listening on %s after 10s", ErrEmbedded, o.Listen)
		}
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL returns the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server returns the server, for in-process connections.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger sends nats-server's logs to zap, and its fatal errors to fatal too.
type serverLogger struct {
	s     *zap.SugaredLogger
	fatal chan<- string
}

func (l serverLogger) Noticef(format string, v ...any) { l.s.Infof(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }

func (l serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.s.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}

func (l serverLogger) Errorf(format string, v ...any) { l.s.Errorf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any) { l.s.Debugf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any) { l.s.Debugf(format, v...) }
