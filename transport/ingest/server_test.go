package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/internal/fixtures"
	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

const (
	webhookCall = "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10"
	vapiCall    = "c4a7e2d9-1f3b-4c8e-b5a6-9d0e7f2a1b34"
)

// Every event of both fixture calls is accepted and published unchanged, on the
// subject of its call and type.
func TestAcceptsBothDialects(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	sub := subscribe(t, natstest.Connect(t, srv), "voice.events.>")
	s := serve(t, nc, Options{})

	tests := []struct {
		give     []byte
		name     string
		wantSubj string
	}{}
	for _, name := range fixtures.WebhookNames() {
		typ := strings.Join(strings.Split(strings.TrimSuffix(name, ".json"), "-")[1:3], "-")
		if strings.Contains(name, "end-of-call") {
			typ = "end-of-call-report"
		}
		tests = append(tests, struct {
			give     []byte
			name     string
			wantSubj string
		}{fixtures.Webhook(name), "webhook/" + name, "voice.events." + webhookCall + "." + typ})
	}
	for _, name := range fixtures.VapiNames() {
		typ := strings.Join(strings.Split(strings.TrimSuffix(name, ".json"), "-")[1:3], "-")
		if strings.Contains(name, "end-of-call") {
			typ = "end-of-call-report"
		}
		tests = append(tests, struct {
			give     []byte
			name     string
			wantSubj string
		}{fixtures.Vapi(name), "vapi/" + name, "voice.events." + vapiCall + "." + typ})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := s.post(t, PathEvents, tt.give); a.code != http.StatusAccepted {
				t.Fatalf("POST = %d %s, want 202", a.code, a.body)
			}
			m := next(t, sub)
			if m.Subject != tt.wantSubj {
				t.Errorf("subject %q, want %q", m.Subject, tt.wantSubj)
			}
			if !bytes.Equal(m.Data, tt.give) {
				t.Error("the published event differs from the POSTed one")
			}
		})
	}
	if got := s.Stats().Requests[http.StatusAccepted]; got != int64(len(tests)) {
		t.Errorf("202s counted: %d, want %d", got, len(tests))
	}
}

func TestSubjectTemplate(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	sub := subscribe(t, natstest.Connect(t, srv), "in.>")
	s := serve(t, nc, Options{Subject: "in.{teamId}.{assistantId}.{callId}.{type}"})

	event := func(typ, callID string) []byte {
		return fmt.Appendf(nil, `{"message":{"type":%q,"call":{"id":%q,"teamId":"team 1","assistantId":"a>1"}}}`, typ, callID)
	}
	tests := []struct {
		give []byte
		want string
	}{
		{give: fixtures.Webhook("03-conversation-update-user-1.json"), want: "in.team-7a31c9.asst-42e1b0." + webhookCall + ".conversation-update"},
		// A Vapi call has no teamId: the team is its orgId.
		{give: fixtures.Vapi("01-status-update-in-progress.json"), want: "in.8e1f6a3c-27d4-4b9a-9c5e-3a7d0b2e6f18.5b9d2e7a-4c1f-4e8b-a3d6-0f7c9e1a2b45." + vapiCall + ".status-update"},
		{give: event("transcript", "c.1"), want: "in.team_1.a_1.c_1.transcript"},
		{give: event(`transcript[transcriptType="final"]`, "c1"), want: `in.team_1.a_1.c1.transcript[transcriptType="final"]`},
		{give: event("hang", "c1"), want: "in.team_1.a_1.c1.hang"},
		{give: event("a.b *", "c1"), want: "in.team_1.a_1.c1.a_b__"},
		{give: []byte(`{"message":{"call":{"id":"c1"}}}`), want: "in._._.c1._"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if a := s.post(t, PathEvents, tt.give); a.code != http.StatusAccepted {
				t.Fatalf("POST = %d %s, want 202", a.code, a.body)
			}
			if m := next(t, sub); m.Subject != tt.want {
				t.Errorf("subject %q, want %q", m.Subject, tt.want)
			}
		})
	}
}

// Each refusal has its code and a JSON error; nothing is published.
func TestRefusals(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	sub := subscribe(t, nc, "voice.events.>")
	const maxBytes = 4096
	s := serve(t, nc, Options{Limits: wire.Limits{MaxBytes: maxBytes}})
	good := fixtures.Webhook("03-conversation-update-user-1.json")

	tests := []struct {
		name      string
		give      func() *http.Request
		wantCode  int
		wantError string
	}{
		{name: "not JSON", give: postOf("{"), wantCode: 400, wantError: "not-json"},
		{name: "no message", give: postOf(`{"type":"conversation-update"}`), wantCode: 400, wantError: "no-message"},
		{name: "no call id", give: postOf(`{"message":{"type":"status-update","call":{}}}`), wantCode: 400, wantError: "no-call-id"},
		{name: "call id a number", give: postOf(`{"message":{"type":"status-update","call":{"id":7}}}`), wantCode: 400, wantError: "wrong-type"},
		{name: "messages not an array", give: postOf(`{"message":{"type":"conversation-update","call":{"id":"c1"},"messages":{}}}`), wantCode: 400, wantError: "messages-not-array"},
		{name: "empty body", give: postOf(""), wantCode: 400, wantError: "not-json"},
		{name: "over the limit, by Content-Length", give: postOf(strings.Repeat(" ", maxBytes+1)), wantCode: 413, wantError: "too-large"},
		{name: "over the limit, chunked", give: func() *http.Request {
			r := postOf(strings.Repeat(" ", maxBytes+1))()
			// No Content-Length: the server finds out while it reads.
			r.ContentLength = -1
			r.Body = io.NopCloser(struct{ io.Reader }{strings.NewReader(strings.Repeat(" ", maxBytes+1))})
			return r
		}, wantCode: 413, wantError: "too-large"},
		{name: "GET /events", give: requestOf(http.MethodGet, PathEvents), wantCode: 405, wantError: "method-not-allowed"},
		{name: "PUT /events", give: requestOf(http.MethodPut, PathEvents), wantCode: 405, wantError: "method-not-allowed"},
		{name: "POST /healthz", give: requestOf(http.MethodPost, PathHealthz), wantCode: 405, wantError: "method-not-allowed"},
		{name: "another path", give: requestOf(http.MethodPost, "/events/x"), wantCode: 404, wantError: "not-found"},
		{name: "root", give: requestOf(http.MethodGet, "/"), wantCode: 404, wantError: "not-found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.give()
			req.URL.Scheme, req.URL.Host = "http", strings.TrimPrefix(s.url, "http://")
			a := s.do(t, req)
			if a.code != tt.wantCode || a.error != tt.wantError {
				t.Errorf("answer %d %s, want %d with error %q", a.code, a.body, tt.wantCode, tt.wantError)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	none(t, nc, sub)
	// A good event still goes through.
	if a := s.post(t, PathEvents, good); a.code != http.StatusAccepted {
		t.Fatalf("POST = %d %s, want 202", a.code, a.body)
	}
	st := s.Stats()
	if st.Requests[400] != 6 || st.Requests[413] != 2 || st.Requests[405] != 3 || st.Requests[404] != 2 || st.Requests[202] != 1 {
		t.Errorf("requests by code: %v", st.Requests)
	}
	if st.Bad[wire.RejectNotJSON] != 2 || st.Bad[wire.RejectTooLarge] != 2 || st.Bad[wire.RejectNoCallID] != 1 {
		t.Errorf("bad input by reason: %v", st.Bad)
	}
}

func postOf(body string) func() *http.Request {
	return func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "/events", strings.NewReader(body))
		return r
	}
}

func requestOf(method, path string) func() *http.Request {
	return func() *http.Request {
		r, _ := http.NewRequest(method, path, nil)
		return r
	}
}

// A 400 carries the error's detail, which names a field, not a value.
func TestBadInputDetail(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := serve(t, natstest.Connect(t, srv), Options{})
	a := s.post(t, PathEvents, []byte(`{"message":{"type":"status-update","call":{"id":12345}}}`))
	if a.code != 400 || !bytes.Contains(a.body, []byte("call.id")) || bytes.Contains(a.body, []byte("12345")) {
		t.Errorf("answer %d %s, want 400 naming call.id without its value", a.code, a.body)
	}
}

func TestDeadLetter(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	dead := subscribe(t, natstest.Connect(t, srv), "dead")
	s := serve(t, nc, Options{DeadLetter: "dead"})
	give := []byte(`{"message":{"type":"status-update","call":{"id":7}}}`)
	if a := s.post(t, PathEvents, give); a.code != 400 {
		t.Fatalf("POST = %d, want 400", a.code)
	}
	m := next(t, dead)
	if !bytes.Equal(m.Data, give) {
		t.Errorf("dead letter %q, want the event unchanged", m.Data)
	}
	if got := m.Header.Get(transport.HeaderBadInputReason); got != "wrong-type" {
		t.Errorf("%s = %q, want wrong-type", transport.HeaderBadInputReason, got)
	}
	if m.Header.Get(transport.HeaderBadInputError) == "" || m.Header.Get(transport.HeaderSubject) != "http:/events" {
		t.Errorf("headers %v", m.Header)
	}
	if st := s.Stats(); st.DeadLettered != 1 {
		t.Errorf("dead lettered %d, want 1", st.DeadLettered)
	}
}

func TestSecret(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	sub := subscribe(t, natstest.Connect(t, srv), "voice.events.>")
	const secret = "s3cret-of-the-server-url"
	s := serve(t, nc, Options{Secret: secret})
	good := fixtures.Webhook("03-conversation-update-user-1.json")

	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{name: "X-Vapi-Secret", headers: []string{"X-Vapi-Secret", secret}, want: 202},
		{name: "Authorization: Bearer", headers: []string{"Authorization", "Bearer " + secret}, want: 202},
		{name: "bearer, any case", headers: []string{"Authorization", "bEaReR " + secret}, want: 202},
		{name: "a wrong Vapi secret, the right bearer", headers: []string{"X-Vapi-Secret", "nope", "Authorization", "Bearer " + secret}, want: 202},
		{name: "none", want: 401},
		{name: "wrong X-Vapi-Secret", headers: []string{"X-Vapi-Secret", secret + "x"}, want: 401},
		{name: "a prefix", headers: []string{"X-Vapi-Secret", secret[:len(secret)-1]}, want: 401},
		{name: "empty", headers: []string{"X-Vapi-Secret", ""}, want: 401},
		{name: "wrong bearer", headers: []string{"Authorization", "Bearer x" + secret}, want: 401},
		{name: "basic scheme", headers: []string{"Authorization", "Basic " + secret}, want: 401},
		{name: "bare secret", headers: []string{"Authorization", secret}, want: 401},
	}
	accepted := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := s.post(t, PathEvents, good, tt.headers...)
			if a.code != tt.want {
				t.Fatalf("POST = %d %s, want %d", a.code, a.body, tt.want)
			}
			if a.code == 401 && (a.error != "unauthorized" || a.header.Get("WWW-Authenticate") == "") {
				t.Errorf("401 with error %q and WWW-Authenticate %q", a.error, a.header.Get("WWW-Authenticate"))
			}
			if a.code == 202 {
				accepted++
				next(t, sub)
			}
		})
	}
	none(t, nc, sub)
	// An unauthorised request is refused before its body is read: a bad body is 401.
	if a := s.post(t, PathEvents, []byte("{")); a.code != 401 {
		t.Errorf("bad body without the secret: %d, want 401", a.code)
	}
}

func TestHealth(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	ready := true
	s := serve(t, nc, Options{Ready: func() bool { return ready }})
	get := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		return s.do(t, req).code
	}
	if got := get(PathHealthz); got != 200 {
		t.Errorf("/healthz = %d", got)
	}
	if got := get(PathReadyz); got != 200 {
		t.Errorf("/readyz = %d while ready", got)
	}
	ready = false
	if got := get(PathReadyz); got != 503 {
		t.Errorf("/readyz = %d while not ready", got)
	}
	if got := get(PathHealthz); got != 200 {
		t.Errorf("/healthz = %d while not ready", got)
	}
}

// In JetStream mode, 202 means stored: the stream holds the event when the answer
// arrives, and a subject no stream covers answers 503.
func TestJetStreamStoredBefore202(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{StoreDir: t.TempDir()})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"voice.events.>"}})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, nc, Options{JetStream: js})
	for i, name := range fixtures.VapiNames() {
		give := fixtures.Vapi(name)
		if a := s.post(t, PathEvents, give); a.code != http.StatusAccepted {
			t.Fatalf("%s: POST = %d %s, want 202", name, a.code, a.body)
		}
		m, err := st.GetMsg(ctx, uint64(i+1)) // no wait: stored before the answer
		if err != nil {
			t.Fatalf("%s: not in the stream after 202: %v", name, err)
		}
		if !bytes.Equal(m.Data, give) {
			t.Errorf("%s: stored event differs from the POSTed one", name)
		}
	}

	other := serve(t, nc, Options{JetStream: js, Subject: "elsewhere.{callId}", PublishTimeout: time.Second})
	a := other.post(t, PathEvents, fixtures.Vapi("01-status-update-in-progress.json"))
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("POST to a subject no stream covers = %d %s, want 503 with Retry-After", a.code, a.body)
	}
}

// While NATS is down the server answers 503, and 202 again once it is back; an event
// answered 202 reaches the subscriber.
func TestNATSOutage(t *testing.T) {
	for _, mode := range []string{"core", "jetstream"} {
		t.Run(mode, func(t *testing.T) {
			store := ""
			if mode == "jetstream" {
				store = t.TempDir()
			}
			srv := natstest.Start(t, natstest.Options{StoreDir: store})
			port := natstest.Port(srv)
			nc := natstest.Connect(t, srv)
			o := Options{PublishTimeout: time.Second}
			var js jetstream.JetStream
			if mode == "jetstream" {
				var err error
				if js, err = jetstream.New(nc); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"voice.events.>"}}); err != nil {
					t.Fatal(err)
				}
				o.JetStream = js
			}
			s := serve(t, nc, o)
			give := fixtures.Webhook("03-conversation-update-user-1.json")
			if a := s.post(t, PathEvents, give); a.code != 202 {
				t.Fatalf("POST = %d, want 202", a.code)
			}

			natstest.Stop(srv)
			waitUntil(t, func() bool { return !nc.IsConnected() })
			a := s.post(t, PathEvents, give)
			if a.code != http.StatusServiceUnavailable || a.error != "nats-unavailable" || a.header.Get("Retry-After") == "" {
				t.Fatalf("POST while NATS is down = %d %s, want 503 with Retry-After", a.code, a.body)
			}
			if got := s.Stats().Requests[503]; got != 1 {
				t.Errorf("503s counted: %d", got)
			}

			srv = natstest.Start(t, natstest.Options{Port: port, StoreDir: store})
			sub := subscribe(t, natstest.Connect(t, srv), "voice.events.>")
			waitUntil(t, func() bool { return nc.IsConnected() })
			if a := s.post(t, PathEvents, give); a.code != 202 {
				t.Fatalf("POST after NATS came back = %d %s, want 202", a.code, a.body)
			}
			if m := next(t, sub); !bytes.Equal(m.Data, give) {
				t.Error("the event after the outage differs")
			}
			if js != nil {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				st, err := js.Stream(ctx, "EVENTS")
				if err != nil {
					t.Fatal(err)
				}
				if n := st.CachedInfo().State.Msgs; n != 2 {
					t.Errorf("stream holds %d events, want 2 (the 503 one not stored)", n)
				}
			}
		})
	}
}

// A server that takes the event but does not answer the round trip (a network that
// hangs) gets 503 once PublishTimeout passes, and the server stays usable.
func TestFlushTimeout(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	proxy := natstest.StartProxy(t, srv.Addr().String())
	nc := connectVia(t, proxy) // with no pings of its own: only the flush may notice the hang
	s := serve(t, nc, Options{PublishTimeout: 200 * time.Millisecond, MaxInFlight: 1})
	give := fixtures.Webhook("03-conversation-update-user-1.json")

	proxy.Freeze()
	first := make(chan answer, 1)
	go func() { first <- s.post(t, PathEvents, give) }()
	// While the first waits for its round trip, a second finds no room: 503 busy.
	waitUntil(t, func() bool { return len(s.inflight) == 1 })
	if a := s.post(t, PathEvents, give); a.code != 503 || a.error != "busy" {
		t.Errorf("second POST = %d %s, want 503 busy", a.code, a.body)
	}
	if a := <-first; a.code != 503 || a.error != "nats-unavailable" {
		t.Errorf("POST through a hung network = %d %s, want 503", a.code, a.body)
	}
	proxy.Thaw()
	if a := s.post(t, PathEvents, give); a.code != 202 {
		t.Errorf("POST after the network recovered = %d %s, want 202", a.code, a.body)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRefuses(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	tests := []struct {
		name string
		give Options
	}{
		{name: "unknown placeholder", give: Options{Subject: "voice.{call}"}},
		{name: "wildcard", give: Options{Subject: "voice.>"}},
		{name: "dead letter", give: Options{DeadLetter: "a..b"}},
		{name: "cert without key", give: Options{TLSCert: "cert.pem"}},
		{name: "missing cert files", give: Options{TLSCert: "/nonexistent/cert.pem", TLSKey: "/nonexistent/key.pem"}},
		{name: "write timeout under the publish timeout", give: Options{WriteTimeout: time.Second, PublishTimeout: 2 * time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(nc, tt.give); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: New = %v, want ErrOptions", tt.name, err)
		}
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrOptions) {
		t.Errorf("New without a connection = %v, want ErrOptions", err)
	}
}

// A bad event too large for the server's max payload with the dead letter's headers is
// cut, and says how long it was.
func TestDeadLetterCut(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	dead := subscribe(t, natstest.Connect(t, srv), "dead")
	max := int(nc.MaxPayload())
	s := serve(t, nc, Options{DeadLetter: "dead", Limits: wire.Limits{MaxBytes: max}})
	give := append([]byte(`{"message":{"call":{"id":7}},"pad":"`), bytes.Repeat([]byte("x"), max-100)...)
	give = append(give, `"}`...)
	if a := s.post(t, PathEvents, give); a.code != 400 {
		t.Fatalf("POST = %d %s, want 400", a.code, a.body)
	}
	m := next(t, dead)
	if len(m.Data) >= len(give) || !bytes.HasPrefix(give, m.Data) {
		t.Errorf("dead letter of %d bytes, want a prefix of the %d-byte event", len(m.Data), len(give))
	}
	if got := m.Header.Get(transport.HeaderTruncated); got != strconv.Itoa(len(give)) {
		t.Errorf("%s = %q, want %d", transport.HeaderTruncated, got, len(give))
	}
	if st := s.Stats(); st.DeadLettersCut != 1 || st.DeadLettered != 1 {
		t.Errorf("stats %+v", st)
	}
}

// An event that wire accepts but the server's max payload cannot carry answers 413.
func TestLargerThanNATSTakes(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	max := int(nc.MaxPayload())
	s := serve(t, nc, Options{Limits: wire.Limits{MaxBytes: 2 * max}})
	give := append([]byte(`{"message":{"type":"status-update","call":{"id":"c1"}},"pad":"`), bytes.Repeat([]byte("x"), max)...)
	give = append(give, `"}`...)
	if a := s.post(t, PathEvents, give); a.code != http.StatusRequestEntityTooLarge || a.error != "too-large" {
		t.Errorf("POST = %d %s, want 413 too-large", a.code, a.body)
	}
}
