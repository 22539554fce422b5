package engine

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/clock"
	"github.com/hangwatch/hangwatch/detector"
)

// start is the fake clock's start: 2025-11-20T14:02:11Z.
var start = time.UnixMilli(1_763_647_331_000).UTC()

// payload is a fake detector.Payload, named after the event that carried it.
type payload string

func (p payload) Len() int { return len(p) }

// testMsg is a message of the test source: its data names the event the test decoder
// turns it into.
type testMsg struct {
	data      []byte
	received  time.Time
	stored    bool
	partition int
	src       *testSource
	onDone    func() // called by Done, if set
}

func (m *testMsg) Data() []byte                { return m.data }
func (m *testMsg) Received() (time.Time, bool) { return m.received, m.stored }
func (m *testMsg) Partition() int              { return m.partition }
func (m *testMsg) Reject(error)                { m.src.count(&m.src.rejected) }

func (m *testMsg) Done() {
	m.src.count(&m.src.done)
	if m.onDone != nil {
		m.onDone()
	}
}

// testSource hands the engine's Intake to the test, which then delivers from its own
// goroutine. It is a Prober: a probe is recorded, and answered by the harness's sync
// with a mark at the clock's now, unless the test cut the input off; with auto set it
// answers at once, from inside Probe, as a source whose round trips take no time.
type testSource struct {
	in             chan Intake
	mu             sync.Mutex
	probes         int
	done, rejected int
	runErr         error

	auto    bool // answer every probe at once with a mark at clock's now
	clock   clockwork.Clock
	intake  Intake
	onProbe func() // called by Probe, if set
}

func (s *testSource) Run(ctx context.Context, in Intake) error {
	s.mu.Lock()
	s.intake = in
	s.mu.Unlock()
	if s.in != nil {
		s.in <- in
	}
	<-ctx.Done()
	return s.runErr
}

func (s *testSource) Probe() {
	s.mu.Lock()
	s.probes++
	auto, in, on := s.auto, s.intake, s.onProbe
	s.mu.Unlock()
	if on != nil {
		on()
	}
	if auto && in != nil {
		in.Mark(s.clock.Now())
	}
}

// setAuto switches the answering of probes at once on or off.
func (s *testSource) setAuto(on bool) {
	s.mu.Lock()
	s.auto = on
	s.mu.Unlock()
}

func (s *testSource) count(n *int) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// doneCount returns how many messages were done.
func (s *testSource) doneCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// takeProbes returns the probes asked since the last call.
func (s *testSource) takeProbes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.probes
	s.probes = 0
	return n
}

// testDecoder decodes the events the harness registered: a message's data is the key.
// Data "end:<id>" decodes, without registration, to an end-of-call-report of call id. A
// key with a gate waits in Decode until the gate is closed; delay, if set, runs before
// every decode.
type testDecoder struct {
	mu     sync.Mutex
	events map[string]*detector.Event
	gates  map[string]chan struct{}
	delay  func()
}

// gate makes the decode of key wait until the returned function is called.
func (d *testDecoder) gate(key string) (open func()) {
	c := make(chan struct{})
	d.mu.Lock()
	if d.gates == nil {
		d.gates = map[string]chan struct{}{}
	}
	d.gates[key] = c
	d.mu.Unlock()
	return sync.OnceFunc(func() { close(c) })
}

func (d *testDecoder) Decode(ev *detector.Event, data []byte) error {
	if id, ok := strings.CutPrefix(string(data), "end:"); ok {
		ev.Reset()
		ev.Type, ev.Status, ev.CallID = detector.TypeEndOfCallReport, detector.StatusFinished, id
		return nil
	}
	d.mu.Lock()
	src, ok := d.events[string(data)]
	gate, delay := d.gates[string(data)], d.delay
	d.mu.Unlock()
	if delay != nil {
		delay()
	}
	if gate != nil {
		<-gate
	}
	if !ok {
		return fmt.Errorf("decode event: bad input %q", data)
	}
	msgs, tools := append(ev.Messages[:0], src.Messages...), append(ev.Tools[:0], src.Tools...)
	*ev = *src
	ev.Messages, ev.Tools = msgs, tools
	return nil
}

// published is an output as the sink received it.
type published struct {
	callID string
	out    detector.Output
}

// recordingSink records every output; it can be told to fail, to send every output on c
// too, and to hold the outputs of one call (block) until the test opens the gate.
type recordingSink struct {
	mu   sync.Mutex
	outs []published
	err  error
	c    chan published

	block   string        // the call whose outputs wait for gate
	entered chan struct{} // closed when an output of block waits
	gate    chan struct{}
}

// hold makes the outputs of callID wait until the returned function is called; entered
// is closed once the first of them waits.
func (s *recordingSink) hold(callID string) (entered <-chan struct{}, open func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block, s.entered, s.gate = callID, make(chan struct{}), make(chan struct{})
	gate := s.gate
	return s.entered, sync.OnceFunc(func() { close(gate) })
}

func (s *recordingSink) Publish(callID string, out *detector.Output) error {
	s.mu.Lock()
	if callID == s.block && s.gate != nil {
		gate, entered := s.gate, s.entered
		s.entered = nil
		s.mu.Unlock()
		if entered != nil {
			close(entered)
		}
		<-gate
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	p := published{callID: callID, out: *out}
	s.outs = append(s.outs, p)
	if s.c != nil {
		s.c <- p
	}
	return nil
}

// notify makes the sink send every output on a channel too, for wait.
func (s *recordingSink) notify() {
	s.mu.Lock()
	s.c = make(chan published, 1024)
	s.mu.Unlock()
}

// wait returns the next output sent on c, or fails the test after 10 s.
func (s *recordingSink) wait(t testing.TB) published {
	t.Helper()
	select {
	case p := <-s.c:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no output within 10 s")
		return published{}
	}
}

func (s *recordingSink) take() []published {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.outs
	s.outs = nil
	return o
}

// harness runs an engine on a fake clock, with an input the test controls: by default
// every probe is answered at once (a perfect input path); cut() stops answering, as a
// paused process or an unreachable server would.
type harness struct {
	t       testing.TB
	e       *Engine
	clock   *clockwork.FakeClock
	sink    *recordingSink
	src     *testSource
	dec     *testDecoder
	in      Intake
	stopRun func() error // nil once stopped
	seq     int
	cutOff  bool
}

func newHarness(t testing.TB, opts ...Option) *harness {
	t.Helper()
	h := newUnmarkedHarness(t, opts...)
	h.in.Mark(h.clock.Now())
	return h
}

// newUnmarkedHarness is newHarness without the mark at the start: the input has proved
// nothing yet.
func newUnmarkedHarness(t testing.TB, opts ...Option) *harness {
	t.Helper()
	fake := clockwork.NewFakeClockAt(start)
	return newHarnessOn(t, fake, fake, opts...)
}

// newHookedHarness is newHarness on a hookedClock.
func newHookedHarness(t testing.TB, opts ...Option) (*harness, *hookedClock) {
	t.Helper()
	fake := clockwork.NewFakeClockAt(start)
	hooked := &hookedClock{FakeClock: fake}
	h := newHarnessOn(t, fake, hooked, opts...)
	h.in.Mark(h.clock.Now())
	return h, hooked
}

// newHarnessOn starts an engine on clk, which runs on fake.
func newHarnessOn(t testing.TB, fake *clockwork.FakeClock, clk clockwork.Clock, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, clock: fake, sink: &recordingSink{},
		src: &testSource{in: make(chan Intake, 1)}, dec: &testDecoder{events: map[string]*detector.Event{}}}
	h.src.clock = h.clock
	e, err := New(h.src, h.dec, h.sink, append([]Option{WithClock(clk), WithShards(2), WithDecoders(2)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	h.stopRun = func() error {
		cancel()
		return <-done
	}
	h.in = <-h.src.in
	t.Cleanup(func() { h.stop() })
	return h
}

// stop stops the engine and waits for Run to return.
func (h *harness) stop() {
	if h.stopRun == nil {
		return
	}
	err := h.stopRun()
	h.stopRun = nil
	if err != nil {
		h.t.Errorf("Run() = %v", err)
	}
}

// msg registers ev and returns a message that decodes to it, received at the clock's
// now.
func (h *harness) msg(ev *detector.Event) *testMsg {
	key := "e" + strconv.Itoa(h.seq)
	h.seq++
	if ev.Payload == nil {
		ev.Payload = payload(key)
	}
	h.dec.mu.Lock()
	h.dec.events[key] = ev
	h.dec.mu.Unlock()
	return &testMsg{data: []byte(key), received: h.clock.Now(), partition: -1, src: h.src}
}

// msgAt registers ev and returns a message that decodes to it, received at t (stored:
// the stored time of a stream).
func (h *harness) msgAt(ev *detector.Event, t time.Time, stored bool) *testMsg {
	msg := h.msg(ev)
	msg.received, msg.stored = t, stored
	return msg
}

// now returns the clock's now in engine time.
func (h *harness) now() int64 { return h.clock.Now().UnixNano() }

// send delivers ev as received now, and waits until it is applied (and, with a perfect
// input, until what it made due has fired).
func (h *harness) send(ev *detector.Event) {
	h.t.Helper()
	h.in.Deliver(h.msg(ev))
	h.sync()
}

// advance moves the fake clock and waits until every due deadline has fired, as far as
// the evidence goes.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.sync()
}

// sync waits until the engine has applied everything delivered; then, unless the input
// is cut off, it answers the probes asked with a mark at the clock's now, and waits
// again.
func (h *harness) sync() {
	h.t.Helper()
	h.barrier()
	if !h.cutOff && h.src.takeProbes() > 0 {
		h.in.Mark(h.clock.Now())
		h.barrier()
	}
}

func (h *harness) barrier() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.e.Sync(ctx); err != nil {
		h.t.Fatalf("Sync() = %v", err)
	}
}

// cut stops answering probes (a paused engine, an unreachable server); restore answers
// them again, at once.
func (h *harness) cut()     { h.cutOff = true }
func (h *harness) restore() { h.cutOff = false; h.src.Probe(); h.sync() }

// m is a message of a test history; at is its own timestamp in ms after start (0: none).
type m struct {
	id, role string
	at       int64
	tools    []string // tool call ids it calls, or (a result) answers
}

func user(id string, at int64) m  { return m{id: id, role: "user", at: at} }
func reply(id string, at int64) m { return m{id: id, role: "reply", at: at} }
func toolCall(id string, at int64, calls ...string) m {
	return m{id: id, role: "call", at: at, tools: calls}
}
func toolResult(id string, at int64, call string) m {
	return m{id: id, role: "result", at: at, tools: []string{call}}
}

func key(s string) uint64 { return xxhash.Sum64String(s) | 1 }

// conv builds a conversation-update of call id with message.timestamp ts (ms after
// start; 0: none).
func conv(id string, ts int64, msgs ...m) *detector.Event {
	ev := &detector.Event{Type: detector.TypeConversationUpdate, CallID: id, Status: detector.StatusOngoing,
		HasHistory: true, Count: int32(len(msgs))}
	if ts != 0 {
		ev.Time = start.UnixMilli() + ts
	}
	for i, x := range msgs {
		msg := detector.Message{Index: int32(i), ID: x.id, Key: key(x.id)}
		if x.at != 0 {
			msg.Time = start.UnixMilli() + x.at
		}
		switch x.role {
		case "user":
			msg.Role = detector.RoleUser
		case "reply":
			msg.Role = detector.RoleReply
		case "call":
			msg.Role = detector.RoleToolCall
		case "result":
			msg.Role = detector.RoleToolResult
		}
		msg.ToolLo = int32(len(ev.Tools))
		for _, t := range x.tools {
			ev.Tools = append(ev.Tools, key(t))
		}
		msg.ToolHi = int32(len(ev.Tools))
		ev.Messages = append(ev.Messages, msg)
	}
	return ev
}

func statusEvent(id string, s detector.Status) *detector.Event {
	return &detector.Event{Type: detector.TypeStatusUpdate, CallID: id, Status: s}
}

func endEvent(id string) *detector.Event {
	return &detector.Event{Type: detector.TypeEndOfCallReport, CallID: id, Status: detector.StatusFinished}
}

// brief renders an output compactly: "hang c1 user-1 turn-timeout 5000ms@5000".
func brief(p published) string {
	o := p.out
	at := (o.At - start.UnixNano()) / int64(time.Millisecond)
	s := fmt.Sprintf("%v %s %s %v %dms@%d", o.Kind, p.callID, o.UserMessageID, o.Reason, o.Wait.Milliseconds(), at)
	if o.Kind == detector.KindResolved {
		s += " reply=" + o.ReplyMessageID
	}
	if o.InputGap > 0 {
		s += fmt.Sprintf(" gap=%dms", o.InputGap.Milliseconds())
	}
	return s
}

func briefs(ps []published) []string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, brief(p))
	}
	return s
}

// callsOn returns the id of a call on each shard of e, in the order of the shards, each
// with the prefix given.
func callsOn(e *Engine, prefix string) []string {
	ids := make([]string, len(e.shards))
	for i, found := 0, 0; found < len(ids); i++ {
		id := prefix + strconv.Itoa(i)
		for j, s := range e.shards {
			if ids[j] == "" && e.shardOf(id) == s {
				ids[j] = id
				found++
			}
		}
	}
	return ids
}

// eventually waits, yielding the processor, until cond holds; it fails the test after
// 10 s. For what a test cannot wait on otherwise (a Deliver that blocks), never for time
// to pass: the fake clock does not move meanwhile.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		runtime.Gosched()
	}
}

// at returns start plus d.
func at(d time.Duration) time.Time { return start.Add(d) }

// withTeam sets the team and assistant of ev.
func withTeam(ev *detector.Event, team, assistant string) *detector.Event {
	ev.TeamID, ev.AssistantID = team, assistant
	return ev
}

// verdict renders what an output says, without its times: "hang c1 user-1/user-1
// turn-timeout awaiting-assistant".
func verdict(p published) string {
	o := p.out
	s := fmt.Sprintf("%v %s %s/%s %v %v", o.Kind, p.callID, o.FirstUserMessageID, o.UserMessageID, o.Reason, o.Stage)
	if o.ReplyMessageID != "" {
		s += " reply=" + o.ReplyMessageID
	}
	return s
}

func verdicts(ps []published) []string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, verdict(p))
	}
	return s
}

// retPayload is a fake payload of package wire's kind: it can copy what an output
// carries (it implements Retainer), and records what it was asked. Its history has n
// messages of per bytes each, beside a call object of call bytes.
type retPayload struct {
	name        string
	n, per      int
	call        int
	asked       *retainLog
	kept, whole bool // a copy the engine asked for; of the whole history
	omitted     int  // leading messages the copy left out
}

// retainLog records the Retain and RetainCall calls, as "name from" and "name call".
type retainLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *retainLog) add(s string) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
}

func (l *retainLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	return c
}

func (p *retPayload) Len() int { return p.n*p.per + p.call }

func (p *retPayload) Retain(from int32) detector.Payload {
	p.asked.add(fmt.Sprintf("%s %d", p.name, from))
	c := *p
	c.kept, c.whole = true, from < 0
	if from > 0 {
		c.n = max(p.n-int(from), 0)
		c.omitted = p.omitted + p.n - c.n
	}
	return &c
}

func (p *retPayload) Omitted() int { return p.omitted }

func (p *retPayload) RetainCall() detector.Payload {
	p.asked.add(p.name + " call")
	return &retPayload{name: p.name, call: p.call, asked: p.asked, kept: true}
}

var (
	_ Retainer = (*retPayload)(nil)
	_ Omitter  = (*retPayload)(nil)
)

// hookedClock is a fake clock whose timers are clock.Hooked, like the machine's: a timer
// that falls due as the clock moves calls its hook, on the goroutine that moved the
// clock, then sends on its channel (the machine's timers do both on their own goroutine,
// the other way round), so that a test sees what the hook did before the owner wakes.
type hookedClock struct {
	*clockwork.FakeClock
	mu     sync.Mutex
	timers []*hookedTimer
}

type hookedTimer struct {
	c      *hookedClock
	ch     chan time.Time
	at     time.Time
	active bool
	hook   func()
}

var _ clock.Hooked = (*hookedTimer)(nil)

func (c *hookedClock) NewTimer(d time.Duration) clockwork.Timer {
	t := &hookedTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	t.at, t.active = c.Now().Add(d), true
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.fire()
	return t
}

func (c *hookedClock) Advance(d time.Duration) {
	c.FakeClock.Advance(d)
	c.fire()
}

// fire fires the timers due.
func (c *hookedClock) fire() {
	c.mu.Lock()
	now := c.Now()
	var due []*hookedTimer
	for _, t := range c.timers {
		if t.active && !t.at.After(now) {
			t.active = false
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		if t.hook != nil {
			t.hook()
		}
		select {
		case t.ch <- now:
		default:
		}
	}
}

func (t *hookedTimer) Chan() <-chan time.Time { return t.ch }

func (t *hookedTimer) OnFire(f func()) {
	t.c.mu.Lock()
	t.hook = f
	t.c.mu.Unlock()
}

func (t *hookedTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	select {
	case <-t.ch:
	default:
	}
	return was
}

func (t *hookedTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	was := t.active
	select {
	case <-t.ch:
	default:
	}
	t.at, t.active = t.c.Now().Add(d), true
	t.c.mu.Unlock()
	t.c.fire()
	return was
}
