// Package natstest starts real NATS servers in the process for tests: on a random or a
// given port (to restart one where its clients reconnect), with JetStream in a
// directory of the test's.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// WaitFor bounds every wait on the broker in tests: it only matters when one fails.
const WaitFor = 10 * time.Second

// Options say what server to start.
type Options struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// StoreDir, when set, enables JetStream, stored there.
	StoreDir string
}

// Start starts a server on 127.0.0.1 and shuts it down when the test ends.
func Start(t testing.TB, o Options) *server.Server {
	t.Helper()
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       port,
		NoSigs:     true,
		NoLog:      true,
		JetStream:  o.StoreDir != "",
		StoreDir:   o.StoreDir,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(WaitFor) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { Stop(srv) })
	return srv
}

// Stop shuts a server down and waits until it has.
func Stop(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Port returns the port a server listens on.
func Port(srv *server.Server) int { return srv.Addr().(*net.TCPAddr).Port }

// Connect connects to srv, reconnecting quickly and forever, and closes the connection
// when the test ends.
func Connect(t testing.TB, srv *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond), nats.ReconnectJitter(0, 0)}, opts...)
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
