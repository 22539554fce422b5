package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/wire"
)

// signaling wraps a Source and tells the test each time it has handed an event to the
// engine, so that the test can then Sync the engine.
type signaling struct {
	*Source
	delivered chan struct{}
}

func (s signaling) Run(ctx context.Context, deliver func(*detector.Event)) error {
	return s.Source.Run(ctx, func(ev *detector.Event) {
		deliver(ev)
		s.delivered <- struct{}{}
	})
}

// e2e is the whole pipeline on a real broker: a pipeline client publishes, the source
// decodes, the engine detects on a fake clock, the sink publishes, a client receives.
type e2e struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	eng    *engine.Engine
	src    signaling
	pub    *nats.Conn
	hangs  chan *nats.Msg
	cancel context.CancelFunc
	done   chan error
}

func newE2E(t *testing.T, cfg detector.Config, start time.Time, opts ...SourceOptions) *e2e {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	h := &e2e{t: t, clock: clockwork.NewFakeClockAt(start), done: make(chan error, 1), pub: plainClient(t, srv)}
	so := SourceOptions{}
	if len(opts) > 0 {
		so = opts[0]
	}
	so.Now = h.clock.Now
	h.src = signaling{NewSource(conn, so), make(chan struct{}, 1)}
	eng, err := engine.New(h.src, NewSink(conn, SinkOptions{}), engine.WithClock(h.clock), engine.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	sc := plainClient(t, srv)
	h.hangs = make(chan *nats.Msg, 16)
	for _, subject := range []string{"voice.hang.>", "voice.hang-resolved.>"} {
		if _, err := sc.ChanSubscribe(subject, h.hangs); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- eng.Run(ctx) }()
	t.Cleanup(h.stop)
	for deadline := time.Now().Add(waitFor); !h.src.Ready(); {
		if time.Now().After(deadline) {
			t.Fatal("source not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return h
}

func (h *e2e) stop() {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
		if err := <-h.done; err != nil {
			h.t.Errorf("engine.Run() = %v", err)
		}
	}
}

// publish publishes data and waits until the engine has applied it.
func (h *e2e) publish(subject string, data []byte) {
	h.t.Helper()
	if err := h.pub.Publish(subject, data); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.src.delivered:
	case <-time.After(waitFor):
		h.t.Fatalf("event on %s never reached the engine", subject)
	}
	h.sync()
}

func (h *e2e) sync() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.eng.Sync(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// advanceTo moves the fake clock to a Unix millisecond time and fires what is due.
func (h *e2e) advanceTo(ms int64) {
	h.t.Helper()
	if d := time.UnixMilli(ms).Sub(h.clock.Now()); d > 0 {
		h.clock.Advance(d)
	}
	h.sync()
}

func (h *e2e) nextOutput() *nats.Msg {
	h.t.Helper()
	select {
	case m := <-h.hangs:
		return m
	case <-time.After(waitFor):
		h.t.Fatal("no output")
	}
	return nil
}

func (h *e2e) noOutput() {
	h.t.Helper()
	// The sink has published before Sync returned; a round trip through the broker
	// makes sure that anything published has arrived.
	if err := h.pub.Flush(); err != nil {
		h.t.Fatal(err)
	}
	select {
	case m := <-h.hangs:
		h.t.Fatalf("unexpected output on %s: %s", m.Subject, m.Data)
	case <-time.After(50 * time.Millisecond):
	}
}

// eventTime returns message.timestamp of a fixture, in Unix ms.
func eventTime(t *testing.T, data []byte) int64 {
	var v struct {
		Message struct{ Timestamp int64 } `json:"message"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v.Message.Timestamp
}

// splice builds the expected output independently of the encoder: the raw values of the
// fixtures, as encoding/json's RawMessage keeps them byte for byte, around the new fields.
func splice(t *testing.T, typ string, at int64, latest, snapshot []byte, hang string) string {
	t.Helper()
	raw := func(data []byte) map[string]json.RawMessage {
		var v struct {
			Message map[string]json.RawMessage `json:"message"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		return v.Message
	}
	l, s := raw(latest), raw(snapshot)
	return fmt.Sprintf(`{"message":{"timestamp":%d,"type":%q,"call":%s,"assistant":%s,"messages":%s,"phone":%s,"customer":%s,"analysis":%s,"hang":%s}}`,
		at, typ, l["call"], s["assistant"], s["messages"], s["phone"], s["customer"], s["analysis"], hang)
}

// TestEndToEndFixtures replays the fixture call through a real broker. With a 3 s
// timeout it hangs once on user-2 and resolves after 7100 ms; with the defaults it never
// hangs (../shared/fixtures/README.md).
func TestEndToEndFixtures(t *testing.T) {
	names := []string{
		"01-status-update-ongoing.json", "02-conversation-update-welcome.json", "03-conversation-update-user-1.json",
		"04-conversation-update-reply-1.json", "05-conversation-update-user-2.json", "06-conversation-update-user-3.json",
		"07-conversation-update-reply-3.json", "08-end-of-call-report.json",
	}
	fixtures := make([][]byte, len(names))
	for i, n := range names {
		fixtures[i] = readFixture(t, n)
	}
	subject := "voice.events.WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10.conversation-update"

	t.Run("timeout 3s: one hang, one resolved", func(t *testing.T) {
		cfg := detector.DefaultConfig()
		cfg.Timeout = 3 * time.Second
		h := newE2E(t, cfg, time.UnixMilli(eventTime(t, fixtures[0])))
		for i, data := range fixtures {
			if i == 5 {
				// user-2 ended at ...343707; its deadline passes before user-3 arrives.
				h.advanceTo(1_763_647_346_707)
				m := h.nextOutput()
				if want := "voice.hang.team-7a31c9.WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"; m.Subject != want {
					t.Errorf("hang subject = %q, want %q", m.Subject, want)
				}
				if got, want := m.Header.Get("Nats-Msg-Id"), "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10:user-2:hang"; got != want {
					t.Errorf("hang Nats-Msg-Id = %q, want %q", got, want)
				}
				want := splice(t, "hang", 1_763_647_346_707, fixtures[4], fixtures[4],
					`{"reason":"turn-timeout","userMessageId":"user-2","firstUserMessageId":"user-2","waitMs":3000,"thresholdMs":3000}`)
				if string(m.Data) != want {
					t.Errorf("hang payload differs from the splice of fixture 05\n got: %s\nwant: %s", m.Data, want)
				}
			}
			h.advanceTo(eventTime(t, data))
			h.publish(subject, data)
			if i == 6 {
				m := h.nextOutput()
				if want := "voice.hang-resolved.team-7a31c9.WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"; m.Subject != want {
					t.Errorf("resolved subject = %q, want %q", m.Subject, want)
				}
				if got, want := m.Header.Get("Nats-Msg-Id"), "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10:user-2:resolved"; got != want {
					t.Errorf("resolved Nats-Msg-Id = %q, want %q", got, want)
				}
				want := splice(t, "hang-resolved", eventTime(t, data), data, data,
					`{"reason":"turn-timeout","userMessageId":"user-3","firstUserMessageId":"user-2","replyMessageId":"user-3-Qx81LmZp2a-1763647350457","waitMs":7100}`)
				if string(m.Data) != want {
					t.Errorf("resolved payload differs from the splice of fixture 07\n got: %s\nwant: %s", m.Data, want)
				}
			}
		}
		h.advanceTo(eventTime(t, fixtures[7]) + 3_600_000)
		h.noOutput()
		if st := h.eng.Stats(); st.Hangs() != 1 || st.Resolved != 1 || st.Tombs != 1 {
			t.Errorf("engine Stats() = %+v, want 1 hang, 1 resolved, the call ended", st)
		}
	})

	t.Run("defaults: no hang", func(t *testing.T) {
		h := newE2E(t, detector.DefaultConfig(), time.UnixMilli(eventTime(t, fixtures[0])))
		for _, data := range fixtures {
			h.advanceTo(eventTime(t, data))
			h.publish(subject, data)
		}
		h.advanceTo(eventTime(t, fixtures[7]) + 3_600_000)
		h.noOutput()
		if st := h.eng.Stats(); st.Hangs() != 0 || st.Events != 8 {
			t.Errorf("engine Stats() = %+v, want 8 events and no hang", st)
		}
	})
}

// TestEndToEndBadInputDoesNotDisturb interleaves every class of bad input of SPEC §5
// with a normal call that stalls: its hang still comes at its deadline, another call's
// near-1 MB event is applied, and the engine keeps running.
func TestEndToEndBadInputDoesNotDisturb(t *testing.T) {
	start := time.UnixMilli(1_763_647_331_000)
	// NATS refuses payloads over 1 MiB, our default limit: set ours just under, so
	// that a near-1 MB event passes and a larger one reaches us to be refused.
	h := newE2E(t, detector.DefaultConfig(), start, SourceOptions{DeadLetter: "voice.dead",
		Limits: wire.Limits{MaxBytes: 1_010_000, MaxDepth: 64}})
	ms := start.UnixMilli()
	stalled := fmt.Appendf(nil, `{"message":{"type":"conversation-update","call":{"id":"good","teamId":"t"},"messages":[{"messageId":"user-1","role":"user","text":"Hello?","timestamp":%d}]}}`, ms)
	// A valid event just under the limit, for another call, with a long transcript.
	big := fmt.Appendf(nil, `{"message":{"type":"conversation-update","call":{"id":"big","teamId":"t"},"messages":[{"messageId":"user-1","role":"user","text":"%s","timestamp":%d},{"messageId":"r1","role":"assistant","text":"ok","timestamp":%d}]}}`,
		strings.Repeat("blah ", 200_000), ms, ms)
	bad := [][]byte{
		[]byte("\x00\xff garbage"),
		[]byte(`{"message":{"type":"conversation-update","call":{"id":17}}}`),
		[]byte(`{"message":{"type":"conversation-update","call":{"teamId":"t"}}}`),
		[]byte(`{"message":{"type":"conversation-update","call":{"id":"good"},"messages":"user-1"}}`),
		[]byte(`{"message":{"type":"conversation-update","call":{"id":"good"},"messages":[{"role":"user","text":["x"]}]}}`),
		[]byte(`{"message":{"call":{"id":"good"},"x":` + strings.Repeat(`{"a":`, 10_000) + "1" + strings.Repeat("}", 10_000) + `}}`),
		append(append([]byte(`{"message":{"call":{"id":"good"},"x":"`), bytes.Repeat([]byte("a"), 1_040_000)...), `"}}`...),
		[]byte(`{"message":{"type":"end-of-call-report","call":{"id":"good","status":"finished"},"messages":{}}}`), // would end it, but is bad
	}
	h.publish("voice.events.good.conversation-update", stalled)
	for _, b := range bad {
		if err := h.pub.Publish("voice.events.good.x", b); err != nil {
			t.Fatalf("publish %d bytes: %v", len(b), err)
		}
	}
	h.advanceTo(ms + 2000)
	h.publish("voice.events.big.conversation-update", big)
	// Every bad event has been read once the big one behind them was delivered.
	if st := h.src.Stats(); st.DeadLettered != int64(len(bad)) {
		t.Errorf("dead-lettered %d events, want %d: %+v", st.DeadLettered, len(bad), st.Bad)
	}
	h.advanceTo(ms + 4999)
	h.noOutput()
	h.advanceTo(ms + 5000)
	m := h.nextOutput()
	if m.Subject != "voice.hang.t.good" || m.Header.Get("Nats-Msg-Id") != "good:user-1:hang" {
		t.Errorf("output %s %q, want the hang of the good call at its deadline", m.Subject, m.Header.Get("Nats-Msg-Id"))
	}
	if st := h.eng.Stats(); st.Calls != 2 || st.Hangs() != 1 {
		t.Errorf("engine Stats() = %+v, want 2 calls and 1 hang", st)
	}
}

// TestEndToEndLongCallID: a call id of 5 KB, far below the event limit, would make a
// subject longer than the server's 4 KB control line, which closes the connection for
// good. Its hang goes on a bounded subject, and the next call is still detected.
func TestEndToEndLongCallID(t *testing.T) {
	start := time.UnixMilli(1_763_647_331_000)
	h := newE2E(t, detector.DefaultConfig(), start)
	ms := start.UnixMilli()
	stall := func(id string) []byte {
		return fmt.Appendf(nil, `{"message":{"type":"conversation-update","call":{"id":%q,"teamId":%q},"messages":[{"messageId":"user-1","role":"user","text":"Hello?","timestamp":%d}]}}`,
			id, strings.Repeat("t", 3000), ms)
	}
	long := strings.Repeat("x", 5000)
	h.publish("voice.events.long.conversation-update", stall(long))
	h.advanceTo(ms + 5000)
	m := h.nextOutput()
	if len(m.Subject) > 300 || m.Header.Get("Nats-Msg-Id") != long+":user-1:hang" {
		t.Errorf("hang on a %d-byte subject, Nats-Msg-Id %d bytes", len(m.Subject), len(m.Header.Get("Nats-Msg-Id")))
	}
	h.publish("voice.events.short.conversation-update", stall("short"))
	h.advanceTo(ms + 10_000)
	if m := h.nextOutput(); !strings.Contains(m.Header.Get("Nats-Msg-Id"), "short:") {
		t.Errorf("after the long one, output %s; want the hang of the next call", m.Subject)
	}
}
