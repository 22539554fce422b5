package engine

import (
	"math"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// shard owns a share of the calls. Only its goroutine touches its calls, tombs and
// scheduler.
type shard struct {
	e      *Engine
	q      *queue
	exited chan struct{} // closed when run returns
	sched  *clock.Scheduler
	calls  index    // call id → slot
	slots  slots    // a slot is also the call's scheduler id
	free   []uint32 // slots to reuse
	tombs  *tombs
	fire   func(id uint32, at int64)
	stats  counters

	// evidence is how far the input has caught up, as far as this shard knows: every
	// message accepted before it has been applied here. No deadline after it fires.
	evidence int64
	// requested is the latest time a mark was asked for: the proof asked for then covers
	// every deadline up to it, so a deadline due by then asks once, and a later one asks
	// again at once, without waiting for that proof to come back. The shard and its
	// timer's goroutine (onTimer) both ask.
	requested atomic.Int64
	// held counts the holds in force (replays, takeovers): no deadline fires meanwhile.
	held int
	// overdue says that a deadline may be due and covered by the evidence without the
	// evidence having moved: one that a release lets fire, or one that an event moved
	// back into the past. It fires before the next item is applied.
	overdue bool

	// now is the time the ticks of the advance under way measure to.
	now int64

	// packs are the copies kept for outputs to pack (Engine.packAfter), oldest first:
	// each is still due when its slot's kept is the same. kept numbers the copies.
	packs []pack
	kept  uint32
	// packing counts the copies handed to the packer and not yet back; the Sync
	// barriers in waiting arrive once none is.
	packing int
	waiting []*barrier
}

// pack is a copy a call keeps, to pack at due unless the call has let it go.
type pack struct {
	due  int64
	seq  uint32
	slot uint32
	view bool // the copy is the received payload itself
}

// slot is a call held by a shard. Its fields are laid out so that it takes 96 bytes,
// 32 beside the call's own state: a shard holds a million of them.
type slot struct {
	id   string
	team *team
	// kept is the number (shard.kept) of the copy the call keeps for its outputs. A
	// number comes round again after four billion copies, long after the pack it names
	// is done.
	kept uint32
	// partition is that of the call's messages (Message.Partition), -1 for none.
	partition int16
	// rebuilt says the call was made from stored state (under a hold), until it is
	// next idle: its outputs may have gone out before.
	rebuilt bool
	// shape follows whether the call's histories hold anything detection reads (SPEC
	// §5): shapeRecognised once one does; before that, the number of those that did not,
	// up to shapeReported once counted.
	shape uint8
	call  detector.Call
}

const (
	shapeRecognised = 254
	shapeReported   = 255
)

func newShard(e *Engine) *shard {
	s := &shard{
		e:      e,
		q:      newQueue(),
		exited: make(chan struct{}),
		sched:  clock.NewSchedulerOn(e.mono, 0),
		calls:  newIndex(),
		tombs:  newTombs(int64(e.maxEnded), len(e.shards), &e.tombs),
	}
	s.fire = s.tick
	s.sched.OnFire(s.onTimer)
	return s
}

// onTimer runs on the shard's timer goroutine as the timer fires for a deadline (with
// the machine's clock): the proof that the input has caught up with it is asked for at
// once, not once the shard (in the middle of a batch, or waiting for a CPU) has woken up
// and looked. Whichever of the two looks first asks; the other finds it asked. It reads
// only atomics.
func (s *shard) onTimer() {
	now := s.e.mono.Now()
	if now <= s.stats.evidence.Load() {
		return
	}
	s.ask(now)
}

// ask asks the source for a mark at now, unless a mark at or after now was asked for
// already.
func (s *shard) ask(now int64) {
	for {
		r := s.requested.Load()
		if r >= now {
			return
		}
		if s.requested.CompareAndSwap(r, now) {
			s.e.probe()
			return
		}
	}
}

func (s *shard) run() {
	defer close(s.exited)
	defer s.sched.Stop()
	var buf []item
	for {
		select {
		case <-s.q.wake:
		case <-s.sched.C():
		}
		// A deadline due now is asked about before the batch is applied: the proof's round
		// trip then runs beside it.
		s.askIfDue()
		items, closed := s.q.take(buf)
		for i := range items {
			s.handle(&items[i])
			if i%askEvery == askEvery-1 {
				s.askIfDue()
			}
		}
		buf = items
		if closed && s.q.len() == 0 {
			// The source has returned and every item it delivered is applied: publish what
			// is due, as far as the evidence goes. Copies with the packer stay unpacked.
			s.settle()
			s.arriveAll()
			return
		}
		// Packing waits for the deadlines: what is due fires, or its proof is asked for,
		// before the copies are compressed.
		s.settle()
		s.packDue()
	}
}

// askEvery is how many items of a batch a shard applies between two looks at the clock
// for a deadline due without the evidence to fire it.
const askEvery = 32

// askIfDue asks the source for a proof, in the middle of a batch, once a deadline is due
// by the clock and no mark covers it: a burst of items would otherwise hold the request
// back until the whole batch is applied, and the proof's round trip after it.
func (s *shard) askIfDue() {
	if s.held > 0 {
		return
	}
	if now := s.e.mono.Now(); s.needsProof(now) {
		s.ask(now)
	}
}

// needsProof reports whether a deadline due by now is covered neither by the evidence
// nor by the proof asked for last (which covers the deadlines up to requested). A
// deadline past what the wheel can see exactly (NextAfter) waits for that proof.
func (s *shard) needsProof(now int64) bool {
	if !s.sched.Due(now) {
		return false
	}
	requested := s.requested.Load()
	if requested <= s.evidence {
		return true
	}
	at, ok := s.sched.NextAfter(requested)
	return ok && at <= now
}

// handle applies one item, after the deadlines its mark lets fire.
func (s *shard) handle(it *item) {
	if it.mark > s.evidence {
		s.evidence = it.mark
		s.stats.evidence.Store(s.evidence)
		s.overdue = true
	}
	// A deadline covered by the evidence fires before the message that came after it;
	// but that of a stored message's own call is left to the detector, which can tell
	// whether the message shows it answered in time (see detector.Call.Apply).
	if s.overdue && s.held == 0 {
		s.overdue = false
		if next, ok := s.sched.Next(); ok && next <= s.evidence {
			own, ownAt, held := s.holdOwn(it.job)
			s.advance()
			if held {
				s.sched.Set(own, ownAt)
			}
		}
	}
	switch {
	case it.job != nil:
		s.apply(it.job)
	case it.packed != nil:
		s.packed(it.packed)
	case it.barrier != nil:
		s.settle()
		s.packDue()
		if s.packing > 0 {
			s.waiting = append(s.waiting, it.barrier)
		} else {
			it.barrier.arrive()
		}
	case it.ctl == ctlHold:
		s.held++
	case it.ctl == ctlRelease:
		s.held = max(s.held-1, 0)
		s.overdue = true
	case it.ctl == ctlRevoke:
		s.revoke(partitionOf(it.partition))
	}
}

// holdOwn takes the deadline of a stored message's armed call out of the wheel, if it is
// covered by the evidence; the caller puts it back.
func (s *shard) holdOwn(j *job) (id uint32, at int64, ok bool) {
	if j == nil || !j.stored {
		return 0, 0, false
	}
	if id, ok = s.calls.get(j.hash, j.ev.CallID, &s.slots); !ok {
		return 0, 0, false
	}
	// Only a deadline: a call that is not armed wakes for the end of its TTL, which
	// passed before the message came (it starts a new life of the call).
	if s.slots.at(id).call.State() != detector.StateArmed {
		return 0, 0, false
	}
	if at, ok = s.sched.Deadline(id); !ok || at > s.evidence {
		return 0, 0, false
	}
	s.sched.Cancel(id)
	return id, at, true
}

// settle fires what the evidence lets fire by now, then sets the timer to the next
// deadline; when that deadline is due already but no mark covers it, it asks the source
// for a mark, and sets the timer to the first deadline that mark will not cover.
func (s *shard) settle() {
	if s.held > 0 {
		s.sched.Stop()
		return
	}
	now := s.advance()
	if !s.sched.Due(now) {
		s.sched.Rearm()
		return
	}
	if s.needsProof(now) {
		s.ask(now)
	}
	// The timer wakes for the first deadline that the proof asked for does not cover:
	// it asks for its own proof then, beside the one in flight.
	s.sched.RearmAfter(s.requested.Load())
}

// advance ticks every call whose wake time is covered by the evidence and the clock,
// and returns the clock's now.
func (s *shard) advance() int64 {
	now := s.e.mono.Now()
	if s.held > 0 {
		return now
	}
	s.now = now
	// The wheel starts at the engine's start, and an Advance to an earlier time fires
	// what is due by the wheel's own time: until the evidence has passed the start (a
	// backlog stored before it, marked at its stored times), nothing is advanced, or a
	// deadline the evidence does not cover would fire, be found not due, be set again
	// at the same time and fire again, forever.
	if t := min(s.evidence, now); t >= s.sched.Now() {
		s.sched.Advance(t, s.fire)
	}
	return now
}

func (s *shard) apply(j *job) {
	e := s.e
	ev := &j.ev
	defer e.pipe.finish(j)
	now := max(e.mono.Now(), ev.Received)
	outcome := s.applyEvent(j, ev, now)
	s.stats.outcomes[ev.Type][outcome].Add(1)
}

// applyEvent applies a decoded event and says what came of it.
func (s *shard) applyEvent(j *job, ev *detector.Event, now int64) Outcome {
	e := s.e
	id, ok := s.calls.get(j.hash, ev.CallID, &s.slots)
	if !ok {
		h := j.hash
		switch {
		case s.tombs.has(h, now, int64(e.cfg.CallTTL)):
			s.stats.ignored.Add(1)
			return OutcomeIgnored
		case ev.Ends():
			// An end for a call never seen (or forgotten): remember it, nothing else.
			s.bury(h, now)
			s.stats.ignored.Add(1)
			return OutcomeIgnored
		case ev.Type == detector.TypeOutput:
			s.stats.ignored.Add(1)
			return OutcomeIgnored
		}
		if e.thresholds.For(ev.TeamID, ev.AssistantID).Disabled {
			s.stats.unwatched.Add(1)
			return OutcomeUnwatched
		}
		t, why := e.limits.admit(ev.TeamID)
		if why != admitted {
			s.stats.refused[why].Add(1)
			e.limited.Warn("call refused: "+refusalNames[why], zap.String("call_id", ev.CallID), zap.String("team_id", ev.TeamID),
				zap.Int64("max_calls", e.limits.max), zap.Int64("max_calls_per_team", e.limits.perTeam))
			return OutcomeRefused
		}
		id = s.alloc(clone(ev.CallID), h, t, partitionOf(j.partition)) // the event's id may alias its payload
		s.slots.at(id).rebuilt = s.held > 0
	}
	cfg := e.thresholds.For(ev.TeamID, ev.AssistantID)
	ev.Held = s.held > 0
	c := &s.slots.at(id).call
	before, retained := c.State(), c.Retained()
	s.shape(s.slots.at(id), ev)
	st := c.Apply(cfg, ev, now)
	s.stats.events.Add(1)
	outcome := OutcomeApplied
	if st.Ignored {
		s.stats.ignored.Add(1)
		outcome = OutcomeIgnored
	}
	if st.Kept {
		s.keep(id, c, ev, st.Tail, retained, now, j.lasting)
	}
	s.account(before, c.State(), retained, c.Retained())
	s.step(id, st)
	return outcome
}

// keep replaces the payloads the call now keeps from ev with compact copies: of what
// its outputs will carry, or, past the retained-bytes budget, of the tail of its
// history only (SPEC §2, Bounds), so that the received message can be freed. own is
// what the call kept before ev, which the new copies replace. The received bytes of a
// Lasting message are kept as they are instead, until the packer's copy replaces them
// (they count whole against the budget meanwhile).
func (s *shard) keep(id uint32, c *detector.Call, ev *detector.Event, tail int32, own int, now int64, lasting bool) {
	snap, latest := c.Kept()
	r, ok := ev.Payload.(Retainer)
	if !ok {
		return
	}
	var keptSnap, keptLatest detector.Payload = snap, latest
	view := false // keptSnap is the received payload itself
	if snap == ev.Payload {
		from := int32(-1)
		if s.e.retained.Load()-int64(own)+int64(ev.Payload.Len()) > s.e.maxRetained {
			from = tail // counted in publish, by the outputs that leave messages out
		}
		if from < 0 && lasting && s.e.packAfter > 0 {
			_, view = ev.Payload.(Packer)
		}
		if !view {
			keptSnap = r.Retain(from)
		}
		if s.e.packAfter == 0 {
			if p, ok := keptSnap.(Packer); ok {
				if q := p.Pack(); q != nil {
					keptSnap = q
				}
			}
		}
	}
	switch {
	case latest == ev.Payload && snap == ev.Payload:
		keptLatest = keptSnap
	case latest == ev.Payload:
		keptLatest = r.RetainCall()
	}
	c.Keep(keptSnap, keptLatest)
	if (keptSnap != snap || view) && s.e.packAfter > 0 {
		s.kept++
		sl := s.slots.at(id)
		sl.kept = s.kept
		s.packs = append(s.packs, pack{due: now + s.e.packAfter, seq: s.kept, slot: id, view: view})
	}
}

// Packer is a payload whose copy can be packed (package wire's): compressed, what the
// engine keeps while a call is armed or hung.
type Packer interface {
	// Pack returns the packed copy, or nil when packing is not worth it.
	Pack() detector.Payload
}

// packDue hands the copies due by now that calls still keep to the packer, as many as
// it has room for.
func (s *shard) packDue() {
	if len(s.packs) == 0 {
		return
	}
	now := s.e.mono.Now()
	done := 0
	for ; done < len(s.packs); done++ {
		pk := s.packs[done]
		if pk.due > now {
			break
		}
		sl := s.slots.at(pk.slot)
		if sl.kept != pk.seq {
			continue // let go, or replaced by a later copy
		}
		snap, _ := sl.call.Kept()
		if _, ok := snap.(Packer); !ok {
			continue
		}
		select {
		case s.e.packs <- &packJob{s: s, slot: pk.slot, seq: pk.seq, snap: snap, view: pk.view}:
			s.packing++
			continue
		default:
		}
		break // the packer is busy: the rest waits for the next round
	}
	s.packs = s.packs[done:]
	if len(s.packs) == 0 {
		s.packs = s.packs[:0:0] // let the array go
	}
}

// Retainer is a payload that can copy what an output carries (package wire's): the
// engine keeps the copy, so that the received message can be freed.
type Retainer interface {
	// Retain copies what an output carries, the history from index from on (all of it
	// when from < 0).
	Retain(from int32) detector.Payload
	// RetainCall copies the call object only.
	RetainCall() detector.Payload
}

// Omitter is a retained copy that can tell how many leading messages of the history it
// left out (package wire's), so that the outputs that left messages out are counted: a
// copy of the tail may have had nothing before it, and a call may be answered in time
// and publish nothing.
type Omitter interface {
	Omitted() int
}

// tick is called by the scheduler for a call whose wake time is covered.
func (s *shard) tick(id uint32, _ int64) {
	c := &s.slots.at(id).call
	before, retained := c.State(), c.Retained()
	st := c.Tick(&s.e.cfg, min(s.evidence, s.now), s.now)
	if st.Forget {
		s.stats.expired.Add(1)
		s.stats.state[before].Add(-1)
		s.e.retained.Add(-int64(retained))
	} else {
		s.account(before, c.State(), retained, c.Retained())
	}
	s.step(id, st)
}

// step carries out a Step of the call in slot id.
func (s *shard) step(id uint32, st detector.Step) {
	for _, out := range st.Outputs {
		s.publish(s.slots.at(id), out)
	}
	if s.held == 0 && s.slots.at(id).call.State() == detector.StateIdle {
		s.slots.at(id).rebuilt = false
	}
	if st.Ended || st.Forget {
		s.reportShapeless(s.slots.at(id))
	}
	switch {
	case st.Ended:
		s.stats.ended.Add(1)
		s.stats.state[detector.StateEnded].Add(-1) // account counted it ended; tombs count apart
		s.bury(hashID(s.e.seed, s.slots.at(id).id), s.e.mono.Now())
		s.release(id)
		return
	case st.Forget:
		s.release(id)
		return
	}
	// The wake is moved later too: an early tick would cost a proof of the input (a
	// round trip) before it could even tick, where moving it costs a few nanoseconds.
	// A turn answered leaves its deadline for the TTL: left in place, every answered
	// turn's deadline would ask for a proof.
	if at, ok := s.sched.Deadline(id); !ok || st.Wake != at {
		s.sched.Set(id, st.Wake)
		s.overdue = s.overdue || st.Wake <= s.evidence
	}
}

// bury remembers an ended call.
func (s *shard) bury(h uint64, now int64) {
	s.tombs.add(h, now, int64(s.e.cfg.CallTTL))
	s.stats.tombs.Store(int64(s.tombs.len()))
}

func (s *shard) publish(sl *slot, out *detector.Output) {
	e := s.e
	out.Wall = e.wall().UnixNano()
	out.Rebuilt = sl.rebuilt
	if out.Kind == detector.KindHang && !out.Late {
		out.InputGap = e.gaps.within(out.Armed, out.At)
	}
	s.stats.outputs[out.Kind][out.Reason][out.Stage].Add(1)
	if p, ok := out.Snapshot.(Omitter); ok && p.Omitted() > 0 {
		s.stats.truncated.Add(1)
	}
	model := modelOf(out.Snapshot)
	if out.Kind == detector.KindHang {
		e.teams.add(sl.team.name)
		e.models.add(model)
	}
	if err := e.sink.Publish(sl.id, out); err != nil {
		s.stats.publishErrors.Add(1)
		e.limited.Error("publish", zap.String("call_id", sl.id), zap.Stringer("kind", out.Kind), zap.Error(err))
	}
	// Logged after it is published: the log line is a write to stderr, not on the
	// output's way out.
	e.log.Info(out.Kind.String(), zap.String("call_id", sl.id), zap.String("team_id", sl.team.name),
		zap.Stringer("reason", out.Reason), zap.Stringer("stage", out.Stage), zap.String("model", model),
		zap.String("user_message_id", out.UserMessageID), zap.String("first_user_message_id", out.FirstUserMessageID),
		zap.Duration("wait", out.Wait.Round(time.Millisecond)), zap.Duration("input_gap", out.InputGap.Round(time.Millisecond)),
		zap.Bool("late", out.Late))
}

// Modeled is a payload that knows the assistant's model (package wire's), for the
// hangs by model.
type Modeled interface {
	Model() (provider, model string)
}

// modelOf returns "provider/model" of a payload, or "" when it has none.
func modelOf(p detector.Payload) string {
	m, ok := p.(Modeled)
	if !ok {
		return ""
	}
	provider, model := m.Model()
	if provider == "" && model == "" {
		return ""
	}
	return provider + "/" + model
}

// alloc takes a slot for a new call, whose id hashes to h.
func (s *shard) alloc(callID string, h uint64, t *team, partition int16) uint32 {
	var id uint32
	if n := len(s.free); n > 0 {
		id, s.free = s.free[n-1], s.free[:n-1]
	} else {
		id = s.slots.add()
	}
	*s.slots.at(id) = slot{id: callID, team: t, partition: partition}
	s.calls.put(h, callID, id)
	s.stats.state[detector.StateIdle].Add(1)
	return id
}

// shapelessAfter is how many histories without a message detection reads make a call
// count as one whose events drive nothing (a history of only a system prompt may open a
// call; three of them, or an end, is the wrong shape).
const shapelessAfter = 3

// shape notes whether an event's history holds a user turn, a reply or a tool message;
// a call whose histories never do is counted, and the first one logged with a hint.
func (s *shard) shape(sl *slot, ev *detector.Event) {
	switch {
	case sl.shape >= shapeRecognised:
	case len(ev.Messages) > 0:
		sl.shape = shapeRecognised
	case ev.HasHistory && ev.Count > 0:
		if sl.shape++; sl.shape >= shapelessAfter {
			s.reportShapeless(sl)
		}
	}
}

// reportShapeless counts a call whose events drive nothing, once.
func (s *shard) reportShapeless(sl *slot) {
	if sl.shape == 0 || sl.shape >= shapeRecognised {
		return
	}
	sl.shape = shapeReported
	s.stats.shapeless.Add(1)
	if s.e.shapelessLogged.CompareAndSwap(false, true) {
		s.e.log.Warn("a call's events drive nothing: no message of its histories is a user turn or a reply hangwatch recognises; "+
			"expected messages like {\"role\": \"user\"|\"assistant\"|\"bot\", \"text\" or \"message\": \"...\", \"messageId\", \"timestamp\" or \"time\"/\"endTime\"} in message.messages (see docs/contract.md); further ones are only counted",
			zap.String("call_id", sl.id), zap.String("team_id", sl.team.name))
	}
}

// release frees the slot of a call that ended, expired or was revoked.
func (s *shard) release(id uint32) {
	sl := s.slots.at(id)
	s.calls.del(hashID(s.e.seed, sl.id), sl.id, id)
	s.sched.Cancel(id)
	s.e.limits.release(sl.team)
	*sl = slot{}
	s.free = append(s.free, id)
}

// MaxPartition is the highest partition a Message may come from (transport's go to
// 1,024): a call holds its partition in 16 bits.
const MaxPartition = math.MaxInt16

// partitionOf returns partition p as a slot holds it, -1 for none.
func partitionOf(p int) int16 {
	return int16(min(max(p, -1), MaxPartition))
}

// revoke drops the calls of a partition another instance now owns, publishing nothing.
func (s *shard) revoke(partition int16) {
	for id := range uint32(s.slots.len()) {
		sl := s.slots.at(id)
		if sl.id == "" || sl.partition != partition {
			continue
		}
		st, retained := sl.call.State(), sl.call.Retained()
		s.stats.state[st].Add(-1)
		s.e.retained.Add(-int64(retained))
		s.stats.revoked.Add(1)
		s.release(uint32(id))
	}
}

// account updates the gauges after a call moved from one state to another.
func (s *shard) account(before, after detector.State, retainedBefore, retainedAfter int) {
	if before != after {
		s.stats.state[before].Add(-1)
		s.stats.state[after].Add(1)
	}
	if retainedBefore != retainedAfter {
		s.e.retained.Add(int64(retainedAfter - retainedBefore))
	}
}
