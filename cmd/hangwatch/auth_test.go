package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
)

// natsServer starts a nats-server on a free port with opts for one test.
func natsServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(waitFor) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// connects runs the sidecar wiring with args (flags of `run`) against its server and
// stops it: the right credentials must let it start.
func connects(t *testing.T, environ map[string]string, args ...string) {
	t.Helper()
	c := newCommand("run", "")
	o := sidecarFlags(c)
	args = append(args, "--metrics-listen", "")
	if err := c.parse(args, lookupIn(environ)); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	sc, err := startSidecar(o, clock.Real(), zap.NewNop())
	if err != nil {
		t.Fatalf("with the right credentials: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := sc.close(ctx); err != nil {
		t.Fatal(err)
	}
}

// refused runs `hangwatch run` with args: wrong credentials must fail with a one-line
// error and exit 1, naming what failed and showing no secret.
func refused(t *testing.T, environ map[string]string, want string, args ...string) {
	t.Helper()
	code, _, stderr := runArgs(t, environ, append([]string{"run", "--metrics-listen", "", "--nats-connect-timeout", "2s"}, args...)...)
	if code != exitError || !strings.Contains(stderr, "connect to NATS") || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and a connect error about %q", code, stderr, want)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 {
		t.Errorf("error spans %d lines: %q", n+1, stderr)
	}
	for _, v := range environ {
		if strings.Contains(stderr, v) {
			t.Errorf("error shows a secret: %q", stderr)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "pw-") || strings.HasPrefix(a, "tok-") {
			if strings.Contains(stderr, a) {
				t.Errorf("error shows a secret: %q", stderr)
			}
		}
	}
}

func TestAuthUserPassword(t *testing.T) {
	srv := natsServer(t, &server.Options{Username: "hangwatch", Password: "pw-right-7"})
	url := srv.ClientURL()
	connects(t, nil, "--nats-url", url, "--nats-user", "hangwatch", "--nats-password", "pw-right-7")
	refused(t, nil, "Authorization Violation", "--nats-url", url, "--nats-user", "hangwatch", "--nats-password", "pw-wrong-7")
	refused(t, nil, "Authorization Violation", "--nats-url", url)
}

func TestAuthToken(t *testing.T) {
	srv := natsServer(t, &server.Options{Authorization: "tok-right-9"})
	url := srv.ClientURL()
	connects(t, map[string]string{"HANGWATCH_NATS_TOKEN": "tok-right-9"}, "--nats-url", url)
	refused(t, map[string]string{"HANGWATCH_NATS_TOKEN": "tok-wrong-9"}, "Authorization Violation", "--nats-url", url)
}

func TestAuthNKey(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	srv := natsServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := srv.ClientURL()
	dir := t.TempDir()
	writeSeed := func(kp nkeys.KeyPair, name string) string {
		seed, _ := kp.Seed()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	other, _ := nkeys.CreateUser()
	connects(t, nil, "--nats-url", url, "--nats-nkey", writeSeed(user, "right.nk"))
	refused(t, nil, "Authorization Violation", "--nats-url", url, "--nats-nkey", writeSeed(other, "wrong.nk"))
}

func TestAuthCreds(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	opub, _ := operator.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	account, _ := nkeys.CreateAccount()
	apub, _ := account.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	srv := natsServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver})
	creds := func(signer nkeys.KeyPair, name string) string {
		user, _ := nkeys.CreateUser()
		upub, _ := user.PublicKey()
		ujwt, err := jwt.NewUserClaims(upub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		file, err := jwt.FormatUserConfig(ujwt, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	stranger, _ := nkeys.CreateAccount() // an account the server does not trust
	connects(t, nil, "--nats-url", srv.ClientURL(), "--nats-creds", creds(account, "right.creds"))
	refused(t, nil, "Authorization Violation", "--nats-url", srv.ClientURL(), "--nats-creds", creds(stranger, "wrong.creds"))
}

// TestAuthMutualTLS runs against a server that requires TLS and a client certificate,
// with certificates generated here.
func TestAuthMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	otherCA := newCA(t, dir, "other-ca")
	serverCert, serverKey := ca.issue(t, dir, "server", true)
	clientCert, clientKey := ca.issue(t, dir, "client", false)
	strangerCert, strangerKey := otherCA.issue(t, dir, "stranger", false)

	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: ca.certFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := natsServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2})
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)

	connects(t, nil, "--nats-url", url, "--nats-tls-ca", ca.certFile, "--nats-tls-cert", clientCert, "--nats-tls-key", clientKey)
	refused(t, nil, "certificate", "--nats-url", url, "--nats-tls-ca", otherCA.certFile, "--nats-tls-cert", clientCert, "--nats-tls-key", clientKey)
	refused(t, nil, "connect to NATS", "--nats-url", url, "--nats-tls-ca", ca.certFile, "--nats-tls-cert", strangerCert, "--nats-tls-key", strangerKey)
	refused(t, nil, "connect to NATS", "--nats-url", url, "--nats-tls-ca", ca.certFile)
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certFile string
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, certFile: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.certFile, "CERTIFICATE", der)
	return ca
}

// issue makes a server (for 127.0.0.1) or client certificate and returns its files.
func (ca *testCA) issue(t *testing.T, dir, name string, isServer bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if isServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
