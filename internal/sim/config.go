package sim

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Config describes a simulation: the population of calls the Runner keeps live, what a
// call looks like, the thresholds of the detector under test (the ground truth depends
// on them) and the size of the payloads. Start from DefaultConfig and change what you
// need; Validate (called by New) checks it.
type Config struct {
	// Calls is how many calls the Runner keeps live at once: a call that ends is
	// replaced at once by a new one.
	Calls int
	// Ramp spreads the start of the first Calls calls evenly over this time, so that
	// they do not all speak at once.
	Ramp time.Duration
	// Workers is the number of goroutines that publish; 0 means GOMAXPROCS. It is capped
	// at Calls.
	Workers int
	// Rate caps the events published per second over all calls (a token bucket of Burst
	// events); 0 publishes every event when it is due. An event held back by the cap
	// keeps its scheduled timestamp: a cap below the natural rate of the calls makes
	// events late, which Stats.Late counts.
	Rate float64
	// Burst is the depth of the token bucket; 0 means a tenth of a second at Rate.
	Burst int
	// HangUpOnStop makes Run publish an end-of-call-report for every live call when
	// its context is cancelled, so that the engine drops them instead of reporting
	// the silence that the end of the simulation leaves behind.
	HangUpOnStop bool

	// TurnsMin and TurnsMax bound the number of turns of a call (a turn is a user turn,
	// any repetitions of it, and the reply).
	TurnsMin, TurnsMax int
	// ThinkMin and ThinkMax bound the time from an assistant message to the end of the
	// next user turn: listening to the assistant, then speaking.
	ThinkMin, ThinkMax time.Duration
	// ReplyMin and ReplyMax bound the latency of a reply that is in time, from the end
	// of the user turn. ReplyMax is capped at Timeout-Margin, so that such a reply is
	// clearly in time.
	ReplyMin, ReplyMax time.Duration
	// StallShare is the share of turns whose reply comes late, past Timeout+Margin: they
	// hang with reason turn-timeout.
	StallShare float64
	// HelloShare is the share of turns in which nobody answers and the caller speaks
	// again every HelloGapMin..HelloGapMax ("hello? hello?"), re-arming the turn timeout,
	// so that only max-wait catches them. With MaxWait 0 they do not hang: the reply
	// comes after a few repetitions.
	HelloShare float64
	// HelloGapMin and HelloGapMax bound the time between two repetitions of the caller.
	// Both are capped at Timeout-Margin, so that no repetition comes near the turn
	// timeout.
	HelloGapMin, HelloGapMax time.Duration
	// LateMax bounds how long after Deadline+Margin a late reply comes.
	LateMax time.Duration
	// SilentShare is the share of stalled turns in which the assistant first produces an
	// empty message (a zero-token completion, which is no reply).
	SilentShare float64
	// HangUpShare is the share of stalled turns after which the caller hangs up in
	// silence instead of waiting for the reply: the hang is never resolved, and the call
	// ends with a hang-unresolved whose endedReason is EndedByCustomer.
	HangUpShare float64
	// ToolShare is the share of the turns answered in time in which the model first
	// calls a tool (a tool_calls message, then its tool_call_result), all in time.
	ToolShare float64
	// ToolStallShare is the share of turns in which the model calls a tool whose result
	// comes past the deadline: they hang at stage awaiting-tool, after the tool timeout.
	// AfterToolShare is the share of turns in which the result comes in time but the
	// reply past the turn timeout: they hang at stage after-tool.
	ToolStallShare, AfterToolShare float64

	// Timeout and MaxWait are the thresholds of the detector under test (SPEC §2;
	// MaxWait 0 disables max-wait). The ground truth is computed with them.
	Timeout, MaxWait time.Duration
	// ToolTimeout is the detector's tool timeout, the turn timeout while a stretch awaits
	// a tool's result; 0 means Timeout. It may not be below Timeout.
	ToolTimeout time.Duration
	// Margin keeps every event at least this far from the deadline of the stretch it
	// belongs to, so that publishing and scheduling jitter below Margin cannot change
	// whether a stretch hangs. It also bounds the zone around the end of a run in
	// which Tally judges a hang only if it was observed.
	Margin time.Duration

	// PayloadBytes is the size that a conversation-update carrying PayloadTurns turns
	// should come to: message metrics are richer and texts longer to get there, so
	// payloads grow by about PayloadBytes/PayloadTurns per turn. 0 leaves messages at
	// their natural size, full metrics and one sentence of text. A target below what the
	// smallest messages take cannot be met; the payloads then come out larger.
	PayloadBytes, PayloadTurns int
	// TextBytes, when above 0, is the length of the text of every user turn and reply
	// (±25 %, in whole sentences), with full metrics, instead of the layout fitted to
	// PayloadBytes.
	TextBytes int

	// Seed makes the calls of one run differ from those of another; the same seed
	// gives the same calls, byte for byte. Call ids derive from it: an engine ignores
	// events of a call it saw end, so give each run against a long-lived engine its own
	// seed.
	Seed uint64
	// TeamID is the call.teamId of every call.
	TeamID string
	// AssistantIDs are the call.assistantId values; each call gets one of them.
	AssistantIDs []string
	// Subject is the subject layout of the events: {callId} and {type} are replaced by
	// the call id and the event type.
	Subject string
}

// DefaultConfig returns the defaults: 200 calls of 4 to 12 turns, 5 % late replies,
// 2 % "hello?" stretches, 2 % late tool results and 1 % late replies after a tool (and
// 15 % of the other turns call a tool in time), 10 % of the callers left waiting hanging
// up, against a detector with a 5 s timeout and a 10 s max wait, and payloads of about
// 30 KB at 60 turns.
func DefaultConfig() Config {
	return Config{
		Calls:          200,
		Ramp:           5 * time.Second,
		TurnsMin:       4,
		TurnsMax:       12,
		ThinkMin:       2 * time.Second,
		ThinkMax:       6 * time.Second,
		ReplyMin:       600 * time.Millisecond,
		ReplyMax:       2500 * time.Millisecond,
		StallShare:     0.05,
		HelloShare:     0.02,
		HelloGapMin:    3 * time.Second,
		HelloGapMax:    4500 * time.Millisecond,
		LateMax:        4 * time.Second,
		SilentShare:    0.25,
		HangUpShare:    0.1,
		ToolShare:      0.15,
		ToolStallShare: 0.02,
		AfterToolShare: 0.01,
		Timeout:        5 * time.Second,
		MaxWait:        10 * time.Second,
		Margin:         500 * time.Millisecond,
		PayloadBytes:   30_000,
		PayloadTurns:   60,
		Seed:           1,
		TeamID:         "team-sim",
		AssistantIDs:   []string{"asst-front-desk", "asst-billing", "asst-booking"},
		Subject:        "voice.events.{callId}.{type}",
	}
}

// ErrConfig is wrapped by every error of Config.Validate.
var ErrConfig = errors.New("sim: invalid configuration")

// maxTurns bounds TurnsMax: message counts and indexes are int32, and a turn takes a
// handful of messages.
const maxTurns = 1 << 20

// Validate checks the configuration.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	share := func(name string, p float64) error {
		if !(p >= 0 && p <= 1) {
			return bad("%s must be in [0, 1], got %v", name, p)
		}
		return nil
	}
	for _, s := range []struct {
		name string
		p    float64
	}{{"stall share", c.StallShare}, {"hello share", c.HelloShare}, {"silent share", c.SilentShare}, {"hang-up share", c.HangUpShare},
		{"tool share", c.ToolShare}, {"tool stall share", c.ToolStallShare}, {"after-tool share", c.AfterToolShare}} {
		if err := share(s.name, s.p); err != nil {
			return err
		}
	}
	switch {
	case c.Calls < 1:
		return bad("calls must be at least 1, got %d", c.Calls)
	case c.Ramp < 0:
		return bad("ramp must not be negative, got %v", c.Ramp)
	case c.Workers < 0:
		return bad("workers must not be negative, got %d", c.Workers)
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return bad("rate must be 0 or above, got %v", c.Rate)
	case c.Burst < 0:
		return bad("burst must not be negative, got %d", c.Burst)
	case c.TurnsMin < 1 || c.TurnsMax < c.TurnsMin || c.TurnsMax > maxTurns:
		return bad("turns must satisfy 1 <= min <= max <= %d, got %d..%d", maxTurns, c.TurnsMin, c.TurnsMax)
	case c.ThinkMin < 0 || c.ThinkMax < c.ThinkMin:
		return bad("think time must satisfy 0 <= min <= max, got %v..%v", c.ThinkMin, c.ThinkMax)
	case c.ReplyMin <= 0 || c.ReplyMax < c.ReplyMin:
		return bad("reply latency must satisfy 0 < min <= max, got %v..%v", c.ReplyMin, c.ReplyMax)
	case c.HelloGapMin <= 0 || c.HelloGapMax < c.HelloGapMin:
		return bad("hello gap must satisfy 0 < min <= max, got %v..%v", c.HelloGapMin, c.HelloGapMax)
	case c.LateMax < 0:
		return bad("late max must not be negative, got %v", c.LateMax)
	case c.StallShare+c.HelloShare+c.ToolStallShare+c.AfterToolShare > 1:
		return bad("the stall, hello, tool stall and after-tool shares must not exceed 1 together, got %v",
			c.StallShare+c.HelloShare+c.ToolStallShare+c.AfterToolShare)
	case c.Timeout < time.Millisecond:
		return bad("timeout must be at least 1ms, got %v", c.Timeout)
	case c.MaxWait < 0 || (c.MaxWait > 0 && c.MaxWait <= c.Timeout):
		return bad("max-wait must be 0 or above timeout %v, got %v", c.Timeout, c.MaxWait)
	case c.ToolTimeout != 0 && c.ToolTimeout < c.Timeout:
		// A tool call would move the deadline nearer, into the steps planned in time.
		return bad("tool timeout must be 0 or at least timeout %v, got %v", c.Timeout, c.ToolTimeout)
	case c.Margin < 0 || c.Timeout <= 2*c.Margin:
		// A reply in time must fit before Timeout-Margin, after a gap of at least Margin.
		return bad("margin must be 0 or above and below half the timeout %v, got %v", c.Timeout, c.Margin)
	case c.PayloadBytes < 0 || c.TextBytes < 0:
		return bad("payload and text bytes must not be negative, got %d and %d", c.PayloadBytes, c.TextBytes)
	case c.PayloadBytes > 0 && c.PayloadTurns < 1:
		return bad("payload turns must be at least 1, got %d", c.PayloadTurns)
	case len(c.AssistantIDs) == 0:
		return bad("at least one assistant id is needed")
	case c.Subject == "" || strings.ContainsAny(c.Subject, " \t\r\n"):
		return bad("subject must be a non-empty subject without white space, got %q", c.Subject)
	}
	return nil
}

// params are the values of a Config in the units the simulation computes with: whole
// milliseconds and draw thresholds. They are derived once, in New.
type params struct {
	turnsMin, turnsMax       int64
	thinkMin, thinkMax       int64
	replyMin, replyMax       int64
	gapMin, gapMax           int64
	lateMax                  int64
	timeout, maxWait, margin int64
	toolTimeout              int64
	// Thresholds of the turn kind draw: stall, then stall+hello, and so on.
	stall, hello, toolStall, afterTool uint64
	silent, postHello                  uint64
	hangUp, tool                       uint64
	calls                              int64
	ramp                               int64
}

// minGap is the least time between two messages of a call, so that no two events of a
// call share a timestamp and their order never rests on a tie.
const minGap = 50

func newParams(c Config) params {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	p := params{
		turnsMin:  int64(c.TurnsMin),
		turnsMax:  int64(c.TurnsMax),
		thinkMin:  ms(c.ThinkMin),
		thinkMax:  ms(c.ThinkMax),
		lateMax:   ms(c.LateMax),
		timeout:   ms(c.Timeout),
		maxWait:   ms(c.MaxWait),
		margin:    ms(c.Margin),
		stall:     threshold(c.StallShare),
		hello:     threshold(c.StallShare + c.HelloShare),
		toolStall: threshold(c.StallShare + c.HelloShare + c.ToolStallShare),
		afterTool: threshold(c.StallShare + c.HelloShare + c.ToolStallShare + c.AfterToolShare),
		tool:      threshold(c.ToolShare),
		silent:    threshold(c.SilentShare),
		// Half of the callers whose reply is late say something again before it comes.
		postHello: threshold(0.5),
		hangUp:    threshold(c.HangUpShare),
		calls:     int64(c.Calls),
		ramp:      ms(c.Ramp),
	}
	p.toolTimeout = p.timeout
	if c.ToolTimeout > 0 {
		p.toolTimeout = ms(c.ToolTimeout)
	}
	// Replies and repetitions that are meant to be in time stay clear of the deadline.
	clear := p.timeout - p.margin
	p.replyMax = min(ms(c.ReplyMax), clear)
	p.replyMin = min(ms(c.ReplyMin), p.replyMax)
	p.gapMax = min(ms(c.HelloGapMax), clear)
	p.gapMin = min(ms(c.HelloGapMin), p.gapMax)
	return p
}
