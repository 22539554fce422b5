package transport

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// healthEvery is how often StreamHealth asks after the streams, and how long it waits
// for an answer.
const healthEvery = time.Second

// StreamHealth watches that the streams hangwatch needs answer and have a leader: while
// one does not, nothing it needs can be read or stored, and readiness says so (SPEC §4).
type StreamHealth struct {
	js    jetstream.JetStream
	names []string

	mu  sync.Mutex
	why string // empty while healthy
}

// NewStreamHealth returns a watch over the streams names, through c. Until Run has
// asked, they count as healthy: they were just found or made.
func NewStreamHealth(c *Conn, names ...string) (*StreamHealth, error) {
	js, err := jetstream.New(c.NATS())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	return &StreamHealth{js: js, names: names}, nil
}

// Run asks after the streams every second until ctx is done.
func (h *StreamHealth) Run(ctx context.Context) error {
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	for {
		why := ""
		for _, name := range h.names {
			if why = h.check(ctx, name); why != "" {
				break
			}
		}
		h.mu.Lock()
		h.why = why
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// check returns why the stream name is not healthy, or "".
func (h *StreamHealth) check(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(ctx, healthEvery)
	defer cancel()
	st, err := h.js.Stream(ctx, name)
	if err != nil {
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			return "" // stopping
		}
		return fmt.Sprintf("stream %s does not answer: %v", name, err)
	}
	if cl := st.CachedInfo().Cluster; cl != nil && cl.Leader == "" {
		return fmt.Sprintf("stream %s has no leader", name)
	}
	return ""
}

// Healthy reports whether every stream answered with a leader when last asked; if not,
// it says why.
func (h *StreamHealth) Healthy() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why == "", h.why
}
