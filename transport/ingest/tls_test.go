package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/internal/fixtures"
	"github.com/hangwatch/hangwatch/internal/natstest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, and returns
// their files and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hangwatch test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	certFile, keyFile, pool := writeCert(t)
	s := serve(t, nc, Options{TLSCert: certFile, TLSKey: keyFile})
	s.url = "https://" + s.url[len("http://"):]
	plain := s.client
	s.client = &http.Client{Timeout: waitFor, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(s.client.CloseIdleConnections)

	if a := s.post(t, PathEvents, fixtures.Webhook("03-conversation-update-user-1.json")); a.code != 202 {
		t.Errorf("POST over TLS = %d %s, want 202", a.code, a.body)
	}
	// Plain HTTP gets no event in.
	resp, err := plain.Post("http://"+s.url[len("https://"):]+PathEvents, "application/json", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port = %d, want 400 from net/http", resp.StatusCode)
		}
	}
	if got := s.Stats().Requests[202]; got != 1 {
		t.Errorf("202s: %d, want 1", got)
	}
}

// Run listens on Addr, serves, and returns nil once its context is done.
func TestRun(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // free the port for Run
	s, err := New(nc, Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	client := &http.Client{Timeout: waitFor, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	waitUntil(t, func() bool {
		resp, err := client.Get("http://" + addr + PathHealthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	// A busy address is Run's error.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s2, err := New(nc, Options{Addr: busy.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Run(context.Background()); err == nil {
		t.Error("Run on a busy address = nil, want an error")
	}
}

// Shutdown lets a request in flight finish: it is answered, not cut.
func TestShutdownFinishesRequests(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	proxy := natstest.StartProxy(t, srv.Addr().String())
	pnc := connectVia(t, proxy)
	s, err := New(pnc, Options{PublishTimeout: 5 * time.Second})
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
	sv := &served{Server: s, url: "http://" + ln.Addr().String(), client: &http.Client{Timeout: waitFor, Transport: &http.Transport{}}}
	defer sv.client.CloseIdleConnections()

	proxy.Freeze()
	answered := make(chan answer, 1)
	go func() { answered <- sv.post(t, PathEvents, fixtures.Webhook("03-conversation-update-user-1.json")) }()
	waitUntil(t, func() bool { return len(s.inflight) == 1 })
	cancel() // shutdown begins while the request waits for NATS
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	proxy.Thaw()
	if a := <-answered; a.code != 202 {
		t.Errorf("request in flight at shutdown = %d %s, want 202", a.code, a.body)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}
