package webhook

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Deliverer delivers the outputs the process hands it (core NATS mode). It holds each
// in memory, per URL, until it is delivered or given up: an output it holds when the
// process stops or dies is lost, counted in Stats.Held when Run returns. JetStream mode,
// with JetStreamDeliverer, loses nothing.
type Deliverer struct {
	o     Options
	eps   []*queue
	stats counters
	idle  chan struct{} // a queue held nothing more: Wait looks again
}

// queue holds the outputs for one URL: those ready for an attempt, in a channel the
// workers read, and those waiting for a retry, in a heap by due time that one
// scheduler moves to the channel when they are due.
type queue struct {
	*endpoint
	ready chan *item
	held  atomic.Int64 // ready, waiting and in flight; at most Options.Queue
	wake  chan struct{}
	idle  chan struct{} // the Deliverer's

	mu      sync.Mutex
	waiting itemHeap
}

// item is an output held for one URL.
type item struct {
	id       string
	body     []byte // shared by the URLs, never modified
	created  time.Time
	attempts int
	due      time.Time
}

// New returns a Deliverer. Deliver may be called before Run starts; outputs are
// attempted while Run runs.
func New(o Options) (*Deliverer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Deliverer{o: o, idle: make(chan struct{}, 1)}
	for _, u := range o.URLs {
		d.eps = append(d.eps, &queue{
			idle:     d.idle,
			endpoint: newEndpoint(u, &d.o, &d.stats),
			// held bounds what is in the channel, so a send to it never blocks.
			ready: make(chan *item, o.Queue),
			wake:  make(chan struct{}, 1),
		})
	}
	return d, nil
}

// Deliver hands an output to every URL: msgID is its Nats-Msg-Id, body its payload as
// published. It never blocks: a URL whose queue is full drops the output (counted and
// logged). Deliver copies body.
func (d *Deliverer) Deliver(msgID string, body []byte) {
	body = append([]byte(nil), body...)
	created := d.o.Clock.Now()
	for _, q := range d.eps {
		if q.held.Add(1) > int64(d.o.Queue) {
			q.held.Add(-1)
			d.stats.dropped.Add(1)
			q.limited.Warn("webhook delivery queue full, output dropped", zap.String("msg_id", msgID), zap.Int("queue", d.o.Queue))
			continue
		}
		q.ready <- &item{id: msgID, body: body, created: created}
	}
}

// Run attempts the outputs until ctx is done: Options.InFlight workers and a scheduler
// per URL. It returns nil once they have all exited; the outputs still held are lost.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range d.eps {
		for range d.o.InFlight {
			wg.Go(func() { q.work(ctx) })
		}
		wg.Go(func() { q.schedule(ctx) })
	}
	wg.Wait()
	if held := d.held(); held > 0 {
		d.o.Logger.Warn("webhook delivery stopped with outputs undelivered (core mode keeps them in memory only)", zap.Int64("outputs", held))
	}
	return nil
}

// Wait returns once every output handed to d has been delivered or given up, or when
// ctx is done (with its error): a shutdown in core mode waits with it, up to its
// deadline, for the outputs on their way, before it stops Run.
func (d *Deliverer) Wait(ctx context.Context) error {
	for d.held() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.idle:
		}
	}
	return nil
}

// Stats returns the deliverer's counters.
func (d *Deliverer) Stats() Stats {
	st := d.stats.stats()
	st.Held = d.held()
	return st
}

func (d *Deliverer) held() int64 {
	var n int64
	for _, q := range d.eps {
		n += q.held.Load()
	}
	return n
}

// work attempts the ready outputs.
func (q *queue) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-q.ready:
			a, why, ok := q.attempt(ctx, it.id, it.body, it.created, it.attempts)
			if !ok {
				return // stopped: the output stays held, and is lost with the process
			}
			if a.Outcome == Retried {
				q.retry(it, a)
			} else if q.held.Add(-1) == 0 {
				select {
				case q.idle <- struct{}{}:
				default:
				}
			}
			q.done(a, why)
		}
	}
}

// retry puts an output to wait for its next attempt.
func (q *queue) retry(it *item, a Attempt) {
	it.attempts = a.Attempts
	it.due = q.o.Clock.Now().Add(a.Wait)
	q.mu.Lock()
	heap.Push(&q.waiting, it)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default: // the scheduler will look anyway
	}
}

// schedule moves the waiting outputs to the ready channel when they are due, from one
// clock timer.
func (q *queue) schedule(ctx context.Context) {
	for {
		q.mu.Lock()
		now := q.o.Clock.Now()
		for len(q.waiting) > 0 && !q.waiting[0].due.After(now) {
			q.ready <- heap.Pop(&q.waiting).(*item) // never blocks: see held
		}
		var next time.Duration = -1
		if len(q.waiting) > 0 {
			next = q.waiting[0].due.Sub(now)
		}
		q.mu.Unlock()

		var fired <-chan time.Time
		var stop func() bool
		if next >= 0 {
			t := q.o.Clock.NewTimer(next)
			fired, stop = t.Chan(), t.Stop
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-fired:
		}
		if stop != nil {
			stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// itemHeap orders items by due time.
type itemHeap []*item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(*item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
