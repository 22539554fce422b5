package main

import (
	"time"

	"github.com/hangwatch/hangwatch/transport"
)

// connFlags registers the flags that say how to reach NATS and who to be there, and
// returns the options they fill.
func connFlags(c *command) *transport.ConnOptions {
	o := &transport.ConnOptions{}
	fs := c.fs
	fs.StringVar(&o.URL, "nats-url", "", "NATS server URL(s), comma-separated; none: start an embedded server (run) or use nats://127.0.0.1:4222 (tail)")
	fs.DurationVar(&o.ConnectTimeout, "nats-connect-timeout", 5*time.Second, "give up starting when NATS cannot be reached within this")
	fs.StringVar(&o.Creds, "nats-creds", "", "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&o.NkeySeed, "nats-nkey", "", "file holding an NKey seed")
	fs.StringVar(&o.User, "nats-user", "", "NATS user")
	fs.StringVar(&o.Password, "nats-password", "", "NATS password")
	fs.StringVar(&o.Token, "nats-token", "", "NATS token")
	fs.StringVar(&o.TLSCA, "nats-tls-ca", "", "CA certificate file to verify the NATS server")
	fs.StringVar(&o.TLSCert, "nats-tls-cert", "", "client certificate file, for mutual TLS")
	fs.StringVar(&o.TLSKey, "nats-tls-key", "", "client key file, for mutual TLS")
	return o
}
