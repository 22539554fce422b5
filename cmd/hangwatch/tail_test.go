package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

// TestTailPrintsEachOutputOnce: templates whose wildcards are the same, or one covers
// the other, must not make tail subscribe twice and print every output twice.
func TestTailPrintsEachOutputOnce(t *testing.T) {
	srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	conn, err := transport.Connect(transport.ConnOptions{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	hang, err := wire.ParseSubjectTemplate("hw.{callId}")
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := wire.ParseSubjectTemplate("hw.{teamId}")
	if err != nil {
		t.Fatal(err)
	}
	internal := srv.Server().NumSubscriptions() // the server's own
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tail(ctx, conn, hang, resolved, "json", out) }()
	for deadline := time.Now().Add(waitFor); srv.Server().NumSubscriptions() == internal; {
		if time.Now().After(deadline) {
			t.Fatal("tail did not subscribe")
		}
		time.Sleep(time.Millisecond)
	}
	pub, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Lines come in the order of the messages: once the second is printed, a second
	// copy of the first would have been too.
	for _, subject := range []string{"hw.c1", "hw.c2"} {
		if err := pub.Publish(subject, []byte(`{"message":{"type":"hang","call":{"id":"`+subject+`"}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(waitFor); !strings.Contains(out.String(), "hw.c2"); {
		if time.Now().After(deadline) {
			t.Fatalf("tail printed %q, want both outputs", out)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("tail() = %v", err)
	}
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Errorf("tail printed %d lines, want each of the 2 outputs once:\n%s", got, out)
	}
}
