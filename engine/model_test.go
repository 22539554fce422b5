package engine

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// This file checks the engine against a reference model: SPEC §2 written out again, as
// plainly as possible, over whole message lists rather than the detector's stretches,
// and driven by random traffic with duplicates, losses, reordering, backlogs, skewed
// clocks, empty replies and ends.

// wireMsg is a message as a pipeline sends it.
type wireMsg struct {
	id, role, text string
	hasTS          bool
	ts             int64 // Unix ms
}

// wireEvent is one delivery of the generated traffic.
type wireEvent struct {
	at     int64 // delivery time, ns after start
	callID string
	typ    detector.Type
	status detector.Status
	msgs   []wireMsg // the whole history, for a conversation-update
	name   string    // the payload name
}

func isUserTurn(m wireMsg) bool {
	return strings.EqualFold(m.role, "user") && strings.TrimSpace(m.text) != ""
}

func isSpokenAssistant(m wireMsg) bool {
	r := strings.ToLower(m.role)
	return (r == "assistant" || r == "bot") && strings.TrimSpace(m.text) != ""
}

// modelCall is the reference state of one call.
type modelCall struct {
	last        int64
	count       int
	ended       bool
	open, hung  bool
	firstIdx    int
	lastIdx     int
	firstID     string
	lastID      string
	firstAnchor int64
	lastAnchor  int64
	reason      detector.Reason
	snapshot    string
	latest      string
}

type model struct {
	cfg   detector.Config
	calls map[string]*modelCall
	outs  map[string][]string
	// cuts are, per call, the number of its outputs when the model forgot it: a call
	// that comes back after its TTL starts afresh, and may hang the same stretch again.
	cuts map[string][]int
}

func newModel(cfg detector.Config) *model {
	return &model{cfg: cfg, calls: map[string]*modelCall{}, outs: map[string][]string{}, cuts: map[string][]int{}}
}

func (m *model) anchor(msg wireMsg, now int64) int64 {
	if !msg.hasTS {
		return now
	}
	t := msg.ts * int64(time.Millisecond)
	return min(max(t, now-int64(m.cfg.MaxLag)), now)
}

func idOf(msgs []wireMsg, i int) string {
	if msgs[i].id == "" {
		return fmt.Sprintf("#%d", i)
	}
	return msgs[i].id
}

// deadline returns when the open stretch of c hangs and why.
func (m *model) deadline(c *modelCall) (int64, detector.Reason) {
	turn := c.lastAnchor + int64(m.cfg.Timeout)
	if m.cfg.MaxWait > 0 && c.firstAnchor+int64(m.cfg.MaxWait) < turn {
		return c.firstAnchor + int64(m.cfg.MaxWait), detector.ReasonMaxWait
	}
	return turn, detector.ReasonTurnTimeout
}

// advance fires what is due at now: hangs, then expiries.
func (m *model) advance(now int64) {
	for id, c := range m.calls {
		if c.open && !c.hung {
			if at, reason := m.deadline(c); at <= now {
				from, threshold := c.lastAnchor, m.cfg.Timeout
				if reason == detector.ReasonMaxWait {
					from, threshold = c.firstAnchor, m.cfg.MaxWait
				}
				m.emit(id, fmt.Sprintf("hang %v user=%s first=%s at=%d deadline=%d wait=%d threshold=%d snapshot=%s latest=%s",
					reason, c.lastID, c.firstID, now-start.UnixNano(), at-start.UnixNano(), now-from, int64(threshold), c.snapshot, c.latest))
				c.hung, c.reason = true, reason
			}
		}
		if !(c.open && !c.hung) && now >= c.last+int64(m.cfg.CallTTL) {
			delete(m.calls, id)
			m.cuts[id] = append(m.cuts[id], len(m.outs[id]))
		}
	}
}

func (m *model) emit(id, s string) { m.outs[id] = append(m.outs[id], s) }

func (m *model) apply(ev wireEvent, now int64) {
	if ev.typ == detector.TypeOutput {
		return
	}
	c := m.calls[ev.callID]
	if c == nil {
		c = &modelCall{}
		m.calls[ev.callID] = c
	}
	c.last = max(c.last, now)
	if c.ended {
		return
	}
	if ev.typ == detector.TypeEndOfCallReport || ev.status == detector.StatusFinished || ev.status == detector.StatusForwarded {
		c.ended, c.open = true, false
		return
	}
	if ev.typ != detector.TypeConversationUpdate {
		if c.open && !c.hung {
			c.latest = ev.name
		}
		return
	}
	msgs := ev.msgs
	if len(msgs) < c.count {
		return
	}
	c.count = len(msgs)

	answered := -1
	if c.open {
		reply := -1
		for j := c.firstIdx + 1; j < len(msgs); j++ {
			if isSpokenAssistant(msgs[j]) {
				reply = j
				break
			}
		}
		if reply < 0 {
			if !c.hung {
				c.snapshot, c.latest = ev.name, ev.name
				lastUser := -1
				for i := range msgs {
					if isUserTurn(msgs[i]) {
						lastUser = i
					}
				}
				if lastUser > c.lastIdx {
					c.lastIdx, c.lastID, c.lastAnchor = lastUser, idOf(msgs, lastUser), m.anchor(msgs[lastUser], now)
				}
			}
			return
		}
		if c.hung {
			userBefore := -1
			for i := range reply {
				if isUserTurn(msgs[i]) {
					userBefore = i
				}
			}
			wait := max(m.anchor(msgs[reply], now)-c.firstAnchor, 0)
			m.emit(ev.callID, fmt.Sprintf("hang-resolved %v user=%s first=%s reply=%s at=%d wait=%d snapshot=%s latest=%s",
				c.reason, idOf(msgs, userBefore), c.firstID, idOf(msgs, reply), now-start.UnixNano(), wait, ev.name, ev.name))
		}
		c.open, c.hung, answered = false, false, reply
	}
	// The unanswered stretch: the user turns after the last reply, where a reply is a
	// spoken assistant message with a user turn somewhere before it.
	lastReply, seenUser := -1, false
	for i, msg := range msgs {
		switch {
		case isUserTurn(msg):
			seenUser = true
		case isSpokenAssistant(msg) && seenUser:
			lastReply = i
		}
	}
	first, last := -1, -1
	for i := lastReply + 1; i < len(msgs); i++ {
		if isUserTurn(msgs[i]) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 && first > answered {
		c.open, c.hung = true, false
		c.firstIdx, c.firstID, c.firstAnchor = first, idOf(msgs, first), m.anchor(msgs[first], now)
		c.lastIdx, c.lastID, c.lastAnchor = last, idOf(msgs, last), m.anchor(msgs[last], now)
		c.snapshot, c.latest = ev.name, ev.name
	}
}

// render renders an engine output like the model does.
func render(o detector.Output) string {
	at := o.At - start.UnixNano()
	name := func(p detector.Payload) string {
		if p == nil {
			return ""
		}
		return string(p.(payload))
	}
	if o.Kind == detector.KindHang {
		return fmt.Sprintf("hang %v user=%s first=%s at=%d deadline=%d wait=%d threshold=%d snapshot=%s latest=%s",
			o.Reason, o.UserMessageID, o.FirstUserMessageID, at, o.Deadline-start.UnixNano(), int64(o.Wait), int64(o.Threshold),
			name(o.Snapshot), name(o.Latest))
	}
	return fmt.Sprintf("hang-resolved %v user=%s first=%s reply=%s at=%d wait=%d snapshot=%s latest=%s",
		o.Reason, o.UserMessageID, o.FirstUserMessageID, o.ReplyMessageID, at, int64(o.Wait), name(o.Snapshot), name(o.Latest))
}

// genCall generates the traffic of one call: a conversation whose assistant is
// sometimes slow, sometimes silent, published with delays, losses, duplicates and
// reordering, with skewed message clocks, and an end that may be missing or repeated.
func genCall(rng *rand.Rand, id string, begin int64) (evs []wireEvent, end int64) {
	ms := int64(time.Millisecond)
	skew := rng.Int64N(4000) - 3000 // the pipeline's clock: 3 s behind to 1 s ahead
	publish := func(at int64, ev wireEvent) {
		copies := 1
		switch p := rng.IntN(20); {
		case p == 0:
			copies = 0 // lost
		case p <= 2:
			copies = 2 // duplicated
		}
		for range copies {
			delay := rng.Int64N(300) * ms
			if rng.IntN(15) == 0 {
				delay = rng.Int64N(8000) * ms // a backlog
			}
			e := ev
			e.at, e.callID = at+delay, id
			evs = append(evs, e)
		}
	}
	var hist []wireMsg
	now := begin
	n := 0
	add := func(role, text string) {
		n++
		m := wireMsg{id: fmt.Sprintf("%s-%d", role, n), role: role, text: text, hasTS: rng.IntN(10) != 0,
			ts: (now+skew*ms)/ms - rng.Int64N(200)}
		if rng.IntN(30) == 0 {
			m.id = "" // named by its index
		}
		hist = append(hist, m)
		publish(now, wireEvent{typ: detector.TypeConversationUpdate, status: detector.StatusOngoing, msgs: slices.Clone(hist)})
	}
	if rng.IntN(2) == 0 {
		add("assistant", "Welcome.")
	}
	for range rng.IntN(8) + 1 {
		now += rng.Int64N(3000)*ms + 200*ms
		switch rng.IntN(12) {
		case 0:
			add("user", "  ") // no turn
		case 1:
			add("tool", "lookup")
		case 2:
			add("assistant", "") // empty: no reply
		default:
			add("user", "Hello?")
		}
		if rng.IntN(6) == 0 {
			publish(now, wireEvent{typ: detector.TypeStatusUpdate, status: detector.StatusOngoing})
		}
		if rng.IntN(25) == 0 {
			publish(now, wireEvent{typ: detector.TypeOutput})
		}
		// The assistant answers after 0.3–14 s: often in time, sometimes late, sometimes
		// so late the caller speaks again first.
		wait := rng.Int64N(14_000)*ms + 300*ms
		if rng.IntN(3) == 0 {
			wait = rng.Int64N(2000)*ms + 300*ms
		}
		switch rng.IntN(6) {
		case 0:
			now += wait / 2
			add("user", "Are you there?")
			wait /= 2
		case 1:
			// "Hello? Hello?": each turn re-arms the turn timeout; only the max wait
			// catches the stretch.
			for range rng.IntN(3) + 2 {
				now += rng.Int64N(1500)*ms + 3000*ms
				add("user", "Hello?")
			}
		}
		now += wait
		role := "assistant"
		if rng.IntN(5) == 0 {
			role = "BOT"
		}
		add(role, "Here you go.")
	}
	now += rng.Int64N(5000)*ms + 100*ms
	switch rng.IntN(5) {
	case 0: // the pipeline goes away: only the TTL frees the call
	case 1:
		publish(now, wireEvent{typ: detector.TypeStatusUpdate, status: detector.StatusForwarded})
	case 2:
		publish(now, wireEvent{typ: detector.TypeStatusUpdate, status: detector.StatusFinished})
	default:
		// The report ends the call whatever its call.status says.
		status := []detector.Status{detector.StatusFinished, detector.StatusOngoing, detector.StatusUnknown}[rng.IntN(3)]
		publish(now, wireEvent{typ: detector.TypeEndOfCallReport, status: status, msgs: slices.Clone(hist)})
	}
	return evs, now
}

// TestEngineMatchesModel runs random traffic of many calls through the engine on a
// fake clock and through the model, and requires the same outputs at the same times.
func TestEngineMatchesModel(t *testing.T) {
	seeds, calls := 8, 250
	if testing.Short() {
		seeds, calls = 2, 100
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			checkModel(t, seed, calls)
		})
	}
}

func checkModel(t *testing.T, seed uint64, calls int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := detector.Config{Timeout: 5 * time.Second, MaxWait: 10 * time.Second, MaxLag: time.Second, CallTTL: 2 * time.Minute}
	if seed%2 == 1 {
		cfg.MaxWait = 0
	}
	var evs []wireEvent
	for i := range calls {
		e, _ := genCall(rng, fmt.Sprintf("call-%d", i), rng.Int64N(int64(60*time.Second)))
		evs = append(evs, e...)
	}
	// Extra clock steps between deliveries, so that deadlines fire on their own too.
	for range len(evs) / 4 {
		evs = append(evs, wireEvent{at: rng.Int64N(int64(150 * time.Second))})
	}
	slices.SortStableFunc(evs, func(a, b wireEvent) int { return cmp.Compare(a.at, b.at) })

	h := newHarness(t, WithConfig(cfg), WithShards(3))
	m := newModel(cfg)
	for i, ev := range evs {
		if d := ev.at - (h.now() - start.UnixNano()); d > 0 {
			h.clock.Advance(time.Duration(d))
		}
		now := h.now()
		m.advance(now)
		if ev.callID == "" {
			h.sync()
			continue
		}
		ev.name = fmt.Sprintf("e%d", i)
		m.apply(ev, now)
		h.send(toEvent(ev))
	}
	h.advance(time.Hour) // everything hangs or expires
	m.advance(h.now())

	got := map[string][]string{}
	for _, p := range h.sink.take() {
		got[p.callID] = append(got[p.callID], render(p.out))
	}
	var hangs, resolved, maxWait int
	for id, want := range m.outs {
		if !slices.Equal(got[id], want) {
			t.Errorf("seed %d, %s: outputs differ\n got: %q\nwant: %q", seed, id, got[id], want)
		}
		checkInvariants(t, id, want, m.cuts[id])
		for _, s := range want {
			if strings.HasPrefix(s, "hang ") {
				hangs++
				if strings.HasPrefix(s, "hang max-wait") {
					maxWait++
				}
			} else {
				resolved++
			}
		}
	}
	for id, g := range got {
		if _, ok := m.outs[id]; !ok {
			t.Errorf("seed %d, %s: engine published %q, model nothing", seed, id, g)
		}
	}
	if st := h.e.Stats(); st.Calls != 0 || st.Retained != 0 {
		t.Errorf("after every TTL: Stats() calls/retained = %d/%d, want 0/0", st.Calls, st.Retained)
	}
	// The traffic must exercise what it is meant to.
	if hangs < calls/10 || resolved < calls/20 || (cfg.MaxWait > 0 && maxWait < calls/50) {
		t.Errorf("seed %d: only %d hangs (%d max-wait) and %d resolved in %d calls: the generator lost its teeth",
			seed, hangs, maxWait, resolved, calls)
	}
	t.Logf("seed %d: %d events, %d calls, %d hangs (%d max-wait), %d resolved", seed, len(evs), calls, hangs, maxWait, resolved)
}

// checkInvariants checks what must hold whatever the model says, within each life of a
// call (cuts are where it was forgotten): a resolved only after a hang of the same
// stretch, never two hangs for one stretch.
func checkInvariants(t *testing.T, id string, outs []string, cuts []int) {
	t.Helper()
	hung := ""
	for i, s := range outs {
		if slices.Contains(cuts, i) {
			hung = ""
		}
		first := s[strings.Index(s, "first=")+6:]
		first = first[:strings.IndexByte(first, ' ')]
		switch {
		case strings.HasPrefix(s, "hang "):
			if hung != "" {
				t.Errorf("%s: a second hang before a resolved: %q", id, outs)
			}
			hung = first
		default:
			if hung != first {
				t.Errorf("%s: a resolved without the hang of its stretch: %q", id, outs)
			}
			hung = ""
		}
	}
}

// toEvent builds the engine's event for a generated delivery, with the detector's
// history rules (the decoder's tests check that it applies the same ones).
func toEvent(ev wireEvent) *detector.Event {
	out := &detector.Event{Type: ev.typ, Status: ev.status, CallID: ev.callID, Messages: int32(len(ev.msgs)), Payload: payload(ev.name)}
	for i, m := range ev.msgs {
		out.Stretches = detector.AddMessage(out.Stretches, detector.ParseRole(m.role), strings.TrimSpace(m.text) != "",
			detector.Turn{ID: m.id, Index: int32(i), HasTime: m.hasTS, Time: m.ts})
	}
	return out
}
