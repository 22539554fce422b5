package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/internal/natstest"
)

const waitFor = natstest.WaitFor

// served is a Server running on a loopback port for one test.
type served struct {
	*Server
	url    string // http://127.0.0.1:port
	client *http.Client
}

// serve starts a server over nc on a random loopback port, and stops it, checking that
// Serve returns nil, when the test ends.
func serve(t *testing.T, nc *nats.Conn, o Options) *served {
	t.Helper()
	s, err := New(nc, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Serve did not return")
		}
	})
	client := &http.Client{Timeout: waitFor, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	return &served{Server: s, url: "http://" + ln.Addr().String(), client: client}
}

// answer is what a test reads of a response.
type answer struct {
	code   int
	header http.Header
	error  string // the "error" of a JSON body
	body   []byte
}

// post POSTs body to path with the given headers (name, value, ...).
func (s *served) post(t *testing.T, path string, body []byte, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return s.do(t, req)
}

func (s *served) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, body: b}
	var r refusal
	if json.Unmarshal(b, &r) == nil {
		a.error = r.Error
	}
	return a
}

// subscribe subscribes a plain client to subject and returns the messages it gets.
func subscribe(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func next(t *testing.T, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message")
		return nil
	}
}

// none checks that nothing arrives on ch within a short while (a message published
// before a flush arrives before it: callers flush first).
func none(t *testing.T, nc *nats.Conn, ch chan *nats.Msg) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		t.Errorf("unexpected message on %s", m.Subject)
	default:
	}
}

// connectVia connects through a proxy, reconnecting quickly, and closes the connection
// when the test ends.
func connectVia(t *testing.T, p *natstest.Proxy) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.PingInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
