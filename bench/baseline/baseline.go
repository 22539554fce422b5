// Package baseline is the hang detector a team would write in an afternoon, for the load
// generator to compare hangwatch with: encoding/json unmarshals each whole event into
// structs, one mutex guards a map of calls, and each user turn arms its own
// time.AfterFunc. It implements the rules of SPEC §2 (turn timeout, max wait, one hang
// per stretch, hang-resolved, call end, stale snapshots, anchor clamping, call TTL,
// max calls) so that its outputs can be compared with hangwatch's and with the
// simulation's ground truth, and it publishes its hangs re-marshalled with
// encoding/json.
//
// It is deliberately obvious, not deliberately slow: pass-through values stay
// json.RawMessage rather than maps, and decoding happens outside the lock. Like most
// first versions it keeps the latest decoded snapshot of every call, idle or not,
// because that is where the hang's history comes from when the timer fires.
package baseline

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Config holds the thresholds and subjects of the detector; the defaults are those of
// SPEC §2 and §3.
type Config struct {
	Timeout, MaxWait, MaxLag, CallTTL time.Duration
	MaxCalls                          int
	MaxBytes                          int
	// HangSubject and ResolvedSubject take the placeholders {callId}, {teamId} and
	// {assistantId}.
	HangSubject, ResolvedSubject string
}

// DefaultConfig returns the defaults of SPEC §2 and §3.
func DefaultConfig() Config {
	return Config{
		Timeout:         5 * time.Second,
		MaxWait:         10 * time.Second,
		MaxLag:          time.Second,
		CallTTL:         2 * time.Hour,
		MaxCalls:        1_000_000,
		MaxBytes:        1 << 20,
		HangSubject:     "voice.hang.{teamId}.{callId}",
		ResolvedSubject: "voice.hang-resolved.{teamId}.{callId}",
	}
}

// ErrConfig is wrapped by the errors of New about its configuration.
var ErrConfig = errors.New("baseline: invalid configuration")

func (c Config) validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout must be above 0", ErrConfig)
	case c.MaxWait < 0 || (c.MaxWait > 0 && c.MaxWait <= c.Timeout):
		return fmt.Errorf("%w: max-wait must be 0 or above the timeout", ErrConfig)
	case c.MaxLag < 0:
		return fmt.Errorf("%w: max-lag must not be negative", ErrConfig)
	case c.CallTTL <= c.Timeout || c.CallTTL <= c.MaxWait:
		return fmt.Errorf("%w: call-ttl must be above timeout and max-wait", ErrConfig)
	case c.MaxCalls < 1 || c.MaxBytes < 1:
		return fmt.Errorf("%w: max-calls and max-bytes must be at least 1", ErrConfig)
	case c.HangSubject == "" || c.ResolvedSubject == "":
		return fmt.Errorf("%w: subjects must not be empty", ErrConfig)
	}
	return nil
}

// PublishFunc publishes an output on subject, with msgID as its Nats-Msg-Id.
type PublishFunc func(subject, msgID string, data []byte) error

// Option configures a Detector.
type Option func(*Detector)

// WithClock sets the clock (default the real clock, whose AfterFunc is time.AfterFunc).
func WithClock(c clockwork.Clock) Option { return func(d *Detector) { d.clock = c } }

// WithPublished sets a function called as each hang is handed over to be encoded and
// published, with its deadline and how long after it that is: the detector's own share
// of the detection lag.
func WithPublished(f func(deadline time.Time, late time.Duration)) Option {
	return func(d *Detector) { d.published = f }
}

// Detector is the baseline hang detector. It is safe for concurrent use.
type Detector struct {
	cfg       Config
	clock     clockwork.Clock
	publish   PublishFunc
	published func(deadline time.Time, late time.Duration)

	mu        sync.Mutex
	calls     map[string]*call
	lastSweep time.Time
	closed    bool
	stats     Stats
}

// call is the state of one call.
type call struct {
	id       string
	last     time.Time // received time of the latest event
	messages int       // length of the latest applied snapshot
	ended    bool
	// latest is the latest event, snapshot the latest conversation-update; bytes are
	// their sizes on the wire.
	latest, snapshot           *Event
	latestBytes, snapshotBytes int

	// The unanswered stretch.
	open        bool
	hung        bool
	reason      string
	first, user mark
	timer       clockwork.Timer
	due         time.Time
	gen         uint64 // tells a timer that fires late that it was replaced
}

// mark is a user turn: its id, index and anchor time.
type mark struct {
	id     string
	index  int
	anchor time.Time
}

// Stats are the detector's counters and gauges.
type Stats struct {
	Events, Bad, Ignored, Refused       int64
	Hangs, Resolved, PublishErrors      int64
	Fired                               int64 // timer callbacks run, stale ones included
	Calls, Idle, Armed, Hung, Ended     int
	RetainedBytes, RetainedSnapshots    int64 // wire bytes of the events kept, and their number
	SweptCalls                          int64
	TimersArmed, TimersStopped, Pending int64 // Pending: armed timers not yet stopped or run
}

// New returns a detector that publishes with publish.
func New(cfg Config, publish PublishFunc, opts ...Option) (*Detector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Detector{cfg: cfg, clock: clockwork.NewRealClock(), publish: publish, calls: map[string]*call{}}
	for _, opt := range opts {
		opt(d)
	}
	d.lastSweep = d.clock.Now()
	return d, nil
}

// Handle applies one event received at received. It returns an error that wraps
// ErrBadInput for an event it rejects; the event then changes nothing.
func (d *Detector) Handle(data []byte, received time.Time) error {
	ev, err := Decode(data, d.cfg.MaxBytes)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.stats.Bad++
		return err
	}
	if d.closed {
		return nil
	}
	d.sweep(received)
	d.stats.Events++
	if ev.isOutput() {
		d.stats.Ignored++
		return nil
	}
	c := d.calls[ev.CallFields.ID]
	if c == nil {
		if len(d.calls) >= d.cfg.MaxCalls {
			d.stats.Refused++
			return nil
		}
		c = &call{id: ev.CallFields.ID}
		d.calls[c.id] = c
	}
	if received.After(c.last) {
		c.last = received
	}
	switch {
	case c.ended:
		d.stats.Ignored++
	case ev.ends():
		// Nothing more is published for an ended call, not even a resolved.
		d.disarm(c)
		c.ended, c.latest, c.snapshot, c.latestBytes, c.snapshotBytes = true, nil, nil, 0, 0
	case !ev.isSnapshot():
		c.latest, c.latestBytes = ev, len(data)
	case len(ev.History()) < c.messages:
		d.stats.Ignored++
	default:
		d.apply(c, ev, len(data), received)
	}
	return nil
}

// apply applies a snapshot that is not stale.
func (d *Detector) apply(c *call, ev *Event, size int, received time.Time) {
	msgs := ev.History()
	c.messages = len(msgs)
	c.latest, c.snapshot, c.latestBytes, c.snapshotBytes = ev, ev, size, size
	st := stretches(msgs)
	answered := -1
	if c.open {
		s, ok := answeredAfter(st, c.first.index)
		if !ok {
			// Still unanswered: a new user turn re-arms the turn timeout.
			if u, ok := unanswered(st); ok && !c.hung && u.last > c.user.index {
				c.user = d.mark(msgs, u.last, received)
				d.arm(c)
			}
			return
		}
		if c.hung {
			reply := d.anchor(&msgs[s.reply], received)
			d.emit(c, newOutput("hang-resolved", received.UnixMilli(), ev, ev, Hang{
				Reason:             c.reason,
				UserMessageID:      messageID(msgs, s.last),
				FirstUserMessageID: c.first.id,
				ReplyMessageID:     messageID(msgs, s.reply),
				WaitMs:             max(reply.Sub(c.first.anchor), 0).Milliseconds(),
			}), d.cfg.ResolvedSubject, ":resolved")
			d.stats.Resolved++
		}
		d.disarm(c)
		answered = s.reply
	}
	if u, ok := unanswered(st); ok && u.first > answered {
		c.open = true
		c.first, c.user = d.mark(msgs, u.first, received), d.mark(msgs, u.last, received)
		d.arm(c)
	}
}

func (d *Detector) mark(msgs []Msg, i int, received time.Time) mark {
	return mark{id: messageID(msgs, i), index: i, anchor: d.anchor(&msgs[i], received)}
}

// anchor clamps a message's timestamp into [received-max-lag, received].
func (d *Detector) anchor(m *Msg, received time.Time) time.Time {
	t, ok := m.time()
	if !ok || t.After(received) {
		return received
	}
	if lo := received.Add(-d.cfg.MaxLag); t.Before(lo) {
		return lo
	}
	return t
}

// deadline returns when the open stretch hangs and why: the earlier of the turn timeout
// from the latest user turn and the max wait from the first; on a tie, the timeout.
func (d *Detector) deadline(c *call) (time.Time, string) {
	at, reason := c.user.anchor.Add(d.cfg.Timeout), "turn-timeout"
	if d.cfg.MaxWait > 0 {
		if mw := c.first.anchor.Add(d.cfg.MaxWait); mw.Before(at) {
			at, reason = mw, "max-wait"
		}
	}
	return at, reason
}

// arm replaces the call's timer with one for the deadline of its open stretch.
func (d *Detector) arm(c *call) {
	d.stopTimer(c)
	c.gen++
	id, gen := c.id, c.gen
	c.due, _ = d.deadline(c)
	c.timer = d.clock.AfterFunc(c.due.Sub(d.clock.Now()), func() { d.fire(id, gen) })
	d.stats.TimersArmed++
}

func (d *Detector) stopTimer(c *call) {
	if c.timer != nil {
		if c.timer.Stop() {
			d.stats.TimersStopped++
		}
		c.timer = nil
	}
}

// disarm closes the open stretch.
func (d *Detector) disarm(c *call) {
	d.stopTimer(c)
	c.open, c.hung, c.reason = false, false, ""
}

// fire is the timer of a call: it publishes the hang of its open stretch, unless the
// stretch was answered, re-armed or hung meanwhile.
func (d *Detector) fire(id string, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer func() { d.stats.Fired++ }()
	c := d.calls[id]
	if d.closed || c == nil || c.gen != gen || !c.open || c.hung || c.ended {
		return
	}
	c.timer = nil
	now := d.clock.Now()
	_, reason := d.deadline(c)
	from, threshold := c.user.anchor, d.cfg.Timeout
	if reason == "max-wait" {
		from, threshold = c.first.anchor, d.cfg.MaxWait
	}
	c.hung, c.reason = true, reason
	d.emit(c, newOutput("hang", now.UnixMilli(), c.latest, c.snapshot, Hang{
		Reason:             reason,
		UserMessageID:      c.user.id,
		FirstUserMessageID: c.first.id,
		WaitMs:             now.Sub(from).Milliseconds(),
		ThresholdMs:        threshold.Milliseconds(),
	}), d.cfg.HangSubject, ":hang")
	d.stats.Hangs++
}

// emit marshals and publishes an output of the call.
func (d *Detector) emit(c *call, out Output, template, suffix string) {
	// The own lag ends where the output is handed to the code that encodes and
	// publishes it, as the load generator's timedSink measures hangwatch's.
	if d.published != nil && out.Message.Type == "hang" {
		d.published(c.due, d.clock.Since(c.due))
	}
	data, err := json.Marshal(out)
	if err == nil {
		var f CallFields
		if c.latest != nil {
			f = c.latest.CallFields
		}
		f.ID = c.id
		err = d.publish(subject(template, &f), c.id+":"+out.Message.Hang.FirstUserMessageID+suffix, data)
	}
	if err != nil {
		d.stats.PublishErrors++
	}
}

// sweep forgets, at most once a minute, the calls with no event for the call TTL,
// except those whose stretch has not hung yet.
func (d *Detector) sweep(now time.Time) {
	every := min(time.Minute, d.cfg.CallTTL/2)
	if now.Sub(d.lastSweep) < every {
		return
	}
	d.lastSweep = now
	for id, c := range d.calls {
		if now.Sub(c.last) >= d.cfg.CallTTL && (!c.open || c.hung) {
			d.stopTimer(c)
			delete(d.calls, id)
			d.stats.SweptCalls++
		}
	}
}

// Stats returns the counters, and the gauges counted over the calls.
func (d *Detector) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stats
	st.Calls = len(d.calls)
	for _, c := range d.calls {
		switch {
		case c.ended:
			st.Ended++
		case c.open && c.hung:
			st.Hung++
		case c.open:
			st.Armed++
		default:
			st.Idle++
		}
		if c.snapshot != nil {
			st.RetainedBytes += int64(c.snapshotBytes)
			st.RetainedSnapshots++
		}
		if c.latest != nil && c.latest != c.snapshot {
			st.RetainedBytes += int64(c.latestBytes)
		}
		if c.timer != nil {
			st.Pending++
		}
	}
	return st
}

// Close stops every timer; the detector publishes nothing after it.
func (d *Detector) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, c := range d.calls {
		d.stopTimer(c)
	}
}
