package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// The paths the server answers; every other path is 404.
const (
	PathEvents  = "/events"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// The error of a refusal that is not bad input, in the JSON body {"error": ...}.
const (
	errUnauthorized = "unauthorized"
	errUnavailable  = "nats-unavailable"
	errBusy         = "busy"
	errUnreadable   = "unreadable-body"
)

// ServeHTTP routes a request: POST /events, GET /healthz and /readyz.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	switch r.URL.Path {
	case PathEvents:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.refuse(w, http.StatusMethodNotAllowed, "method-not-allowed", "")
			return
		}
		s.handleEvent(w, r)
	case PathHealthz, PathReadyz:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.refuse(w, http.StatusMethodNotAllowed, "method-not-allowed", "")
			return
		}
		code, body := http.StatusOK, "ok\n"
		if r.URL.Path == PathReadyz && !s.o.Ready() {
			code, body = http.StatusServiceUnavailable, "not ready\n"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s.count(code)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	default:
		s.refuse(w, http.StatusNotFound, "not-found", "")
	}
}

// handleEvent is POST /events.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		w.Header().Set("Retry-After", "1")
		s.refuse(w, http.StatusServiceUnavailable, errBusy, "")
		return
	}
	if s.o.Secret != "" && !s.authorized(r.Header) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hangwatch"`)
		s.refuse(w, http.StatusUnauthorized, errUnauthorized, "")
		return
	}
	maxBytes := s.limits.MaxBytes
	if r.ContentLength > int64(maxBytes) {
		s.tooLarge(w, r.ContentLength)
		return
	}
	buf := getBuffer(r.ContentLength)
	defer putBuffer(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, int64(maxBytes))); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.tooLarge(w, -1)
			return
		}
		s.limited.Info("http ingest: body unreadable", zap.Error(err))
		s.refuse(w, http.StatusBadRequest, errUnreadable, "")
		return
	}
	body := buf.Bytes()

	ev := s.events.Get().(*detector.Event)
	defer s.putEvent(ev)
	if err := wire.Decode(ev, body, s.limits); err != nil {
		s.badInput(w, body, err)
		return
	}
	subj := s.tmpl.Render(ev.CallID, eventType(ev, body), ev.TeamID, ev.AssistantID)
	code, why := s.publish(r.Context(), subj, body)
	if code != http.StatusAccepted {
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.refuse(w, code, why, "")
		return
	}
	s.count(http.StatusAccepted)
	w.WriteHeader(http.StatusAccepted)
}

// publish publishes an event and waits until NATS has it. It returns 202, or the code
// and error of the refusal.
func (s *Server) publish(ctx context.Context, subj string, body []byte) (int, string) {
	if !s.nc.IsConnected() {
		// While it reconnects, nats.go would buffer the event and send it later: a 503
		// must not publish what the client will retry.
		return http.StatusServiceUnavailable, errUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subj, Data: body}
	var err error
	if s.o.JetStream != nil {
		_, err = s.o.JetStream.PublishMsg(ctx, msg)
	} else if err = s.nc.PublishMsg(msg); err == nil {
		// The server handles a connection's commands in order: its PONG says it has
		// the event.
		err = s.nc.FlushWithContext(ctx)
	}
	if err == nil {
		return http.StatusAccepted, ""
	}
	s.stats.publishErrors.Add(1)
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		s.limited.Warn("http ingest: event larger than NATS accepts", zap.Int("bytes", len(body)), zap.Error(err))
		s.rejects.Count(wire.RejectTooLarge)
		return http.StatusRequestEntityTooLarge, wire.RejectTooLarge.String()
	}
	s.limited.Warn("http ingest: publish", zap.String("subject", subj), zap.Error(err))
	return http.StatusServiceUnavailable, errUnavailable
}

// eventType is the value of {type}: message.type as sent. Decode names the types that
// detection reads; the others, which it lumps together, are read again.
func eventType(ev *detector.Event, body []byte) string {
	switch ev.Type {
	case detector.TypeConversationUpdate, detector.TypeStatusUpdate, detector.TypeEndOfCallReport, detector.TypeSpeechUpdate:
		return ev.Type.String()
	}
	var v struct {
		Message struct {
			Type string `json:"type"`
		} `json:"message"`
	}
	_ = json.Unmarshal(body, &v) // valid JSON, as Decode said; a type that is not a string reads as none
	return v.Message.Type
}

// badInput answers 400, and has the event counted, logged (rate-limited per reason;
// the payload only at debug level) and dead-lettered as every input's bad input is.
func (s *Server) badInput(w http.ResponseWriter, body []byte, err error) {
	reason := s.rejects.Reject("http:"+PathEvents, body, err)
	s.refuse(w, http.StatusBadRequest, reason.String(), err.Error())
}

// tooLarge answers 413 for a body over the limit; n is its length when known.
func (s *Server) tooLarge(w http.ResponseWriter, n int64) {
	s.rejects.Count(wire.RejectTooLarge)
	s.limited.Warn("bad input: "+wire.RejectTooLarge.String(), zap.String("source", "http"), zap.Int64("bytes", n), zap.Int("limit", s.limits.MaxBytes))
	// The rest of the body is not read: the connection cannot be reused.
	w.Header().Set("Connection", "close")
	s.refuse(w, http.StatusRequestEntityTooLarge, wire.RejectTooLarge.String(), "limit "+strconv.Itoa(s.limits.MaxBytes)+" bytes")
}

// refusal is the JSON body of every answer but 202. Detail names a field or an offset,
// never a value (wire's errors are so).
type refusal struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func (s *Server) refuse(w http.ResponseWriter, code int, reason, detail string) {
	s.count(code)
	b, _ := json.Marshal(refusal{Error: reason, Detail: detail})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) count(code int) {
	if code >= 0 && code < len(s.stats.codes) {
		s.stats.codes[code].Add(1)
	}
}

func (s *Server) putEvent(ev *detector.Event) {
	ev.Reset() // drops the payload, which aliases the pooled buffer
	s.events.Put(ev)
}

// Buffers of request bodies are pooled up to maxPooled bytes: a larger one is left to
// the collector, so that one huge event does not stay in memory.
const maxPooled = 256 << 10

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer(contentLength int64) *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	if contentLength > 0 {
		b.Grow(int(contentLength) + bytes.MinRead) // ReadFrom wants MinRead free to see EOF without growing
	}
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooled {
		return
	}
	b.Reset()
	buffers.Put(b)
}

// Stats are the server's counters.
type Stats struct {
	// Requests counts the answers by HTTP status code (http_ingest_requests_total{code}).
	Requests map[int]int64
	// RejectStats count bad input by reason (400s and 413s), and its dead letters.
	transport.RejectStats
	// PublishErrors counts the events NATS did not take (each answered 503 or 413).
	PublishErrors int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Requests: map[int]int64{}, RejectStats: s.rejects.Stats()}
	for code := range s.stats.codes {
		if n := s.stats.codes[code].Load(); n > 0 {
			st.Requests[code] = n
		}
	}
	st.PublishErrors = s.stats.publishErrors.Load()
	return st
}
