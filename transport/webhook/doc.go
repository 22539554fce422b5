// Package webhook delivers hangwatch's outputs to HTTP endpoints (SPEC §3 "Webhook
// delivery"): each output is POSTed to every URL as its JSON payload, unchanged, signed
// per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), and retried
// with exponential backoff and jitter until a 2xx, a final refusal (a 4xx other than
// 408 and 429) or the output's max age.
//
// Two modes share the attempt and its policy. JetStreamDeliverer is driven by one
// durable consumer per URL on the hang stream, and acknowledges an output only once it
// is delivered or given up: nothing is lost across restarts or a kill -9, and an output
// may be delivered twice (a receiver deduplicates by webhook-id). Deliverer is for core
// NATS: the process hands it each output, which it holds in a bounded queue in memory
// while it retries; what it holds is lost if the process dies.
package webhook
