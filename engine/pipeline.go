package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// The input pipeline: Deliver takes a message (and its bytes from the in-flight budget)
// in the order the source hands it over, decode workers decode messages side by side,
// and one sequencer hands the decoded events to their shards in that same order, so
// that a call's events are applied in order and every mark comes after the messages
// delivered before it. A shard's queue never blocks the sequencer: what bounds the
// queues is the byte budget, taken at Deliver and given back once the shard has applied
// the event. So one busy call or one slow shard delays no other shard's deadlines.

// job is one item of the pipeline: a message to decode, or a mark, gap or control item
// that only keeps its place in the order.
type job struct {
	msg   Message
	bytes int
	ev    detector.Event
	err   error
	// received and wall are the message's Received in engine time and wall time; mark is
	// the evidence this item carries (a mark, or the latest mark before a message).
	received, wall int64
	stored         bool
	lasting        bool // the message is Lasting
	partition      int
	mark           int64
	ctl            control
	gapFrom        int64
	barrier        *barrier      // Sync's
	ready          chan struct{} // sent on once decoded
	// hash is that of the call id (hashID), taken once by the sequencer: the event's
	// shard, its key in the shard and its tomb.
	hash uint64
}

// barrier is Sync's item: each shard arrives once it has handled what came before; the
// last one closes done.
type barrier struct {
	left atomic.Int32
	done chan struct{}
}

func (b *barrier) arrive() {
	if b.left.Add(-1) == 0 {
		close(b.done)
	}
}

// control is what a job that is not a message asks of the shards.
type control uint8

const (
	ctlNone control = iota
	ctlMark
	ctlGap
	ctlHold
	ctlRelease
	ctlRevoke
)

// budget bounds the bytes in flight: taken before a message enters the pipeline, given
// back once its shard is done with it. A message larger than the whole budget is let
// in alone.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	max   int64
	used  int64
	waits int64 // times Deliver waited
	done  bool
}

func newBudget(max int64) *budget {
	b := &budget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// take waits until n bytes fit, and takes them; it returns false once the budget is
// closed.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.max && !b.done {
		b.waits++
		for b.used > 0 && b.used+n > b.max && !b.done {
			b.cond.Wait()
		}
	}
	b.used += n
	return !b.done
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// close lets every waiter through: the engine is stopping.
func (b *budget) close() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) load() (used, waits int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.waits
}

// pipeline is the engine's Intake.
type pipeline struct {
	e      *Engine
	budget *budget
	pool   sync.Pool

	mu     sync.Mutex // orders the jobs: held while a job enters both channels
	order  chan *job  // every job, in order, to the sequencer
	work   chan *job  // message jobs, to the decode workers
	mark   int64      // the latest mark, engine time
	closed bool       // the channels are closed: the source returned
	// queued counts the jobs in order that the sequencer has not yet handed on: raised
	// under mu as a job enters order, lowered by the sequencer once it is done with one.
	queued atomic.Int64

	// The marks broadcast to every shard: the latest sent (by the sequencer or by Mark),
	// and when the sequencer last sent one.
	sent   atomic.Int64
	sentAt int64
}

// markEvery is how often the sequencer hands a mark to every shard while messages keep
// coming (which carry it to their own shards): so a shard that gets none of them still
// sees the input catch up.
const markEvery = int64(500 * time.Microsecond)

// messageOverhead is what a message costs in flight beyond its bytes: the event and
// the job.
const messageOverhead = 512

func newPipeline(e *Engine, inflight int64, depth int) *pipeline {
	p := &pipeline{
		e:      e,
		budget: newBudget(inflight),
		order:  make(chan *job, depth),
		work:   make(chan *job, depth),
	}
	p.pool.New = func() any { return &job{ready: make(chan struct{}, 1)} }
	return p
}

var _ Intake = (*pipeline)(nil)

// Deliver implements Intake.
func (p *pipeline) Deliver(m Message) { p.deliver(m, false) }

// DeliverOrdered implements Intake.
func (p *pipeline) DeliverOrdered(m Message) { p.deliver(m, true) }

func (p *pipeline) deliver(m Message, ordered bool) {
	j := p.pool.Get().(*job)
	j.msg, j.bytes = m, len(m.Data())+messageOverhead
	if !p.budget.take(int64(j.bytes)) {
		// The engine stopped: the message is not applied, so not acknowledged.
		p.budget.give(int64(j.bytes))
		p.put(j)
		return
	}
	t, stored := m.Received()
	j.received, j.wall = p.e.mono.Of(t)
	j.stored, j.partition = stored, m.Partition()
	_, j.lasting = m.(Lasting)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.budget.give(int64(j.bytes))
		p.put(j)
		return
	}
	if ordered && j.received > p.mark {
		p.mark = j.received
	}
	j.mark = p.mark
	p.enqueue(j)
	p.work <- j
	p.mu.Unlock()
}

// enqueue puts j in the order; p.mu is held.
func (p *pipeline) enqueue(j *job) {
	p.queued.Add(1)
	p.order <- j
}

// Mark implements Intake. When the sequencer holds nothing, every job delivered
// before is in its shard's queue already: the mark goes straight to every shard, one
// hop less between a proof and the hangs it lets fire. Otherwise it takes its place in
// the order, behind what the sequencer has yet to hand on.
func (p *pipeline) Mark(t time.Time) {
	at, _ := p.e.mono.Of(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if at <= p.mark || p.closed {
		return
	}
	p.mark = at
	if p.queued.Load() == 0 {
		p.send(at)
		return
	}
	p.control(ctlMark, at, 0)
}

// Gap implements Intake.
func (p *pipeline) Gap(from, to time.Time) {
	f, _ := p.e.mono.Of(from)
	t, _ := p.e.mono.Of(to)
	p.mu.Lock()
	p.control(ctlGap, t, f)
	p.mu.Unlock()
}

// Hold implements Intake.
func (p *pipeline) Hold() { p.ordered(ctlHold, 0) }

// Release implements Intake.
func (p *pipeline) Release() { p.ordered(ctlRelease, 0) }

// Revoke implements Intake.
func (p *pipeline) Revoke(partition int) { p.ordered(ctlRevoke, int64(partition)) }

func (p *pipeline) ordered(c control, v int64) {
	p.mu.Lock()
	p.control(c, v, 0)
	p.mu.Unlock()
}

// control queues a control job; p.mu is held. Once the source has returned, nothing is.
func (p *pipeline) control(c control, v, from int64) {
	if p.closed {
		return
	}
	j := p.pool.Get().(*job)
	j.ctl, j.mark, j.gapFrom = c, v, from
	if c == ctlRevoke {
		j.partition = int(v)
	}
	j.ready <- struct{}{}
	p.enqueue(j)
}

func (p *pipeline) put(j *job) {
	ev := j.ev
	ev.Reset()
	*j = job{ev: ev, ready: j.ready}
	p.pool.Put(j)
}

// decode is a decode worker: it runs until work is closed.
func (p *pipeline) decode() {
	for j := range p.work {
		j.err = p.e.decoder.Decode(&j.ev, j.msg.Data())
		if j.err == nil {
			j.ev.Received, j.ev.Wall, j.ev.Stored = j.received, j.wall, j.stored
		}
		j.ready <- struct{}{}
	}
}

// sequence hands the jobs to the shards in order until order is closed; then it closes
// every shard's queue.
func (p *pipeline) sequence() {
	e := p.e
	var seen int64 // the latest mark met in the order
	for j := range p.order {
		<-j.ready
		switch {
		case j.ctl == ctlMark:
			// The messages queued behind carry it to their shards; every shard gets it once
			// the order is empty, or markEvery after the last time (below).
			seen = max(seen, j.mark)
			p.put(j)
		case j.ctl == ctlGap:
			e.gaps.add(j.gapFrom, j.mark)
			p.put(j)
		case j.barrier != nil:
			for _, s := range e.shards {
				s.q.push(item{barrier: j.barrier, mark: j.mark})
			}
			p.raiseSent(j.mark)
			p.put(j)
		case j.ctl != ctlNone:
			c, part := j.ctl, j.partition
			for _, s := range e.shards {
				s.q.push(item{ctl: c, partition: part})
			}
			p.put(j)
		case j.err != nil:
			e.stats.bad.Add(1)
			j.msg.Reject(j.err)
			p.budget.give(int64(j.bytes))
			p.put(j)
		default:
			e.stats.typ[j.ev.Type].Add(1)
			seen = max(seen, j.mark)
			j.hash = hashID(e.seed, j.ev.CallID)
			e.shardAt(j.hash).q.push(item{job: j, mark: j.mark})
		}
		// Whatever the job was, a mark not yet broadcast reaches every shard once nothing
		// waits behind it, or markEvery after the last broadcast: a shard that gets no
		// message must not wait for more input to see the input catch up.
		if seen > p.sent.Load() && (len(p.order) == 0 || e.mono.Now()-p.sentAt >= markEvery) {
			p.send(seen)
			p.sentAt = e.mono.Now()
		}
		p.queued.Add(-1)
	}
	if p.mark > p.sent.Load() {
		p.send(p.mark)
	}
}

// send hands a mark to every shard. A shard takes the latest mark it has seen, so one
// that comes after a later one (the sequencer's and Mark's may cross) changes nothing.
func (p *pipeline) send(mark int64) {
	for _, s := range p.e.shards {
		s.q.push(item{mark: mark})
	}
	p.raiseSent(mark)
}

// raiseSent records that every shard has been sent mark.
func (p *pipeline) raiseSent(mark int64) {
	for {
		sent := p.sent.Load()
		if mark <= sent || p.sent.CompareAndSwap(sent, mark) {
			return
		}
	}
}

// finish gives a message job back once its shard is done with it.
func (p *pipeline) finish(j *job) {
	j.msg.Done()
	p.budget.give(int64(j.bytes))
	p.put(j)
}

// run starts the workers and the sequencer, and returns once ctx is done and they have
// stopped: the source has returned (nothing is delivered any more), so the channels
// close, and every job delivered before is handed to the shards.
func (p *pipeline) run(workers int, sourceDone <-chan struct{}) {
	var wg, dec sync.WaitGroup
	for range workers {
		dec.Go(p.decode)
	}
	wg.Go(p.sequence)
	<-sourceDone
	p.mu.Lock()
	p.closed = true
	close(p.work)
	close(p.order)
	p.mu.Unlock()
	dec.Wait()
	wg.Wait()
}
