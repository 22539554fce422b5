package detector

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Test times are milliseconds after the start of the call. The pipeline's clock (message
// and event timestamps, Event.Wall) starts at t0, Unix ms; the engine's monotonic clock
// (Received, deadlines, ticks) at e0 ns, an unrelated origin, so that a test fails when
// the two are mixed up.
const (
	t0 = int64(1_772_700_001_318)
	e0 = int64(7_000_000_000_000)
)

// eng returns the engine time of ms after the start; wallNs the wall clock then.
func eng(ms int64) int64    { return e0 + ms*int64(time.Millisecond) }
func wallNs(ms int64) int64 { return (t0 + ms) * int64(time.Millisecond) }

// since returns an engine time in ms after the start.
func since(ns int64) int64 { return (ns - e0) / int64(time.Millisecond) }

// noTS marks a message or event without a timestamp (SPEC §1: 0 means absent).
const noTS = int64(math.MinInt64)

// unixMs returns the own timestamp of ms after the start, 0 for noTS.
func unixMs(ms int64) int64 {
	if ms == noTS {
		return 0
	}
	return t0 + ms
}

// payload is a fake Payload, named after the op that carried it ("e3").
type payload string

func (p payload) Len() int { return len(p) }

// msg is a message of a test history as a producer sends it; ts is its own timestamp in
// ms after the start (noTS: none). tools are the tool call ids it makes (a tool call) or
// the one it answers (a tool result).
type msg struct {
	id, role, text string
	ts             int64
	tools          []string
}

func u(id, text string, ts int64) msg  { return msg{id: id, role: "user", text: text, ts: ts} }
func a(id, text string, ts int64) msg  { return msg{id: id, role: "assistant", text: text, ts: ts} }
func hello(id string, ts int64) msg    { return u(id, "Hello?", ts) }
func reply(id string, ts int64) msg    { return a(id, "Sure.", ts) }
func greeting(id string, ts int64) msg { return a(id, "Hi, how can I help?", ts) }
func silent(id string, ts int64) msg   { return a(id, "  ", ts) } // a zero-token completion
func other(id, role string, ts int64) msg {
	return msg{id: id, role: role, text: "some text", ts: ts}
}

// toolCalls is Vapi's shape of a tool call (role tool_calls), asstCalls the OpenAI one (an
// assistant message without text that carries toolCalls).
func toolCalls(id string, ts int64, ids ...string) msg {
	return msg{id: id, role: "tool_calls", ts: ts, tools: ids}
}
func asstCalls(id string, ts int64, ids ...string) msg {
	return msg{id: id, role: "assistant", ts: ts, tools: ids}
}

// toolResult is Vapi's shape of a result (role tool_call_result), toolMsg the OpenAI one
// (role tool); callID "" names no call.
func toolResult(id string, ts int64, callID string) msg {
	return msg{id: id, role: "tool_call_result", text: "{}", ts: ts, tools: ids(callID)}
}
func toolMsg(id string, ts int64, callID string) msg {
	return msg{id: id, role: "tool", text: "{}", ts: ts, tools: ids(callID)}
}

func ids(id string) []string {
	if id == "" {
		return nil
	}
	return []string{id}
}

// roleOf reads a message as the decoder does (SPEC §1, §2).
func roleOf(m msg) Role {
	spoken := strings.TrimSpace(m.text) != ""
	switch role := m.role; {
	case role == "user":
		if spoken {
			return RoleUser
		}
	case strings.EqualFold(role, "assistant") || strings.EqualFold(role, "bot"):
		switch {
		case spoken:
			return RoleReply
		case len(m.tools) > 0:
			return RoleToolCall
		}
	case role == "tool_calls":
		return RoleToolCall
	case role == "tool_call_result" || role == "tool":
		return RoleToolResult
	}
	return 0
}

// hash64 is the test's stand-in for the decoder's hash: FNV-1a over the parts, each
// ended by a 0, never 0.
func hash64(parts ...string) uint64 {
	h := uint64(14695981039346656037)
	for _, p := range parts {
		for i := range len(p) {
			h = (h ^ uint64(p[i])) * 1099511628211
		}
		h *= 1099511628211
	}
	return max(h, 1)
}

// keyOf is the identity of a message (SPEC §2): its messageId, else its role, its own
// timestamp and its text.
func keyOf(m msg, r Role) uint64 {
	if m.id != "" {
		return hash64("id", m.id)
	}
	ts := uint64(unixMs(m.ts))
	var b [8]byte
	for i := range b {
		b[i] = byte(ts >> (8 * i))
	}
	return hash64(r.String(), string(b[:]), m.text)
}

// decode fills the history fields of ev from msgs, as the decoder does.
func decode(ev *Event, msgs []msg) {
	ev.HasHistory, ev.Count = true, int32(len(msgs))
	ev.Messages, ev.Tools = make([]Message, 0, len(msgs)), nil
	for i, m := range msgs {
		r := roleOf(m)
		if r == 0 {
			continue
		}
		lo := int32(len(ev.Tools))
		for _, id := range m.tools {
			ev.Tools = append(ev.Tools, hash64("tool", id))
		}
		ev.Messages = append(ev.Messages, Message{
			Role: r, Index: int32(i), ID: m.id, Key: keyOf(m, r), Time: unixMs(m.ts),
			ToolLo: lo, ToolHi: int32(len(ev.Tools)),
		})
	}
}

// op is one step of a test: an event, or a tick.
type op struct {
	// at is the engine's time when the op runs (the now of Apply and Tick); due is the
	// evidence then: every deadline up to due may fire. For a live event both are its
	// arrival; for an event read back from a stream (stored) due is its stored time.
	at, due int64
	ev      *Event  // nil: a tick
	cfg     *Config // when set, the configuration in force from this op on
	name    string  // the name of the event's payload; "" for e<index>
	// lag, when set, is the evidence of a live event whose arrival is at: the input
	// has not been shown caught up beyond it (the engine was paused, a probe is out).
	lag *int64
}

// lagging makes a live event arrive while the evidence stands at e.
func (o op) lagging(e int64) op { o.lag = &e; return o }

// with makes cfg the configuration in force from this op on, as when a team's
// thresholds change.
func (o op) with(cfg Config) op { o.cfg = &cfg; return o }

// conv is a conversation-update received at `at`, sent (message.timestamp) at `at` too.
func conv(at int64, msgs ...msg) op {
	ev := &Event{Type: TypeConversationUpdate, CallID: "c1", Status: StatusOngoing, Time: unixMs(at)}
	decode(ev, msgs)
	return op{at: at, due: at, ev: ev}
}

// sent sets the event's own timestamp (noTS: none).
func (o op) sent(ts int64) op { o.ev.Time = unixMs(ts); return o }

// stored makes the event one read back from a JetStream stream at `at`, stored at s.
func (o op) stored(s int64) op { o.due, o.ev.Stored = s, true; return o }

// held makes the event one of a rebuild from stored state: the engine holds every
// deadline, and reads only the latest message of each subject.
func (o op) held() op { o.ev.Held = true; return o }

// ended sets the event's endedReason.
func (o op) ended(reason string) op { o.ev.EndedReason = reason; return o }

func status(at int64, s Status) op {
	return op{at: at, due: at, ev: &Event{Type: TypeStatusUpdate, CallID: "c1", Status: s, Time: unixMs(at)}}
}

// endReport is an end-of-call-report, with the history it carries (none: empty).
func endReport(at int64, msgs ...msg) op { return endReportWith(at, StatusFinished, msgs...) }

// endReportWith is an end-of-call-report whose call.status is s.
func endReportWith(at int64, s Status, msgs ...msg) op {
	o := conv(at, msgs...)
	o.ev.Type, o.ev.Status = TypeEndOfCallReport, s
	return o
}

// speech is a Vapi speech-update: the assistant started speaking at ts (its event
// timestamp), received at `at`.
func speech(at, ts int64) op {
	return op{at: at, due: at, ev: &Event{Type: TypeSpeechUpdate, CallID: "c1", Speech: true, Time: unixMs(ts)}}
}

func typed(at int64, t Type) op {
	return op{at: at, due: at, ev: &Event{Type: t, CallID: "c1", Time: unixMs(at)}}
}

// tick is a tick at `at` with the evidence caught up; tickDue one whose evidence lags.
func tick(at int64) op         { return op{at: at, due: at} }
func tickDue(due, at int64) op { return op{at: at, due: due} }

// out is the part of an Output that tests compare: times in ms after the start, the
// payloads named after the op that carried them ("e2": the op at index 2).
type out struct {
	kind                Kind
	reason              Reason
	stage               Stage
	user, first, reply  string
	ended               string
	at, wait, threshold int64
	deadline            int64 // hang only
	late                bool
	snapshot, latest    string
}

func (o out) String() string {
	return fmt.Sprintf("\n\t{%v/%v/%v user=%s first=%s reply=%s ended=%q at=%d wait=%d threshold=%d deadline=%d late=%v snapshot=%s latest=%s}",
		o.kind, o.reason, o.stage, o.user, o.first, o.reply, o.ended, o.at, o.wait, o.threshold, o.deadline, o.late, o.snapshot, o.latest)
}

func name(p Payload) string {
	if p == nil {
		return ""
	}
	return string(p.(payload))
}

func toOut(o *Output) out {
	x := out{
		kind: o.Kind, reason: o.Reason, stage: o.Stage, user: o.UserMessageID, first: o.FirstUserMessageID,
		reply: o.ReplyMessageID, ended: o.EndedReason, at: since(o.At), wait: o.Wait.Milliseconds(),
		threshold: o.Threshold.Milliseconds(), late: o.Late, snapshot: name(o.Snapshot), latest: name(o.Latest),
	}
	if o.Kind == KindHang {
		x.deadline = since(o.Deadline)
	}
	return x
}

// verdict is what an output claims, and which events it carries: what the property
// tests compare. Payloads are named by the event's publish time, which every delivery of
// it shares.
type verdict struct {
	kind               Kind
	reason             Reason
	stage              Stage
	user, first, reply string
	ended              string
	wait               int64
	snapshot, latest   string
}

func (o out) verdict() verdict {
	return verdict{o.kind, o.reason, o.stage, o.user, o.first, o.reply, o.ended, o.wait, o.snapshot, o.latest}
}

// runner drives a Call like the engine does: before each op, every wake that the
// evidence has reached ticks, at its own time if the engine was live then, else at the
// op's time (the evidence came late); then the op runs. A forgotten call is dropped, and
// a later event starts a new one.
type runner struct {
	cfg   Config
	c     Call
	outs  []out
	steps []Step
	wake  int64
	clock int64 // the engine time of the latest op
	gone  bool
}

func newRunner(cfg Config) *runner {
	return &runner{cfg: cfg, wake: math.MinInt64, clock: math.MinInt64}
}

func (r *runner) record(s Step) {
	r.steps = append(r.steps, s)
	for _, o := range s.Outputs {
		r.outs = append(r.outs, toOut(o))
	}
	r.wake, r.gone = s.Wake, s.Forget
}

func (r *runner) do(i int, o op) {
	if o.cfg != nil {
		r.cfg = *o.cfg
	}
	at, due := eng(o.at), eng(o.due)
	if o.lag != nil {
		due = eng(*o.lag)
	}
	lagged := due < at
	// An event read back in stored order is a mark at its stored time, but the engine
	// leaves the deadline of the event's own call to Apply, which knows whether the
	// event shows it answered in time.
	for !r.gone && r.wake != math.MinInt64 && r.wake <= due && (o.ev == nil || !o.ev.Stored) {
		now := max(r.wake, r.clock)
		if lagged {
			now = at
		}
		r.record(r.c.Tick(&r.cfg, due, now))
	}
	r.clock = max(r.clock, at)
	if r.gone { // the engine drops a forgotten call; a later event starts afresh
		r.c, r.gone, r.wake = Call{}, false, math.MinInt64
	}
	if o.ev == nil {
		r.record(r.c.Tick(&r.cfg, due, at))
		return
	}
	ev := *o.ev
	ev.Received, ev.Wall = eng(o.due), wallNs(o.due)
	if ev.Payload = payload(o.name); o.name == "" {
		ev.Payload = payload("e" + strconv.Itoa(i))
	}
	r.record(r.c.Apply(&r.cfg, &ev, at))
}

// run runs ops on a new call and returns its outputs, the call and every step.
func run(cfg Config, ops []op) ([]out, *Call, []Step) {
	r := newRunner(cfg)
	for i, o := range ops {
		r.do(i, o)
	}
	return r.outs, &r.c, r.steps
}

// unsafeString aliases b, as the decoder's strings alias the payload.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
