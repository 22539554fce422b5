package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// sessionState is where a partition's session stands.
type sessionState uint8

const (
	// stateIdle: none of the partition's calls is in the engine (not rebuilt yet, or a
	// rebuild failed); it does not count for the marks.
	stateIdle sessionState = iota
	// stateRebuilding: the calls are being rebuilt from the stream, under a hold; the
	// partition's evidence is when the rebuild began.
	stateRebuilding
	// stateLive: consumed live; the partition's evidence is its mark.
	stateLive
)

// session consumes one partition while this member owns it.
type session struct {
	g      *GroupSource
	p      int
	name   string // of the durable consumer
	filter string
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// Guarded by g.mu.
	cons     jetstream.Consumer
	state    sessionState
	since    time.Time // when the rebuild under way began
	mark     time.Time // the partition's evidence, while live
	epoch    uint64    // rebuilds so far: a proof asked before the latest one is void
	c0       uint64    // the consumer's delivered sequence as the latest rebuild began
	lastCons uint64    // the latest consumer sequence received in order since then
	behind   uint64    // lastCons when a proof first found the consumer ahead of it
	behindAt time.Time // when; zero while not behind
	waiting  bool      // the session waits for the next message
	resync   context.CancelFunc
	drainBy  time.Time // set on shutdown: drain what was pulled until then

	// seen: every message of the partition stored up to this stream sequence has been
	// received, or read by the latest rebuild.
	seen uint64
	// A proof waits (proving) for this consumer sequence to mark proofAt, unless the
	// stream's leader knew of a message of the filter not received yet (next, 0 for
	// none): then for it, to ask again.
	proving       bool
	pending, next uint64
	proofAt       time.Time
}

// Why consuming stopped.
type stopReason uint8

const (
	stopDone     stopReason = iota // ctx is done
	stopResync                     // the deliveries do not follow on: rebuild
	stopIterator                   // the iterator ended: consume anew
	stopFatal                      // the connection is closed for good
)

// run consumes the partition until ctx is done: it gets or makes its consumer, unpins
// it, rebuilds the calls, consumes live, and rebuilds again whenever the deliveries do
// not follow on.
func (ss *session) run(ctx context.Context) {
	defer close(ss.done)
	g := ss.g
	var it jetstream.MessagesContext
	defer func() {
		if it != nil {
			ss.drain(it)
		}
	}()
	first := true
	failures := 0
	for ctx.Err() == nil {
		if it == nil {
			cons, err := ss.consumer(ctx)
			if err == nil {
				if first {
					// A member gone keeps its pin until the pin timeout: take it now.
					g.unpin(ctx, ss.p)
					first = false
				}
				it, err = cons.Messages(ss.pullOptions()...)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				g.o.Limited.Warn("partition consumer: retrying", zap.Int("partition", ss.p), zap.String("consumer", ss.name), zap.Error(err))
				sleepCtx(ctx, backoff(failures))
				failures++
				continue
			}
			g.mu.Lock()
			ss.cons = cons
			g.mu.Unlock()
		}
		if err := ss.rebuild(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.o.Limited.Warn("partition rebuild: retrying", zap.Int("partition", ss.p), zap.Error(err))
			sleepCtx(ctx, backoff(failures))
			failures++
			continue
		}
		began := time.Now()
		switch ss.consume(ctx, it) {
		case stopDone:
			return
		case stopFatal:
			it.Stop()
			it = nil
			select {
			case g.fatal <- fmt.Errorf("%w: consume partition %d", ErrConnClosed, ss.p):
			default:
			}
			return
		case stopIterator:
			it.Stop()
			it = nil
		case stopResync:
			g.stats.resyncs.Add(1)
		}
		// Rebuilds that follow each other closely back off: another member may hold
		// the partition until the group agrees again.
		if time.Since(began) < stallAfter {
			sleepCtx(ctx, backoff(failures))
			failures++
		} else {
			failures = 0
		}
	}
}

// consumer gets the partition's durable consumer, or makes it to deliver what is stored
// from now on (its rebuild covers what was stored before), retrying while the server
// does not answer. One that exists takes the settings of this run.
func (ss *session) consumer(ctx context.Context) (jetstream.Consumer, error) {
	g := ss.g
	want := jetstream.ConsumerConfig{
		Durable:        ss.name,
		Description:    fmt.Sprintf("hangwatch group %s: partition %d", g.g.Name, ss.p),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        g.g.AckWait,
		MaxAckPending:  g.g.MaxAckPending,
		MaxDeliver:     -1,
		FilterSubject:  ss.filter,
		Replicas:       g.so.Replicas,
		PriorityGroups: []string{pinGroup},
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      g.g.PinnedTTL,
	}
	where := fmt.Sprintf("consumer %s on stream %s", ss.name, g.so.Name)
	var cons jetstream.Consumer
	err := retry(ctx, g.o.Limited, where, func(ctx context.Context) error {
		var err error
		cons, err = g.stream.Consumer(ctx, ss.name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons, err = g.stream.CreateConsumer(ctx, want)
		}
		return err
	})
	if err != nil {
		return nil, jsError(where, err)
	}
	have := cons.CachedInfo().Config
	if have.FilterSubject != want.FilterSubject || have.AckWait != want.AckWait || have.MaxAckPending != want.MaxAckPending ||
		have.PinnedTTL != want.PinnedTTL || have.PriorityPolicy != want.PriorityPolicy || !equalStrings(have.PriorityGroups, want.PriorityGroups) {
		upd := have // its deliver policy and start cannot change
		upd.FilterSubject, upd.FilterSubjects = want.FilterSubject, nil
		upd.AckWait, upd.MaxAckPending, upd.PinnedTTL = want.AckWait, want.MaxAckPending, want.PinnedTTL
		upd.PriorityPolicy, upd.PriorityGroups = want.PriorityPolicy, want.PriorityGroups
		if cons, err = g.stream.UpdateConsumer(ctx, upd); err != nil {
			return nil, jsError(where, err)
		}
	}
	return cons, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (ss *session) pullOptions() []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{
		jetstream.PullMaxMessages(groupPullBatch),
		jetstream.PullExpiry(groupPullExpiry),
		jetstream.PullHeartbeat(groupPullHeartbeat),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
		jetstream.PullPriorityGroup(pinGroup),
	}
}

// rebuild drops the partition's calls and makes them anew from the stream, under a
// hold: the consumer's delivered sequence first, then the latest message of each of the
// partition's subjects up to the stream's last sequence. Every delivery up to that
// sequence, to whichever member, was stored before the rebuild read the stream.
func (ss *session) rebuild(ctx context.Context) error {
	g := ss.g
	start := time.Now()
	g.mu.Lock()
	in := g.in
	in.Revoke(ss.p)
	ss.state, ss.since = stateRebuilding, g.o.Now()
	cons := ss.cons
	g.mu.Unlock()
	in.Hold()
	defer in.Release()
	fail := func(err error) error {
		g.mu.Lock()
		in.Revoke(ss.p) // what was rebuilt so far
		ss.state = stateIdle
		g.mu.Unlock()
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	ci, err := cons.Info(ictx)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("consumer info: %w", err))
	}
	at := g.o.Now()
	ictx, cancel = context.WithTimeout(ctx, infoTimeout)
	si, err := g.stream.Info(ictx)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("stream info: %w", err))
	}
	// The stored times are the server's: mark no later than its clock as it answered.
	if ts := si.TimeStamp; !ts.IsZero() && ts.Before(at) {
		at = ts
	}
	n, err := ss.replay(ctx, si.State.LastSeq, si.Config.MaxMsgsPerSubject)
	if err != nil {
		return fail(err)
	}
	g.stats.rebuilds.Add(1)
	g.mu.Lock()
	ss.state, ss.mark, ss.epoch = stateLive, at, ss.epoch+1
	ss.c0, ss.lastCons = ci.Delivered.Consumer, ci.Delivered.Consumer
	ss.seen = max(ss.seen, si.State.LastSeq) // the replay read every message up to it
	ss.proving, ss.behindAt = false, time.Time{}
	g.markLocked()
	g.mu.Unlock()
	g.o.Logger.Info("partition rebuilt", zap.Int("partition", ss.p), zap.Int("events", n),
		zap.Uint64("last_seq", si.State.LastSeq), zap.Uint64("delivered", ci.Delivered.Consumer), zap.Duration("took", time.Since(start)))
	return nil
}

// replay delivers the latest stored message of each of the partition's subjects (every
// one kept, when the stream keeps perSubject > 1: replayPolicy), in stream order, up to
// the first at or after sequence last, each received at its stored time. (A subject
// whose latest message came after last is read too: the one before it, which it
// replaced, is gone.)
func (ss *session) replay(ctx context.Context, last uint64, perSubject int64) (int, error) {
	g := ss.g
	if last == 0 {
		return 0, nil
	}
	oc, err := g.js.OrderedConsumer(ctx, g.so.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ss.filter},
		DeliverPolicy:  replayPolicy(perSubject),
	})
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	defer func() {
		it.Stop()
		if ci := oc.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			_ = g.js.DeleteConsumer(dctx, g.so.Name, ci.Name)
			cancel()
		}
	}()
	// With nothing to deliver, no message would come to say so.
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	ci, err := oc.Info(ictx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	if ci.NumPending == 0 && ci.Delivered.Consumer == 0 {
		return 0, nil
	}
	n := 0
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return n, fmt.Errorf("replay: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return n, fmt.Errorf("replay: %w", err)
		}
		if g.rejects.IsDeadLetter(msg.Subject(), msg.Headers()) {
			g.stats.replaySkipped.Add(1)
		} else {
			n++
			g.stats.replayed.Add(1)
			m := g.pool.Get().(*groupMsg)
			m.m, m.stored, m.part = msg, meta.Timestamp, ss.p
			g.in.Deliver(m)
		}
		if meta.Sequence.Stream >= last || meta.NumPending == 0 {
			break
		}
	}
	return n, nil
}

// consume hands the partition's live messages to the engine until ctx is done, the
// deliveries stop following on, or the iterator ends.
func (ss *session) consume(ctx context.Context, it jetstream.MessagesContext) stopReason {
	g := ss.g
	cctx, resync := context.WithCancel(ctx)
	defer resync()
	g.mu.Lock()
	ss.resync = resync
	g.mu.Unlock()
	for {
		g.mu.Lock()
		ss.waiting = true
		g.mu.Unlock()
		msg, err := it.Next(jetstream.NextContext(cctx))
		g.mu.Lock()
		ss.waiting = false
		g.mu.Unlock()
		if err == nil {
			if !ss.handle(msg) {
				return stopResync
			}
			continue
		}
		switch {
		case ctx.Err() != nil:
			return stopDone
		case cctx.Err() != nil:
			return stopResync
		}
		g.stats.consumeError.Add(1)
		switch {
		case g.conn.NATS().IsClosed():
			return stopFatal
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// The pull went with a server or a connection (the next one goes on), or with
			// the consumer, which no pull will hear of.
			ictx, cancel := context.WithTimeout(ctx, infoTimeout)
			_, ierr := ss.cons.Info(ictx)
			cancel()
			if errors.Is(ierr, jetstream.ErrConsumerNotFound) {
				g.o.Logger.Error("partition consumer missing: making it anew", zap.Int("partition", ss.p), zap.String("consumer", ss.name))
				return stopIterator
			}
			g.o.Limited.Warn("partition consumer: no heartbeat, pulling again", zap.Int("partition", ss.p))
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrBadRequest):
			g.o.Logger.Warn("partition consumer closed by the server: consuming anew", zap.Int("partition", ss.p), zap.Error(err))
			return stopIterator
		default:
			g.o.Limited.Warn("partition consumer", zap.Int("partition", ss.p), zap.Error(err))
		}
	}
}

// handle hands one live message to the engine. It reports false when the message does
// not follow on from the latest (a gap or a step back in the consumer's sequence): the
// partition must be rebuilt, and the message is left to its redelivery.
func (ss *session) handle(msg jetstream.Msg) bool {
	g := ss.g
	// A dead letter that came back in is terminated, not applied; but it was delivered
	// in its place, which the sequences below count (a proof may wait for it).
	dead := g.rejects.IsDeadLetter(msg.Subject(), msg.Headers())
	if dead {
		g.settled(msg.Term())
	}
	meta, err := msg.Metadata()
	if err != nil {
		return dead // no server sends a message without it
	}
	if meta.NumDelivered > 1 {
		g.stats.redelivered.Add(1)
	}
	cons := meta.Sequence.Consumer
	g.mu.Lock()
	c0, last := ss.c0, ss.lastCons
	g.mu.Unlock()
	var m *groupMsg
	if !dead {
		m = g.pool.Get().(*groupMsg)
		m.m, m.stored, m.part, m.live = msg, meta.Timestamp, ss.p, true
	}
	switch {
	case cons <= c0:
		// Delivered before the latest rebuild began, which covers it: applying it again
		// changes nothing.
		if !dead {
			g.in.Deliver(m)
		}
		return true
	case cons != last+1:
		g.stats.lost.Add(1)
		g.o.Limited.Warn("partition deliveries do not follow on: rebuilding it", zap.Int("partition", ss.p),
			zap.Uint64("expected", last+1), zap.Uint64("got", cons))
		if !dead {
			g.put(m)
		}
		return false
	}
	if !dead {
		g.in.Deliver(m)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// Following on from the latest rebuild: every message of the partition stored up to
	// this one has been received, or read by the rebuild.
	ss.lastCons, ss.seen = cons, max(ss.seen, meta.Sequence.Stream)
	if meta.NumDelivered == 1 && meta.Timestamp.After(ss.mark) {
		// Delivered in stored order: everything of the partition stored before it has
		// been delivered, here or before the rebuild.
		ss.mark = meta.Timestamp
	}
	ss.markIfProvedLocked()
	ss.behindAt = time.Time{}
	g.markLocked()
	return true
}

// markIfProvedLocked moves the mark to the time of the proof that waits once every
// delivery it counted has been received, and the stream's leader knew of no message of
// the filter not received yet. When it knew of one, the proof ends without a mark once
// that one is received, and another is asked for: messages may have been stored after
// it before the proof began. g.mu is held.
func (ss *session) markIfProvedLocked() {
	if !ss.proving || ss.lastCons < ss.pending {
		return
	}
	switch {
	case ss.next == 0:
		if ss.proofAt.After(ss.mark) {
			ss.mark = ss.proofAt
		}
	case ss.seen >= ss.next:
		ss.g.Probe()
	default:
		return
	}
	ss.proving = false
}

// prove asks the partition's consumer how far it delivered, then the stream's leader for
// a message of the partition's filter not received yet: nothing pending, every delivery
// the consumer counts received here, and no such message, is evidence as of when the
// question was asked. The stream's leader is asked because the consumer's answers from
// its own replica, which may lag behind what the stream stored and acknowledged
// (nextStored). A consumer that delivered what never arrives while this
// member waits has delivered it elsewhere, or lost it: the partition is rebuilt.
func (ss *session) prove(ctx context.Context) {
	g := ss.g
	g.stats.probes.Add(1)
	g.mu.Lock()
	cons, epoch, asked, from := ss.cons, ss.epoch, ss.lastCons, ss.seen+1
	g.mu.Unlock()
	t := g.o.Now()
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		g.stats.probeErrors.Add(1)
		return
	}
	if ts := info.TimeStamp; !ts.IsZero() && ts.Before(t) {
		t = ts
	}
	next, err := nextStored(ctx, g.conn.NATS(), g.so.Name, []string{ss.filter}, from)
	if err != nil {
		g.stats.probeErrors.Add(1)
		g.o.Limited.Warn("proof of a partition's input failed: no deadline fires until one succeeds", zap.Int("partition", ss.p), zap.Error(err))
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ss.state != stateLive || ss.epoch != epoch {
		return // rebuilt meanwhile
	}
	delivered := info.Delivered.Consumer
	switch {
	case info.NumPending > 0:
		return // a backlog is on its way: its deliveries are marks themselves
	case asked > delivered:
		// The consumer went back (its leader changed before it recorded deliveries):
		// what it delivers next may repeat or skip what was received.
		g.o.Limited.Warn("partition consumer went back: rebuilding it", zap.Int("partition", ss.p),
			zap.Uint64("received", asked), zap.Uint64("delivered", delivered))
		ss.interruptLocked()
		return
	}
	// Deliveries received while the questions were out only follow those counted.
	ss.proving, ss.pending, ss.next, ss.proofAt = true, delivered, next, t
	ss.markIfProvedLocked()
	if ss.lastCons >= delivered {
		// Received all the consumer counts: not behind. A proof that waits only for
		// what the stream stored waits for the consumer's replica to catch up, which
		// no rebuild would hasten.
		ss.behindAt = time.Time{}
		return
	}
	now := time.Now()
	if ss.behindAt.IsZero() || ss.behind != ss.lastCons {
		ss.behind, ss.behindAt = ss.lastCons, now
		return
	}
	if ss.waiting && now.Sub(ss.behindAt) >= stallAfter {
		g.stats.stalls.Add(1)
		g.o.Limited.Warn("partition delivered elsewhere: rebuilding it", zap.Int("partition", ss.p),
			zap.Uint64("received", ss.lastCons), zap.Uint64("delivered", delivered))
		ss.interruptLocked()
	}
}

// interruptLocked makes consume return for a rebuild; g.mu is held.
func (ss *session) interruptLocked() {
	ss.behindAt = time.Time{}
	if ss.resync != nil {
		ss.resync()
	}
}

// drain stops pulling and, on a shutdown, delivers what was pulled already until the
// drain deadline; when the partition is handed over, what was pulled is left to its
// redelivery.
func (ss *session) drain(it jetstream.MessagesContext) {
	g := ss.g
	g.mu.Lock()
	by, live := ss.drainBy, ss.state == stateLive
	g.mu.Unlock()
	if by.IsZero() || !live {
		it.Stop()
		return
	}
	drainIterator(it, by, ss.handle)
}
