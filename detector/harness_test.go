package detector

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// t0 is the start of every test call, in Unix milliseconds.
const t0 = int64(1_763_647_331_000)

// ms converts milliseconds after t0 to Unix nanoseconds.
func ms(d int64) int64 { return (t0 + d) * int64(time.Millisecond) }

// payload is a fake Payload, named after the event that carried it.
type payload string

func (p payload) Len() int { return len(p) }

// msg is a message of a test history; ts is in milliseconds after t0 (noTS: absent).
type msg struct {
	id, role, text string
	ts             int64
}

const noTS = int64(-1 << 62)

func u(id, text string, ts int64) msg   { return msg{id, "user", text, ts} }
func a(id, text string, ts int64) msg   { return msg{id, "assistant", text, ts} }
func r(id, role string, ts int64) msg   { return msg{id, role, "some text", ts} }
func hello(id string, ts int64) msg     { return u(id, "Hello?", ts) }
func reply(id string, ts int64) msg     { return a(id, "Sure.", ts) }
func greeting(id string, ts int64) msg  { return a(id, "Hi, how can I help?", ts) }
func silent(id string, ts int64) msg    { return a(id, "  ", ts) }
func spoken(text string) bool           { return strings.TrimSpace(text) != "" }
func tsOf(m msg) (has bool, unix int64) { return m.ts != noTS, t0 + m.ts }

// stretches builds the stretches of a history the way the decoder does.
func stretches(msgs []msg) []Stretch {
	var st []Stretch
	for i, m := range msgs {
		has, ts := tsOf(m)
		st = AddMessage(st, ParseRole(m.role), spoken(m.text), Turn{ID: m.id, Index: int32(i), HasTime: has, Time: ts})
	}
	return st
}

// op is one step of a test: an event received at `at` (ms after t0), or a tick.
type op struct {
	at int64
	ev *Event
}

func conv(at int64, msgs ...msg) op {
	return op{at, &Event{Type: TypeConversationUpdate, CallID: "c1", Status: StatusOngoing,
		Messages: int32(len(msgs)), Stretches: stretches(msgs)}}
}

func status(at int64, s Status) op {
	return op{at, &Event{Type: TypeStatusUpdate, CallID: "c1", Status: s}}
}

func endReport(at int64, msgs ...msg) op { return endReportWith(at, StatusFinished, msgs...) }

// endReportWith is an end-of-call-report whose call.status is s.
func endReportWith(at int64, s Status, msgs ...msg) op {
	o := conv(at, msgs...)
	o.ev.Type, o.ev.Status = TypeEndOfCallReport, s
	return o
}

func typed(at int64, t Type) op { return op{at, &Event{Type: t, CallID: "c1"}} }

func tick(at int64) op { return op{at: at} }

// out is the part of an Output that tests compare, with times in ms after t0 and the
// payloads named after the op that carried them ("e2": the op at index 2).
type out struct {
	kind                Kind
	reason              Reason
	user, first, reply  string
	at, wait, threshold int64
	snapshot, latest    string
	deadline            int64
}

func (o out) String() string {
	return fmt.Sprintf("%v/%v user=%s first=%s reply=%s at=%d wait=%d threshold=%d deadline=%d snapshot=%s latest=%s",
		o.kind, o.reason, o.user, o.first, o.reply, o.at, o.wait, o.threshold, o.deadline, o.snapshot, o.latest)
}

func name(p Payload) string {
	if p == nil {
		return ""
	}
	return string(p.(payload))
}

func toOut(o Output) out {
	x := out{
		kind: o.Kind, reason: o.Reason, user: o.UserMessageID, first: o.FirstUserMessageID,
		reply: o.ReplyMessageID, at: o.At/int64(time.Millisecond) - t0, wait: o.Wait.Milliseconds(),
		threshold: o.Threshold.Milliseconds(), snapshot: name(o.Snapshot), latest: name(o.Latest),
	}
	if o.Deadline != 0 {
		x.deadline = o.Deadline/int64(time.Millisecond) - t0
	}
	return x
}

// run drives a Call through ops like the engine does: before each op, every wake that
// is due by then ticks at its own time (as the timer would fire it); a tick op then
// ticks at its time. It returns the outputs and the final call.
func run(cfg Config, ops []op) ([]out, *Call, []Step) {
	var (
		c     Call
		outs  []out
		steps []Step
		wake  = int64(-1)
		gone  bool
	)
	record := func(s Step) {
		steps = append(steps, s)
		if s.Output != nil {
			outs = append(outs, toOut(*s.Output))
		}
		wake, gone = s.Wake, s.Forget
	}
	for i, o := range ops {
		now := ms(o.at)
		for !gone && wake >= 0 && wake <= now {
			record(c.Tick(&cfg, wake))
		}
		if gone { // the engine drops a forgotten call; a later event starts afresh
			c, gone, wake = Call{}, false, -1
		}
		if o.ev == nil {
			record(c.Tick(&cfg, now))
			continue
		}
		ev := *o.ev
		ev.Received, ev.Payload = now, payload(fmt.Sprintf("e%d", i))
		record(c.Apply(&cfg, &ev))
	}
	return outs, &c, steps
}

// unsafeString aliases b, as the decoder's strings alias the payload.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
