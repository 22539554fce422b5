package engine

import "sync"

// item is what a shard receives, in order: a decoded message, a mark, a control or a
// barrier. Every item may raise the shard's evidence (mark).
type item struct {
	job       *job
	mark      int64
	ctl       control
	partition int
	barrier   *barrier // Sync's: arrive once handled
	packed    *packJob // a copy back from the packer
}

// queue is a shard's inbox: unbounded in items (the pipeline's byte budget bounds what
// is in flight), so that the sequencer never waits for one shard while others starve.
type queue struct {
	mu     sync.Mutex
	items  []item
	closed bool
	wake   chan struct{} // holds a value while items wait or the queue closed
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

func (q *queue) push(it item) {
	q.add(it)
	q.signal()
}

// add queues it without waking the shard: it is taken with the next thing that does.
func (q *queue) add(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// keepItems is the most items a buffer handed back to the queue keeps room for: the room
// a burst took (200 KB for 5,000 items) is let go with it, not held for good.
const keepItems = 256

// take returns what waits, handing buf (emptied) to the queue for the next items, unless
// it is larger than keepItems; closed says the queue was closed: nothing more will come
// after these.
func (q *queue) take(buf []item) (items []item, closed bool) {
	clear(buf)
	if cap(buf) > keepItems {
		buf = nil
	}
	q.mu.Lock()
	items, q.items = q.items, buf[:0]
	closed = q.closed
	q.mu.Unlock()
	return items, closed
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// len returns how many items wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
