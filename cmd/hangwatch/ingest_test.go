package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/internal/natstest"
	"github.com/hangwatch/hangwatch/wire"
)

func TestIngestFlags(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		give     []string
		subjects []string
		wantErr  string // "" for none
	}{
		{name: "off", give: nil},
		{name: "on", give: []string{"--http-listen", "127.0.0.1:8080"}},
		{name: "from the environment", env: map[string]string{"HANGWATCH_HTTP_LISTEN": ":8080", "HANGWATCH_INGEST_SECRET": "s"}},
		{name: "a secret without the listener", give: []string{"--ingest-secret", "s"}, wantErr: "need --http-listen"},
		{name: "no port", give: []string{"--http-listen", "localhost"}, wantErr: "want host:port"},
		{name: "a bad template", give: []string{"--http-listen", ":8080", "--ingest-subject", "voice.{call}"}, wantErr: "unknown placeholder"},
		{name: "a subject not consumed", give: []string{"--http-listen", ":8080", "--ingest-subject", "in.{callId}"}, wantErr: "no --subject covers in.*"},
		{name: "a subject consumed", give: []string{"--http-listen", ":8080", "--ingest-subject", "in.{callId}"}, subjects: []string{"in.*"}},
		{name: "a cert without a key", give: []string{"--http-listen", ":8080", "--http-tls-cert", "c.pem"}, wantErr: "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCommand("run", "")
			o := ingestFlags(c.fs)
			if err := c.parse(tt.give, lookupIn(tt.env)); err != nil {
				t.Fatal(err)
			}
			subjects := tt.subjects
			if subjects == nil {
				subjects = []string{"voice.events.>"}
			}
			err := o.validate(subjects)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The server the flags build takes an event and answers 202.
func TestIngestServer(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	c := newCommand("run", "")
	o := ingestFlags(c.fs)
	if err := c.parse([]string{"--http-listen", "127.0.0.1:0", "--ingest-secret", "s3cret"}, noEnv); err != nil {
		t.Fatal(err)
	}
	if err := o.validate([]string{"voice.events.>"}); err != nil {
		t.Fatal(err)
	}
	s, err := o.server(nc, nil, wire.DefaultLimits(), "", nc.IsConnected, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(`{"message":{"type":"status-update","call":{"id":"c1"}}}`))
	req.Header.Set("X-Vapi-Secret", "s3cret")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Errorf("POST = %d %s, want 202", rec.Code, rec.Body)
	}
}
