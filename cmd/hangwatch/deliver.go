package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/logs"
	"github.com/hangwatch/hangwatch/transport/webhook"
)

// deliverOptions are the flags of webhook delivery (SPEC §3 "Webhook delivery").
type deliverOptions struct {
	urls            *stringList
	secret          string
	timeout, maxAge time.Duration
}

// deliverFlags registers the flags of webhook delivery on fs.
func deliverFlags(fs *flag.FlagSet) *deliverOptions {
	o := &deliverOptions{urls: newStringList()}
	fs.Var(o.urls, "deliver-url", "POST every output to this URL, signed per Standard Webhooks; repeat the flag for several (environment: comma-separated)")
	fs.StringVar(&o.secret, "deliver-secret", "", "signing secret of --deliver-url: whsec_ and base64, as from: echo whsec_$(openssl rand -base64 32)")
	fs.DurationVar(&o.timeout, "deliver-timeout", webhook.DefaultTimeout, "longest wait for a webhook's answer; past it the delivery is retried")
	fs.DurationVar(&o.maxAge, "deliver-max-age", webhook.DefaultMaxAge, "retry a webhook delivery for this long after the output was published")
	return o
}

// enabled reports whether outputs are delivered to webhooks.
func (o *deliverOptions) enabled() bool { return len(o.urls.values) > 0 }

// validate checks the flags. An error never shows the secret, nor a URL's credentials.
func (o *deliverOptions) validate() error {
	if !o.enabled() {
		return nil
	}
	if o.secret == "" {
		return errors.New("--deliver-url needs --deliver-secret: deliveries are signed (generate one: echo whsec_$(openssl rand -base64 32))")
	}
	if !strings.HasPrefix(o.secret, "whsec_") {
		return errors.New("--deliver-secret must be whsec_ and base64, as Standard Webhooks give it (generate one: echo whsec_$(openssl rand -base64 32))")
	}
	if o.timeout <= 0 || o.maxAge <= 0 {
		return fmt.Errorf("--deliver-timeout and --deliver-max-age must be above 0, got %v and %v", o.timeout, o.maxAge)
	}
	if _, err := webhook.New(o.options(zap.NewNop(), nil)); err != nil { // starts nothing
		return fmt.Errorf("--deliver-url, --deliver-secret: %w", err)
	}
	return nil
}

func (o *deliverOptions) options(log *zap.Logger, observe func(webhook.Attempt)) webhook.Options {
	return webhook.Options{
		URLs: o.urls.values, Secret: o.secret, Timeout: o.timeout, MaxAge: o.maxAge,
		Observe: observe, Logger: log.Named("deliver"), Limited: logs.RateLimited(log.Named("deliver")),
	}
}

// core builds the deliverer of core NATS mode: the sink hands it each output with
// Deliver(msgID, payload), and it holds them in memory while it retries (lost if the
// process dies). observe, when not nil, sees every attempt (the metrics). The caller
// runs it with Run(ctx).
func (o *deliverOptions) core(log *zap.Logger, observe func(webhook.Attempt)) (*webhook.Deliverer, error) {
	d, err := webhook.New(o.options(log, observe))
	if err != nil {
		return nil, fmt.Errorf("--deliver-url: %w", err)
	}
	return d, nil
}

// jetStream builds the deliverer of JetStream mode over nc: a durable consumer per URL
// on the hang stream (stream, filtered on the output subjects), created here. Build it
// before the engine starts publishing: a URL's consumer, when new, starts with what is
// stored after it. The caller runs it with Run(ctx).
func (o *deliverOptions) jetStream(ctx context.Context, nc *nats.Conn, stream string, subjects []string, log *zap.Logger, observe func(webhook.Attempt)) (*webhook.JetStreamDeliverer, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("--deliver-url: %w", err)
	}
	d, err := webhook.NewJetStream(ctx, js, o.options(log, observe), webhook.JetStreamOptions{Stream: stream, Subjects: subjects})
	if err != nil {
		return nil, fmt.Errorf("--deliver-url: %w", err)
	}
	return d, nil
}
