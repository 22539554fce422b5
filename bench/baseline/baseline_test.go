package baseline

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/internal/fixtures"
	"github.com/hangwatch/hangwatch/internal/sim"
)

// fixture is one event of the fixtures' call, received at its message.timestamp.
type fixture struct {
	name string
	data []byte
	at   time.Time
}

func readFixtures(t *testing.T) []fixture {
	t.Helper()
	names := fixtures.WebhookNames()
	if len(names) != 8 {
		t.Fatalf("fixtures: %d files", len(names))
	}
	var fs []fixture
	for _, p := range names {
		data := fixtures.Webhook(p)
		var env struct {
			Message struct {
				Timestamp int64 `json:"timestamp"`
			} `json:"message"`
		}
		if err := json.Unmarshal(data, &env); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, fixture{name: filepath.Base(p)[:2], data: data, at: time.UnixMilli(env.Message.Timestamp)})
	}
	return fs
}

// brief is what the tests compare of an output.
type brief struct {
	typ, reason, user, first, reply string
	at, wait, threshold             int64
}

func briefOf(p published) brief {
	m := p.out.Message
	return brief{typ: m.Type, reason: m.Hang.Reason, user: m.Hang.UserMessageID, first: m.Hang.FirstUserMessageID,
		reply: m.Hang.ReplyMessageID, at: m.Timestamp, wait: m.Hang.WaitMs, threshold: m.Hang.ThresholdMs}
}

// TestFixtureTimeline replays the call of the fixtures (see their README): with the
// defaults it never hangs; with a 3 s timeout it hangs once on user-2 at 15.3 s and
// resolves at the reply to user-3 with a wait of 7100 ms.
func TestFixtureTimeline(t *testing.T) {
	const (
		callID = "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"
		user2  = 1763647343707
	)
	tests := []struct {
		name    string
		timeout time.Duration
		want    []brief
	}{
		{name: "defaults: no hang", timeout: 5 * time.Second},
		{
			name:    "timeout 3s",
			timeout: 3 * time.Second,
			want: []brief{
				{typ: "hang", reason: "turn-timeout", user: "user-2", first: "user-2", at: user2 + 3000, wait: 3000, threshold: 3000},
				{typ: "hang-resolved", reason: "turn-timeout", user: "user-3", first: "user-2",
					reply: "user-3-Qx81LmZp2a-1763647350457", at: 1763647350816, wait: 7100},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := readFixtures(t)
			cfg := DefaultConfig()
			cfg.Timeout = tt.timeout
			h := newHarness(t, cfg, fs[0].at)
			for _, f := range fs {
				if err := h.handle(f.data, f.at); err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
			}
			h.advanceTo(fs[len(fs)-1].at.Add(time.Hour))
			outs := h.outputs()
			var got []brief
			for _, p := range outs {
				got = append(got, briefOf(p))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("outputs differ\n got: %+v\nwant: %+v", got, tt.want)
			}
			if len(outs) == 0 {
				return
			}
			hang, res := outs[0], outs[1]
			if hang.subject != "voice.hang.team-7a31c9."+callID || hang.msgID != callID+":user-2:hang" ||
				res.subject != "voice.hang-resolved.team-7a31c9."+callID || res.msgID != callID+":user-2:resolved" {
				t.Errorf("subjects %q %q, ids %q %q", hang.subject, res.subject, hang.msgID, res.msgID)
			}
			// The hang carries the history of the latest snapshot before the stall: up to
			// user-2; the resolved, the history including the reply.
			if n := len(hang.out.Message.Messages); n != 4 || hang.out.Message.Messages[3].MessageID != "user-2" {
				t.Errorf("hang carries %d messages, want 4 ending with user-2", n)
			}
			if n := len(res.out.Message.Messages); n != 6 {
				t.Errorf("resolved carries %d messages, want 6", n)
			}
			if st := h.d.Stats(); st.Ended != 1 || st.Hangs != 1 || st.Resolved != 1 || st.Bad != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestFixtureOrdering replays the fixtures out of order: a stale snapshot and a
// duplicate change nothing, and events after the end are ignored.
func TestFixtureOrdering(t *testing.T) {
	fs := readFixtures(t)
	cfg := DefaultConfig()
	cfg.Timeout = 3 * time.Second
	tests := []struct {
		name  string
		give  []int // fixture indexes, each received 1 ms after the previous one
		after time.Duration
		want  []string
	}{
		{name: "user-2 then user-1 (stale): hangs on user-2", give: []int{4, 2}, after: time.Minute, want: []string{"hang user-2"}},
		{name: "user-2 twice: one hang", give: []int{4, 4}, after: time.Minute, want: []string{"hang user-2"}},
		{name: "user-2, end, then user-2 again: nothing", give: []int{4, 7, 4}, after: time.Minute},
		{name: "user-3 alone: the stretch starts at user-2", give: []int{5}, after: time.Minute, want: []string{"hang user-2"}},
		{name: "user-2 hangs, reply-3: resolved", give: []int{4, -1, 6}, want: []string{"hang user-2", "hang-resolved user-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := fs[4].at
			h := newHarness(t, cfg, at)
			for _, i := range tt.give {
				at = at.Add(time.Millisecond)
				if i < 0 {
					at = at.Add(10 * time.Second)
					h.advanceTo(at)
					continue
				}
				if err := h.handle(fs[i].data, at); err != nil {
					t.Fatal(err)
				}
			}
			h.advanceTo(at.Add(tt.after))
			var got []string
			for _, p := range h.outputs() {
				got = append(got, p.out.Message.Type+" "+p.out.Message.Hang.FirstUserMessageID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"not JSON", `bench-marker 1`},
		{"no message", `{"other":{}}`},
		{"no call", `{"message":{"type":"status-update"}}`},
		{"no call id", `{"message":{"type":"status-update","call":{"status":"ongoing"}}}`},
		{"call id is a number", `{"message":{"type":"status-update","call":{"id":42}}}`},
		{"messages is not an array", `{"message":{"type":"conversation-update","call":{"id":"c"},"messages":{}}}`},
		{"text is not a string", `{"message":{"type":"conversation-update","call":{"id":"c"},"messages":[{"role":"user","text":1}]}}`},
		{"too large", `{"message":{"type":"status-update","call":{"id":"c"},"pad":"` + strings.Repeat("x", 2000) + `"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxBytes = 1000
			h := newHarness(t, cfg, time.UnixMilli(1763647331000))
			err := h.handle([]byte(tt.give), h.clock.Now())
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("Handle() = %v, want ErrBadInput", err)
			}
			if st := h.d.Stats(); st.Bad != 1 || st.Calls != 0 {
				t.Errorf("stats %+v, want one bad event and no call", st)
			}
		})
	}
}

func TestTTLAndMaxCalls(t *testing.T) {
	fs := readFixtures(t)
	cfg := DefaultConfig()
	cfg.MaxCalls, cfg.CallTTL = 1, time.Minute
	start := fs[1].at
	h := newHarness(t, cfg, start)
	if err := h.handle(fs[1].data, start); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(string(fs[1].data), "WC-5f0c2a8e", "WC-00000000", 1)
	if err := h.handle([]byte(other), start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := h.d.Stats(); st.Calls != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v, want one call and one refused", st)
	}
	// After the TTL, the idle call is forgotten and a new one fits.
	if err := h.handle([]byte(other), start.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if st := h.d.Stats(); st.Calls != 1 || st.SweptCalls != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v, want the first call swept and the second admitted", st)
	}
}

// TestGroundTruth runs calls of the simulation, with many stalls of every kind,
// through the baseline and compares its outputs with the simulation's ground truth:
// every stall hangs once, on time, for the right reason, and is resolved as scripted.
func TestGroundTruth(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.StallShare, cfg.HelloShare, cfg.SilentShare, cfg.HangUpShare = 0.3, 0.2, 0.5, 0.2
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1763647331000)
	type timed struct {
		at   time.Time
		data []byte
	}
	var (
		events []timed
		want   = map[string][]brief{}
	)
	const calls = 60
	for i := range uint64(calls) {
		sc := s.Script(i, t0.Add(time.Duration(i)*317*time.Millisecond))
		for ev := range sc.Events() {
			events = append(events, timed{sc.Start().Add(ev.At), slices.Clone(ev.Data)})
		}
		for _, st := range sc.Stalls() {
			want[sc.CallID()] = append(want[sc.CallID()], brief{typ: "hang", reason: st.Reason.String(),
				user: st.UserMessageID, first: st.FirstUserMessageID, at: st.At().UnixMilli()})
			if st.Resolved {
				want[sc.CallID()] = append(want[sc.CallID()], brief{typ: "hang-resolved", reason: st.Reason.String(),
					user: st.LastUserMessageID, first: st.FirstUserMessageID, reply: st.ReplyMessageID,
					at: st.Start.Add(st.Reply).UnixMilli(), wait: st.Wait.Milliseconds()})
			}
		}
	}
	slices.SortStableFunc(events, func(a, b timed) int { return a.at.Compare(b.at) })

	h := newHarness(t, DefaultConfig(), t0)
	for _, ev := range events {
		if err := h.handle(ev.data, ev.at); err != nil {
			t.Fatal(err)
		}
	}
	h.advanceTo(events[len(events)-1].at.Add(time.Hour))

	got := map[string][]brief{}
	stalls := 0
	for _, p := range h.outputs() {
		var call CallFields
		if err := json.Unmarshal(p.out.Message.Call, &call); err != nil {
			t.Fatal(err)
		}
		b := briefOf(p)
		b.threshold = 0
		if b.typ == "hang" {
			stalls++
			b.wait = 0
		}
		got[call.ID] = append(got[call.ID], b)
		if want := fmt.Sprintf("voice.%s.team-sim.%s", b.typ, call.ID); p.subject != want {
			t.Errorf("subject %q, want %q", p.subject, want)
		}
	}
	for id, w := range want {
		slices.SortStableFunc(w, func(a, b brief) int { return cmp.Compare(a.at, b.at) })
		if !slices.Equal(got[id], w) {
			t.Errorf("call %s:\n got %+v\nwant %+v", id, got[id], w)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("call %s: false outputs %+v", id, got[id])
		}
	}
	if stalls < 20 {
		t.Errorf("only %d stalls: the test covers too little", stalls)
	}
	if st := h.d.Stats(); st.Ended != calls || st.Pending != 0 {
		t.Errorf("stats %+v, want every call ended and no timer left", st)
	}
}
