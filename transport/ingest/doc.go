// Package ingest is hangwatch's HTTP ingest (SPEC §1 "HTTP ingest"): a server whose
// POST /events takes one event per request, in either dialect, as voice platforms
// deliver server messages to a webhook URL, and publishes it unchanged to NATS, where
// the engine consumes it like any other event. It answers 202 only once NATS has the
// event (core NATS: published and a round trip to the server completed; JetStream: the
// stream's ack), so that a platform that retries on failure loses nothing.
package ingest
