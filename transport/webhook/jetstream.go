package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Defaults of JetStreamOptions.
const (
	DefaultDurablePrefix = "hangwatch-deliver-"
	DefaultMaxAckPending = 1000
	DefaultHeartbeat     = 5 * time.Second
)

// JetStreamOptions say where JetStreamDeliverer reads the outputs.
type JetStreamOptions struct {
	// Stream is the hang stream, which the engine's sink stores the outputs in.
	Stream string
	// Subjects filter the stream (the wildcards of the output subjects); none: all of it.
	Subjects []string
	// DurablePrefix starts the name of each URL's durable consumer, which ends with a
	// hash of the URL (default DefaultDurablePrefix).
	DurablePrefix string
	// AckWait is how long an output handed to this process may go without an answer
	// before the server hands it out again: after a crash, the longest an output in
	// flight waits (default 3 × Timeout, at least 10 s). Each attempt starts by
	// resetting it.
	AckWait time.Duration
	// MaxAckPending bounds the outputs of one URL out for delivery at once, those
	// waiting for a retry included (default DefaultMaxAckPending); the rest wait in the
	// stream.
	MaxAckPending int
	// Heartbeat is how often the server says a waiting pull request is alive (default
	// DefaultHeartbeat). Two missed make the deliverer ask whether its consumer still
	// exists (twice, a heartbeat apart): one deleted before a pull request reached it
	// answers nothing, ever.
	Heartbeat time.Duration
}

// JetStreamDeliverer delivers the outputs stored in the hang stream: a durable pull
// consumer per URL, which it acknowledges once an output is delivered, or terminates
// once it is given up. A failed attempt is negatively acknowledged with the backoff as
// its delay, so the server holds the retries: they survive a restart, use no goroutine
// or memory here while they wait, and another hangwatch sharing the durable (a group)
// may make them. Each URL's consumer starts with the outputs stored after it is first
// created, and resumes where it stopped.
//
// Why NakWithDelay rather than retrying in the process and extending AckWait with
// InProgress: a retry held in the process needs a worker, or a timer and a heartbeat
// of InProgress every AckWait, for up to MaxAge, and a crash still hands the output
// back only after AckWait. With NakWithDelay a worker is busy only during an attempt,
// and the stream remains the one place an undelivered output is.
type JetStreamDeliverer struct {
	o     Options
	jo    JetStreamOptions
	eps   []*jsEndpoint
	stats counters
}

type jsEndpoint struct {
	*endpoint
	consumer jetstream.Consumer
}

// DurableName returns the name of the durable consumer of a URL: prefix and the first
// 16 hex digits of the SHA-256 of the URL, so that the name is stable, fits NATS's
// rules for names, and shows no credential the URL may hold.
func DurableName(prefix, url string) string {
	sum := sha256.Sum256([]byte(url))
	return prefix + hex.EncodeToString(sum[:8])
}

// NewJetStream creates or updates the durable consumer of each URL on the stream and
// returns the deliverer. Create it before the engine publishes, so that the first
// outputs are delivered too: a new consumer starts with what is stored after it.
func NewJetStream(ctx context.Context, js jetstream.JetStream, o Options, jo JetStreamOptions) (*JetStreamDeliverer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if jo.Stream == "" {
		return nil, fmt.Errorf("%w: no stream", ErrOptions)
	}
	setDefault(&jo.DurablePrefix, DefaultDurablePrefix)
	setDefault(&jo.AckWait, max(3*o.Timeout, 10*time.Second))
	setDefault(&jo.MaxAckPending, DefaultMaxAckPending)
	setDefault(&jo.Heartbeat, DefaultHeartbeat)
	if jo.Heartbeat < 500*time.Millisecond || jo.Heartbeat > 15*time.Second {
		return nil, fmt.Errorf("%w: heartbeat %v must be within 500ms-15s", ErrOptions, jo.Heartbeat)
	}
	if jo.AckWait <= o.Timeout {
		return nil, fmt.Errorf("%w: ack wait %v must be above the timeout %v", ErrOptions, jo.AckWait, o.Timeout)
	}
	d := &JetStreamDeliverer{o: o, jo: jo}
	for _, u := range o.URLs {
		ep := newEndpoint(u, &d.o, &d.stats)
		cfg := jetstream.ConsumerConfig{
			Durable:       DurableName(jo.DurablePrefix, u),
			Description:   "hangwatch webhook delivery to " + ep.redacted,
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       jo.AckWait,
			MaxDeliver:    -1, // MaxAge decides
			MaxAckPending: jo.MaxAckPending,
		}
		if len(jo.Subjects) == 1 {
			cfg.FilterSubject = jo.Subjects[0]
		} else {
			cfg.FilterSubjects = jo.Subjects
		}
		c, err := js.CreateOrUpdateConsumer(ctx, jo.Stream, cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: consumer %s on stream %s: %w", ErrOptions, cfg.Durable, jo.Stream, err)
		}
		ep.log.Info("webhook delivery consumer ready", zap.String("consumer", cfg.Durable), zap.String("stream", jo.Stream))
		d.eps = append(d.eps, &jsEndpoint{endpoint: ep, consumer: c})
	}
	return d, nil
}

// Run delivers until ctx is done, with Options.InFlight workers per URL, and returns
// nil once they have exited. An attempt that ctx cuts short is not acknowledged: the
// server hands the output out again after AckWait. It returns an error if the
// connection to NATS closes under it.
func (d *JetStreamDeliverer) Run(ctx context.Context) error {
	its := make([]jetstream.MessagesContext, 0, len(d.eps))
	for _, ep := range d.eps {
		it, err := ep.consumer.Messages(jetstream.PullMaxMessages(d.o.InFlight),
			jetstream.PullHeartbeat(d.jo.Heartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
		if err != nil {
			for _, it := range its {
				it.Stop()
			}
			return fmt.Errorf("webhook delivery to %s: %w", ep.redacted, err)
		}
		its = append(its, it)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(d.eps))
	for i, ep := range d.eps {
		it := its[i]
		var workers sync.WaitGroup
		ended := make(chan error, d.o.InFlight)
		for range d.o.InFlight {
			workers.Go(func() { ended <- ep.work(ctx, it, d.jo.Heartbeat) })
		}
		stopped := make(chan struct{})
		wg.Go(func() {
			select {
			case <-ctx.Done():
			case <-stopped: // the workers ended on their own
			}
			it.Stop()
		})
		wg.Go(func() {
			workers.Wait()
			close(stopped)
			close(ended)
			if ctx.Err() != nil {
				return
			}
			// The consumer stopped under us: deleted, or the connection closed.
			var err error = jetstream.ErrMsgIteratorClosed
			for e := range ended {
				if e != nil {
					err = e
				}
			}
			errs <- fmt.Errorf("webhook delivery to %s: consumer stopped: %w", ep.redacted, err)
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Stats returns the deliverer's counters.
func (d *JetStreamDeliverer) Stats() Stats { return d.stats.stats() }

// work takes the outputs from it until it stops, and returns the error that stopped
// it: a terminal one (the consumer was deleted), or ErrMsgIteratorClosed.
func (ep *jsEndpoint) work(ctx context.Context, it jetstream.MessagesContext, heartbeat time.Duration) error {
	var last error
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if last == nil {
					last = err
				}
				return last
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// A consumer deleted under a waiting pull request is reported by the
				// server (409, a terminal error); one deleted before the request
				// reached it leaves the request unanswered, and the iterator would ask
				// again forever. Ask whether it exists; if it does, the iterator asks
				// again on the next Next.
				if ep.gone(ctx, heartbeat) {
					last = fmt.Errorf("%w: %w", err, jetstream.ErrConsumerNotFound)
					it.Stop()
				}
				continue
			}
			// A terminal error stops the iterator, and the next call says so; the
			// iterator goes on after other errors (reconnections are its own).
			last = err
			ep.limited.Warn("webhook delivery consumer", zap.Error(err))
			continue
		}
		ep.deliver(ctx, msg)
	}
}

// gone says whether the server answers twice, wait apart, that the consumer does not
// exist (once could be a cluster's meta layer catching up after a restart); a question
// not answered within wait (the server or the connection is down) is not an answer.
func (ep *jsEndpoint) gone(ctx context.Context, wait time.Duration) bool {
	notFound := func() bool {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := ep.consumer.Info(ctx)
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	}
	if !notFound() {
		return false
	}
	select { // the server's time, as the heartbeats are
	case <-time.After(wait):
	case <-ctx.Done():
		return false
	}
	return notFound()
}

// deliver makes one attempt at an output and settles it with the server.
func (ep *jsEndpoint) deliver(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		ep.limited.Error("webhook delivery: message without metadata", zap.Error(err))
		_ = msg.Term()
		return
	}
	id := msg.Headers().Get(nats.MsgIdHdr)
	if id == "" {
		// Not an output of hangwatch's sink: its place in the stream names it.
		id = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	// The attempt may take a while after the message came: the server's clock for it
	// starts again now.
	_ = msg.InProgress()
	a, why, ok := ep.attempt(ctx, id, msg.Data(), md.Timestamp, int(md.NumDelivered)-1)
	if !ok {
		return // stopping: no answer, the server hands it out again after AckWait
	}
	switch a.Outcome {
	case Delivered:
		err = msg.Ack()
	case GaveUp:
		err = msg.TermWithReason("webhook delivery given up")
	case Retried:
		err = msg.NakWithDelay(a.Wait)
	}
	if err != nil {
		// The server hands it out again after AckWait: at worst a duplicate.
		ep.limited.Warn("webhook delivery: settle with the stream", zap.String("msg_id", id), zap.Stringer("outcome", a.Outcome), zap.Error(err))
	}
	ep.done(a, why)
}
