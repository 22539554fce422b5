package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

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
	var templates []wire.SubjectTemplate
	for _, s := range []string{"hw.{callId}", "hw.{teamId}", "hw.{assistantId}"} {
		tmpl, err := wire.ParseSubjectTemplate(s)
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, tmpl)
	}
	internal := srv.Server().NumSubscriptions() // the server's own
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tail(ctx, conn, templates, "json", out) }()
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

// TestTailAllThreeOutputs runs the sidecar through a hang and its resolution and a hang
// whose call ends unanswered, with the unresolved hangs on a subject of their own, and
// tails them with the flags of `hangwatch tail --format text`: one line for each of the
// four outputs, with the stage, and for the unresolved hang why its call ended.
func TestTailAllThreeOutputs(t *testing.T) {
	t.Parallel()
	h := startTestSidecar(t, zap.InfoLevel, "--unresolved-subject", "alerts.gave-up.{teamId}")
	c := newCommand("tail", tailSummary)
	o := tailFlags(c)
	if err := c.parse([]string{"--format", "text", "--unresolved-subject", "alerts.gave-up.{teamId}"}, noEnv); err != nil {
		t.Fatal(err)
	}
	var templates []wire.SubjectTemplate
	for _, s := range []string{o.hang, o.resolved, o.unresolved} {
		tmpl, err := wire.ParseSubjectTemplate(s)
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, tmpl)
	}
	conn, err := transport.Connect(transport.ConnOptions{URL: h.sc.embedded.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tail(ctx, conn, templates, o.format, out) }()
	// tail has subscribed once a message on its subjects reaches it.
	for deadline := time.Now().Add(waitFor); !strings.Contains(out.String(), "probe"); {
		if time.Now().After(deadline) {
			t.Fatal("tail did not subscribe")
		}
		if err := h.client.Publish("alerts.gave-up.x", []byte(`{"message":{"type":"probe","call":{"id":"probe"}}}`)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	h.send(h.event("answered", "Hello?", "user-1"))
	h.send(h.event("gave-up", "Hello?", "user-1"))
	h.advance(6 * time.Second)
	h.send(h.event("answered", "Hello?", "user-1", "reply-1"))
	h.send(h.endOfCall("gave-up", "customer-ended-call"))
	wants := []string{
		"HANG       call=answered team=t1 turn-timeout, awaiting-assistant: user-1 unanswered for 6.0s (first turn user-1) model=openai/gpt-4o",
		"HANG       call=gave-up team=t1 turn-timeout, awaiting-assistant: user-1 unanswered for 6.0s (first turn user-1) model=openai/gpt-4o",
		"RESOLVED   call=answered team=t1 turn-timeout, awaiting-assistant: user-1 answered after 6.0s (reply reply-1)",
		"UNRESOLVED call=gave-up team=t1 turn-timeout, awaiting-assistant: user-1 never answered, the call ended after 6.0s (customer-ended-call)",
	}
	for deadline := time.Now().Add(waitFor); strings.Count(out.String(), "\n") < len(wants)+1; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("tail() = %v", err)
	}
	for _, want := range wants {
		if strings.Count(out.String(), want) != 1 {
			t.Errorf("tail printed\n%s\nwant one line holding\n%s", out, want)
		}
	}
}
