package transport

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/hangevent"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// TestE2EFixtureCalls replays the two example calls of internal/fixtures through a real
// server, package wire's decoder and the engine on a fake clock, each event received at
// its own message.timestamp, and checks the verdicts their READMEs give — as published,
// read back with hangevent by a plain subscriber.
//
// The Vapi call's resolved wait is SPEC's 7700 ms (the reply anchored at its start,
// `time`; the wait from the user turn's own end to the reply's own start), not the 11600
// ms that the fixture's README derives under an older rule.
func TestE2EFixtureCalls(t *testing.T) {
	vapiCfg := detector.DefaultConfig()
	webhookCfg := detector.DefaultConfig()
	webhookCfg.Timeout = 3 * time.Second
	tests := []struct {
		name  string
		cfg   detector.Config
		files []string
		read  func(string) []byte
		// deadlines are the moments (Unix ms) the READMEs say hangs are detected at: the
		// clock stops there on its way, so that each is detected at its own time.
		deadlines []int64
		want      []string
	}{
		{
			name: "webhook call with --timeout 3s", cfg: webhookCfg, files: fixtures.WebhookNames(), read: fixtures.Webhook,
			deadlines: []int64{webhookStart + 15300},
			want: []string{
				"hang turn-timeout awaiting-assistant user=user-2 first=user-2 wait=3000 threshold=3000",
				"hang-resolved turn-timeout awaiting-assistant user=user-3 first=user-2 wait=7100 reply=user-3-Qx81LmZp2a-1763647350457",
			},
		},
		{
			name: "Vapi call", cfg: vapiCfg, files: fixtures.VapiNames(), read: fixtures.Vapi,
			deadlines: []int64{vapiStart + 13300, vapiStart + 32800},
			want: []string{
				"hang turn-timeout awaiting-tool user=user-1772700009618-* first=user-1772700009618-* wait=5000 threshold=5000 model=openai/gpt-4o-mini",
				"hang-resolved turn-timeout awaiting-tool user=user-1772700009618-* first=user-1772700009618-* wait=7700 reply=assistant-1772700017318-* model=openai/gpt-4o-mini",
				"hang turn-timeout awaiting-assistant user=user-1772700029118-* first=user-1772700029118-* wait=5000 threshold=5000 model=openai/gpt-4o-mini",
				"hang-unresolved turn-timeout awaiting-assistant user=user-1772700029118-* first=user-1772700029118-* wait=9000 ended=customer-ended-call model=openai/gpt-4o-mini",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFixtureE2E(t, tt.cfg, time.UnixMilli(timestampOf(t, tt.read(tt.files[0]))).Add(-time.Second))
			h.stops = tt.deadlines
			for _, name := range tt.files {
				data := tt.read(name)
				// Every deadline due before the event fires first, at its own time.
				h.runTo(time.UnixMilli(timestampOf(t, data)))
				h.pub.publish("fixture", data)
				h.settle()
			}
			h.runTo(h.clock.Now().Add(time.Minute))
			got := h.received(len(tt.want))
			if len(got) != len(tt.want) {
				t.Fatalf("received %q, want %q", got, tt.want)
			}
			for i := range got {
				if !matches(got[i], tt.want[i]) {
					t.Errorf("output %d: %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// The starts of the fixture calls (Unix ms), which their READMEs count from.
const (
	webhookStart = 1763647331407 // call.startAt
	vapiStart    = 1772700001318 // call.startedAt
)

// timestampOf returns an event's message.timestamp.
func timestampOf(t *testing.T, data []byte) int64 {
	t.Helper()
	var env struct {
		Message struct {
			Timestamp int64 `json:"timestamp"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	return env.Message.Timestamp
}

// matches compares an output's summary with a pattern whose * stands for the hex digits
// of a fallback message id.
func matches(got, pattern string) bool {
	for len(pattern) > 0 {
		switch {
		case pattern[0] == '*':
			i := 0
			for i < len(got) && (got[i] >= '0' && got[i] <= '9' || got[i] >= 'a' && got[i] <= 'f') {
				i++
			}
			if i == 0 {
				return false
			}
			got, pattern = got[i:], pattern[1:]
		case len(got) > 0 && got[0] == pattern[0]:
			got, pattern = got[1:], pattern[1:]
		default:
			return false
		}
	}
	return got == ""
}

// fixtureE2E is coreE2E with a plain subscriber of all three outputs, on a clock that
// starts at the fixtures' day.
type fixtureE2E struct {
	*coreE2E
	outs  chan *nats.Msg
	stops []int64 // Unix ms the clock stops at on its way
}

func newFixtureE2E(t *testing.T, cfg detector.Config, start time.Time) *fixtureE2E {
	t.Helper()
	h := &coreE2E{t: t, srv: startServer(t, EmbeddedOptions{}), clock: clockwork.NewFakeClockAt(start), rec: newRecorder()}
	h.conn = connect(t, h.srv, ConnOptions{})
	h.src = NewSource(h.conn, SourceOptions{ProbeEvery: noProbes, Now: h.clock.Now})
	h.sink = &recordingSink{next: NewSink(h.conn, SinkOptions{})}
	h.pub = &testPublisher{t: t, srv: h.srv, nc: plainClient(t, h.srv)}
	f := &fixtureE2E{coreE2E: h, outs: make(chan *nats.Msg, 16)}
	sub := plainClient(t, h.srv)
	// One channel for the three subscriptions, filled by the connection's reader: the
	// outputs keep the order they were published in (a callback per subscription would
	// run on a goroutine of its own, and a hang could overtake its resolution).
	for _, w := range hangevent.Wildcards() {
		if _, err := sub.ChanSubscribe(w, f.outs); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	h.eng = runEngine(t, &tapped{h.src, h.rec}, h.sink, engine.WithClock(h.clock), engine.WithConfig(cfg))
	h.rec.waitMark(t, 0, time.Time{})
	t.Cleanup(h.rec.release)
	return f
}

// runTo moves the clock to t, stopping and settling at every stop on the way, so that
// each deadline fires at its own time.
func (h *fixtureE2E) runTo(t time.Time) {
	h.t.Helper()
	for _, stop := range h.stops {
		if at := time.UnixMilli(stop); at.After(h.clock.Now()) && !at.After(t) {
			h.advance(at.Sub(h.clock.Now()))
			h.settle()
		}
	}
	if t.After(h.clock.Now()) {
		h.advance(t.Sub(h.clock.Now()))
	}
	h.settle()
}

// received returns the summaries of what the plain subscriber got, once n came (or the
// wait ended).
func (h *fixtureE2E) received(n int) []string {
	h.t.Helper()
	if err := h.conn.NATS().Flush(); err != nil {
		h.t.Fatal(err)
	}
	var got []string
	timeout := time.After(waitFor)
	for len(got) < n {
		select {
		case m := <-h.outs:
			ev, err := hangevent.Parse(m.Data)
			if err != nil {
				h.t.Fatalf("an output hangevent cannot parse: %v", err)
			}
			hg := ev.Message.Hang
			s := fmt.Sprintf("%s %s %s user=%s first=%s wait=%d", ev.Message.Type, hg.Reason, hg.Stage, hg.UserMessageID, hg.FirstUserMessageID, hg.WaitMs)
			switch ev.Message.Type {
			case hangevent.KindHang:
				s += fmt.Sprintf(" threshold=%d", hg.ThresholdMs)
			case hangevent.KindResolved:
				s += " reply=" + hg.ReplyMessageID
			case hangevent.KindUnresolved:
				s += " ended=" + hg.EndedReason
			}
			if hg.Model != nil {
				s += " model=" + hg.Model.Provider + "/" + hg.Model.Model
			}
			got = append(got, s)
		case <-timeout:
			return got
		}
	}
	select { // nothing more comes
	case m := <-h.outs:
		h.t.Errorf("an output more: %s", m.Data)
	case <-time.After(100 * time.Millisecond):
	}
	return slices.Clip(got)
}
