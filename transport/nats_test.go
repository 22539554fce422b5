package transport

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// waitFor bounds every wait on the broker: it only matters when a test fails.
const waitFor = 10 * time.Second

// startServer starts an embedded NATS server on a random port for one test.
func startServer(t testing.TB, o EmbeddedOptions) *Embedded {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	srv, err := StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// connect connects to srv and closes the connection when the test ends.
func connect(t testing.TB, srv *Embedded, o ConnOptions) *Conn {
	t.Helper()
	o.URL = srv.ClientURL()
	c, err := Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// plainClient is a test's own connection, as a pipeline or a subscriber would have.
func plainClient(t testing.TB, srv *Embedded) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// received is what a test keeps of a delivered event: the event is pooled and must not
// be read after Done.
type received struct {
	typ      detector.Type
	callID   string
	messages int32
	at       int64
}

// runSource runs src until the test ends and returns the events it delivers.
func runSource(t testing.TB, src *Source, deliver func(*detector.Event)) <-chan received {
	t.Helper()
	got := make(chan received, 100)
	if deliver == nil {
		deliver = func(ev *detector.Event) {
			got <- received{ev.Type, ev.CallID, ev.Messages, ev.Received}
			ev.Done()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, deliver) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Source.Run() = %v", err)
		}
	})
	deadline := time.Now().Add(waitFor)
	for !src.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("source not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

func next(t testing.TB, c <-chan received) received {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(waitFor):
		t.Fatal("no event delivered")
	}
	return received{}
}

func TestSourceDeliversFixtures(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	fake := time.UnixMilli(1_763_647_331_000)
	src := NewSource(connect(t, srv, ConnOptions{}), SourceOptions{Subjects: []string{"voice.events.>"}, Now: func() time.Time { return fake }})
	got := runSource(t, src, nil)
	pub := plainClient(t, srv)

	files := []struct {
		name     string
		typ      detector.Type
		messages int32
	}{
		{"01-status-update-ongoing.json", detector.TypeStatusUpdate, 0},
		{"02-conversation-update-welcome.json", detector.TypeConversationUpdate, 1},
		{"06-conversation-update-user-3.json", detector.TypeConversationUpdate, 5},
		{"08-end-of-call-report.json", detector.TypeEndOfCallReport, 0},
	}
	for _, f := range files {
		if err := pub.Publish("voice.events.WC-5f0c.x", readFixture(t, f.name)); err != nil {
			t.Fatal(err)
		}
		r := next(t, got)
		if r.typ != f.typ || r.messages != f.messages || r.callID != "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10" || r.at != fake.UnixNano() {
			t.Errorf("%s: delivered %+v, want type %v, %d messages, stamped by Now", f.name, r, f.typ, f.messages)
		}
	}
	st := src.Stats()
	if st.Events[detector.TypeConversationUpdate] != 2 || st.Events[detector.TypeStatusUpdate] != 1 || st.Events[detector.TypeEndOfCallReport] != 1 {
		t.Errorf("Stats().Events = %v", st.Events)
	}
}

func TestSourceBadInput(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	core, logs := observer.New(zap.InfoLevel)
	src := NewSource(connect(t, srv, ConnOptions{}), SourceOptions{
		Subjects: []string{"voice.events.>"}, DeadLetter: "voice.dead", Logger: zap.New(core),
		Limits: wire.Limits{MaxBytes: 64 << 10, MaxDepth: 32},
	})
	got := runSource(t, src, nil)
	pub := plainClient(t, srv)
	dead, err := pub.SubscribeSync("voice.dead")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}

	secret := "my card number is 4111"
	tests := []struct {
		give []byte
		want wire.Reason
	}{
		{give: []byte("garbage"), want: wire.ReasonNotJSON},
		{give: []byte(`{"message":{"type":"status-update","call":{"id":42}}}`), want: wire.ReasonWrongType},
		{give: []byte(`{"message":{"type":"conversation-update","call":{"id":"c"},"messages":[{"role":"user","text":7}]}}`), want: wire.ReasonWrongType},
		{give: []byte(`{"message":{"type":"conversation-update","call":{"id":"c"},"messages":{"text":"` + secret + `"}}}`), want: wire.ReasonMessagesNotArray},
		{give: []byte(`{"message":{"type":"conversation-update","call":{}}}`), want: wire.ReasonNoCallID},
		{give: []byte(`{"msg":{}}`), want: wire.ReasonNoMessage},
		{give: []byte(`{"message":{"call":{"id":"c"},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`), want: wire.ReasonTooDeep},
		{give: []byte(`{"message":{"call":{"id":"c"},"x":"` + strings.Repeat("a", 70<<10) + `"}}`), want: wire.ReasonTooLarge},
	}
	for _, tt := range tests {
		if err := pub.Publish("voice.events.bad", tt.give); err != nil {
			t.Fatal(err)
		}
		m, err := dead.NextMsg(waitFor)
		if err != nil {
			t.Fatalf("no dead letter for %q: %v", tt.want, err)
		}
		if h := m.Header.Get(HeaderBadInputReason); h != tt.want.String() {
			t.Errorf("dead letter reason = %q, want %q", h, tt.want)
		}
		if string(m.Data) != string(tt.give) || m.Header.Get(HeaderSubject) != "voice.events.bad" {
			t.Errorf("dead letter is not the event unchanged with its subject")
		}
	}
	// A good event still goes through.
	if err := pub.Publish("voice.events.good", readFixture(t, "01-status-update-ongoing.json")); err != nil {
		t.Fatal(err)
	}
	if r := next(t, got); r.typ != detector.TypeStatusUpdate {
		t.Errorf("after bad input, delivered %+v", r)
	}
	st := src.Stats()
	if st.DeadLettered != int64(len(tests)) || st.Bad[wire.ReasonWrongType] != 2 || st.Bad[wire.ReasonNotJSON] != 1 {
		t.Errorf("Stats() = %+v", st)
	}
	for _, e := range logs.All() {
		if b, _ := json.Marshal(e.ContextMap()); strings.Contains(e.Message+string(b), secret) {
			t.Errorf("a log line holds message text: %s %s", e.Message, b)
		}
	}
	if n := logs.FilterMessage("bad input: wrong-type").Len(); n != 1 {
		t.Errorf("logged %d wrong-type lines within a second, want 1 (rate-limited)", n)
	}
}

// TestSourceDrains checks that cancelling Run still delivers what NATS holds.
func TestSourceDrains(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	src := NewSource(connect(t, srv, ConnOptions{}), SourceOptions{})
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(ev *detector.Event) {
			<-release // the engine is behind
			mu.Lock()
			n++
			mu.Unlock()
			ev.Done()
		})
	}()
	for !src.Ready() {
		time.Sleep(time.Millisecond)
	}
	pub := plainClient(t, srv)
	data := readFixture(t, "01-status-update-ongoing.json")
	for range 50 {
		if err := pub.Publish("voice.events.c.status-update", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	// Let the subscription receive them all before the drain starts.
	for deadline := time.Now().Add(waitFor); ; {
		if sent := src.conn.NATS().Stats().InMsgs; sent == 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if n != 50 {
		t.Errorf("delivered %d events before returning, want 50", n)
	}
}

func TestSourceSlowConsumer(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src := NewSource(conn, SourceOptions{PendingMsgs: 5, PendingBytes: 1 << 20})
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	runSource(t, src, func(ev *detector.Event) { <-release; ev.Done() })
	pub := plainClient(t, srv)
	data := readFixture(t, "01-status-update-ongoing.json")
	for range 100 {
		if err := pub.Publish("voice.events.c.status-update", data); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(waitFor); conn.Stats().SlowConsumers == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no slow consumer reported")
		}
		time.Sleep(time.Millisecond)
	}
	if n := src.Stats().Dropped; n == 0 {
		t.Error("Stats().Dropped = 0, want the events NATS dropped")
	}
	once.Do(func() { close(release) })
}

// TestSourceDroppedSurvivesDrain: the count of dropped events must not fall to 0 once
// the subscriptions are drained, while the metrics are still served.
func TestSourceDroppedSurvivesDrain(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn := connect(t, srv, ConnOptions{})
	src := NewSource(conn, SourceOptions{PendingMsgs: 5, PendingBytes: 1 << 20})
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(ev *detector.Event) { <-release; ev.Done() }) }()
	eventually(t, "source ready", src.Ready)
	pub := plainClient(t, srv)
	data := readFixture(t, "01-status-update-ongoing.json")
	for range 100 {
		if err := pub.Publish("voice.events.c.status-update", data); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "events dropped", func() bool { return src.Stats().Dropped > 0 })
	before := src.Stats().Dropped
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if after := src.Stats().Dropped; after < before {
		t.Errorf("Stats().Dropped = %d after the drain, was %d", after, before)
	}
}

func TestSinkPublishes(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	sink := NewSink(connect(t, srv, ConnOptions{}), SinkOptions{})
	sc := plainClient(t, srv)
	sub, err := sc.SubscribeSync("voice.>")
	if err == nil {
		err = sc.Flush() // the server knows the subscription before the sink publishes
	}
	if err != nil {
		t.Fatal(err)
	}
	var ev detector.Event
	if err := wire.Decode(&ev, readFixture(t, "05-conversation-update-user-2.json"), wire.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	out := &detector.Output{Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout, UserMessageID: "user-2",
		FirstUserMessageID: "user-2", At: time.UnixMilli(1_763_647_348_707).UnixNano(), Wait: 5 * time.Second,
		Threshold: 5 * time.Second, Snapshot: ev.Payload, Latest: ev.Payload}
	if err := sink.Publish(ev.CallID, out); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(waitFor)
	if err != nil {
		t.Fatal(err)
	}
	if want := "voice.hang.team-7a31c9.WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"; m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}
	if got, want := m.Header.Get("Nats-Msg-Id"), "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10:user-2:hang"; got != want {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, want)
	}
	if got := m.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if string(m.Data) != string(wire.AppendOutput(nil, ev.CallID, out)) {
		t.Errorf("payload differs from AppendOutput")
	}
	if hangs, _ := sink.Published(); hangs != 1 {
		t.Errorf("Published() hangs = %d, want 1", hangs)
	}
}

func TestConnectUnreachable(t *testing.T) {
	_, err := Connect(ConnOptions{URL: "nats://127.0.0.1:1", ConnectTimeout: time.Second})
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("Connect() = %v, want ErrConnect", err)
	}
}

func TestEmbeddedRequiresUser(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{User: "hw", Password: "s3cret-pw"})
	if _, err := Connect(ConnOptions{URL: srv.ClientURL(), ConnectTimeout: time.Second}); !errors.Is(err, ErrConnect) {
		t.Errorf("Connect() without credentials = %v, want ErrConnect", err)
	}
	_, err := Connect(ConnOptions{URL: srv.ClientURL(), User: "hw", Password: "wrong-pw", ConnectTimeout: time.Second})
	if !errors.Is(err, ErrConnect) || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("Connect() with a wrong password = %v, want ErrConnect without the password", err)
	}
	connect(t, srv, ConnOptions{User: "hw", Password: "s3cret-pw"})
}

func TestAuthOptions(t *testing.T) {
	tests := []struct {
		name    string
		give    ConnOptions
		wantErr bool
	}{
		{name: "none", give: ConnOptions{}},
		{name: "user", give: ConnOptions{User: "u", Password: "pw-Zq9x"}},
		{name: "token", give: ConnOptions{Token: "tok-Zq9x"}},
		{name: "password without user", give: ConnOptions{Password: "pw-Zq9x"}, wantErr: true},
		{name: "two kinds", give: ConnOptions{User: "u", Password: "pw-Zq9x", Token: "tok-Zq9x"}, wantErr: true},
		{name: "cert without key", give: ConnOptions{TLSCert: "c.pem"}, wantErr: true},
		{name: "missing nkey seed file", give: ConnOptions{NkeySeed: "/nonexistent/seed"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authOptions(tt.give)
			if (err != nil) != tt.wantErr {
				t.Errorf("authOptions() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "Zq9x") || strings.Contains(err.Error(), "\n")) {
				t.Errorf("error %q holds a secret or spans lines", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ give, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:pw@h:4222", "nats://u:xxxxx@h:4222"},
		{"nats://tok@h:4222,nats://a:b@h2:4222", "nats://xxxxx@h:4222,nats://a:xxxxx@h2:4222"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.give); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestEmbeddedBusyPort(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	start := time.Now()
	_, err := StartEmbedded(EmbeddedOptions{Listen: strings.TrimPrefix(srv.ClientURL(), "nats://")})
	if !errors.Is(err, ErrEmbedded) || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("StartEmbedded() on a busy port = %v, want ErrEmbedded naming the listen error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to report a busy port; it should not wait out the readiness timeout", d)
	}
}

// TestSourceIgnoresItsDeadLetters: with a dead-letter subject that the source consumes
// (the command line refuses it, a library user may not), a dead letter comes back in
// and is dropped, instead of being dead-lettered again forever.
func TestSourceIgnoresItsDeadLetters(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	src := NewSource(connect(t, srv, ConnOptions{}), SourceOptions{Subjects: []string{"voice.events.>"}, DeadLetter: "voice.events.dead"})
	runSource(t, src, nil)
	pub := plainClient(t, srv)
	if err := pub.Publish("voice.events.bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitFor); src.Stats().DeadLettersIgnored == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the dead letter never came back")
		}
		time.Sleep(time.Millisecond)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a loop would have gone round thousands of times
	if st := src.Stats(); st.DeadLettered != 1 || st.DeadLettersIgnored != 1 || st.Bad[wire.ReasonNotJSON] != 1 {
		t.Errorf("Stats() = %+v, want one rejection, one dead letter, ignored once", st)
	}
}

// TestSourceEndsWhenNATSClosesTheConnection: a connection that the server closes for
// good must end Run with an error, so that the process exits rather than live on deaf.
func TestSourceEndsWhenNATSClosesTheConnection(t *testing.T) {
	srv := startServer(t, EmbeddedOptions{})
	conn, err := Connect(ConnOptions{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	src := NewSource(conn, SourceOptions{})
	done := make(chan error, 1)
	go func() { done <- src.Run(context.Background(), func(ev *detector.Event) { ev.Done() }) }()
	for !src.Ready() {
		time.Sleep(time.Millisecond)
	}
	// A subject over the server's control line limit is a protocol violation: the
	// server closes the connection, and nats.go does not reconnect.
	_ = conn.NATS().Publish(strings.Repeat("a", 5000), nil)
	_ = conn.NATS().Flush()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("Run() = %v, want ErrConnClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run still running on a closed connection")
	}
	if src.Ready() {
		t.Error("a source on a closed connection says it is ready")
	}
}
