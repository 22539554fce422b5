package main

import (
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/logs"
	"github.com/hangwatch/hangwatch/internal/subject"
	"github.com/hangwatch/hangwatch/transport/ingest"
	"github.com/hangwatch/hangwatch/wire"
)

// ingestOptions are the flags of the HTTP ingest (SPEC §1 "HTTP ingest").
type ingestOptions struct {
	listen, subject, secret string
	tlsCert, tlsKey         string
}

// ingestFlags registers the flags of the HTTP ingest on fs.
func ingestFlags(fs *flag.FlagSet) *ingestOptions {
	o := &ingestOptions{}
	fs.StringVar(&o.listen, "http-listen", "", "host:port of the HTTP ingest: POST /events takes one event per request, as a platform's webhook delivers it; empty disables it")
	fs.StringVar(&o.subject, "ingest-subject", ingest.DefaultSubject, "subject the HTTP ingest publishes each event on; placeholders {callId} {type} {teamId} {assistantId}")
	fs.StringVar(&o.secret, "ingest-secret", "", "secret every POST must carry, as X-Vapi-Secret or Authorization: Bearer")
	fs.StringVar(&o.tlsCert, "http-tls-cert", "", "certificate file (PEM) of the HTTP ingest, which then speaks HTTPS only")
	fs.StringVar(&o.tlsKey, "http-tls-key", "", "key file (PEM) of --http-tls-cert")
	return o
}

// enabled reports whether the HTTP ingest runs.
func (o *ingestOptions) enabled() bool { return o.listen != "" }

// validate checks the flags. subjects are what the engine consumes (--subject): the
// ingest subject must be among them, or the events it takes would reach no engine (and,
// in JetStream mode, no stream: every POST would answer 503).
func (o *ingestOptions) validate(subjects []string) error {
	if !o.enabled() {
		if o.secret != "" || o.tlsCert != "" || o.tlsKey != "" {
			return errors.New("--ingest-secret, --http-tls-cert and --http-tls-key need --http-listen")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--http-listen %q: want host:port: %w", o.listen, err)
	}
	tmpl, err := subject.Parse(o.subject, ingest.Placeholders...)
	if err != nil {
		return fmt.Errorf("--ingest-subject: %w", err)
	}
	if !wire.Covers(subjects, tmpl.Wildcard()) {
		return fmt.Errorf("--ingest-subject %q is not consumed: no --subject covers %s", o.subject, tmpl.Wildcard())
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--http-tls-cert and --http-tls-key go together")
	}
	return nil
}

// server builds the HTTP ingest, publishing through nc, and through js when it is not
// nil (JetStream mode: 202 once the events stream has stored the event). limits and
// deadLetter are --max-event-bytes, --max-event-depth and --dead-letter-subject; ready
// is what /readyz reports. The caller runs it with Run(ctx).
func (o *ingestOptions) server(nc *nats.Conn, js jetstream.JetStream, limits wire.Limits, deadLetter string, ready func() bool, log *zap.Logger) (*ingest.Server, error) {
	s, err := ingest.New(nc, ingest.Options{
		Addr: o.listen, Subject: o.subject, Secret: o.secret,
		TLSCert: o.tlsCert, TLSKey: o.tlsKey,
		Limits: limits, DeadLetter: deadLetter, JetStream: js,
		Ready: ready, Logger: log.Named("ingest"), Limited: logs.RateLimited(log.Named("ingest")),
	})
	if err != nil {
		return nil, fmt.Errorf("--http-listen: %w", err)
	}
	return s, nil
}
