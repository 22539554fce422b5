package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/transport"
	"github.com/hangwatch/hangwatch/wire"
)

const tailSummary = `Print the hang and hang-resolved events published on NATS, one per line: the event's
JSON, or with --format text a one-line summary. Runs until interrupted.`

// defaultTailURL is where tail looks without --nats-url: the embedded server's default.
const defaultTailURL = "nats://" + transport.DefaultEmbeddedListen

func tailCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("tail", tailSummary)
	conn := connFlags(c)
	hang := c.fs.String("hang-subject", wire.DefaultHangSubject, "subject template of hang events, as given to run")
	resolved := c.fs.String("resolved-subject", wire.DefaultResolvedSubject, "subject template of hang-resolved events, as given to run")
	format := c.fs.String("format", "json", "json (the events as published) or text (one summary line each)")
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	if *format != "json" && *format != "text" {
		return usageError{c, fmt.Errorf("--format: want json or text, got %q", *format)}
	}
	hangTmpl, err := wire.ParseSubjectTemplate(*hang)
	if err != nil {
		return usageError{c, err}
	}
	resolvedTmpl, err := wire.ParseSubjectTemplate(*resolved)
	if err != nil {
		return usageError{c, err}
	}
	if conn.URL == "" {
		conn.URL = defaultTailURL
	}
	log, err := newLogger(stderr, "warn", "console")
	if err != nil {
		return err
	}
	conn.Logger = log
	nc, err := transport.Connect(*conn)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(func(os.Signal) {})
	defer stop()
	return tail(ctx, nc, hangTmpl, resolvedTmpl, *format, stdout)
}

// tail prints every output published on the subjects of the templates, each once, until
// ctx is done; then it closes nc.
func tail(ctx context.Context, nc *transport.Conn, hang, resolved wire.SubjectTemplate, format string, stdout io.Writer) (err error) {
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cerr := nc.Close(closeCtx); err == nil {
			err = cerr
		}
	}()
	// One channel for both subjects keeps the lines in arrival order, written by this
	// goroutine only.
	msgs := make(chan *nats.Msg, 1024)
	for _, s := range wire.OutputWildcards(hang, resolved) {
		if _, err := nc.NATS().ChanSubscribe(s, msgs); err != nil {
			return fmt.Errorf("subscribe %s: %w", s, err)
		}
	}
	if err := nc.NATS().Flush(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		select {
		case m := <-msgs:
			if _, err := fmt.Fprintln(stdout, tailLine(format, m.Subject, m.Data)); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// tailLine renders an output event as one line: its JSON, compacted (an event carries the
// history byte for byte as the pipeline sent it, pretty-printed or not), or a summary.
func tailLine(format, subject string, data []byte) string {
	if format == "text" {
		return summarize(subject, data)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return summarize(subject, data) // not JSON: say so, on one line
	}
	return b.String()
}

// event is the part of a hang or hang-resolved that a summary line shows.
type event struct {
	Message struct {
		Timestamp int64  `json:"timestamp"`
		Type      string `json:"type"`
		Call      struct {
			ID     string `json:"id"`
			TeamID string `json:"teamId"`
		} `json:"call"`
		Hang struct {
			Reason             string `json:"reason"`
			UserMessageID      string `json:"userMessageId"`
			FirstUserMessageID string `json:"firstUserMessageId"`
			ReplyMessageID     string `json:"replyMessageId"`
			WaitMs             int64  `json:"waitMs"`
			ThresholdMs        int64  `json:"thresholdMs"`
		} `json:"hang"`
	} `json:"message"`
}

// summarize renders an output event as one line for people: when, what, which call,
// why and how long the caller waited. It never shows message text.
func summarize(subject string, data []byte) string {
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Sprintf("%s: not a hangwatch event: %v", subject, err)
	}
	m, h := ev.Message, ev.Message.Hang
	m.Call.ID, m.Call.TeamID = printable(m.Call.ID), printable(m.Call.TeamID)
	h.UserMessageID, h.FirstUserMessageID, h.ReplyMessageID = printable(h.UserMessageID), printable(h.FirstUserMessageID), printable(h.ReplyMessageID)
	at := time.UnixMilli(m.Timestamp).UTC().Format("15:04:05.000")
	switch m.Type {
	case "hang":
		return fmt.Sprintf("%s HANG      call=%s team=%s %s: %s unanswered for %.1fs (first turn %s)",
			at, m.Call.ID, m.Call.TeamID, h.Reason, h.UserMessageID, float64(h.WaitMs)/1000, h.FirstUserMessageID)
	case "hang-resolved":
		return fmt.Sprintf("%s RESOLVED  call=%s team=%s %s answered after %.1fs (reply %s)",
			at, m.Call.ID, m.Call.TeamID, h.FirstUserMessageID, float64(h.WaitMs)/1000, h.ReplyMessageID)
	}
	return fmt.Sprintf("%s %s call=%s", at, m.Type, m.Call.ID)
}

// printable replaces what a terminal would interpret (control characters, escape
// sequences) in a value a publisher chose.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsGraphic(r) {
			return r
		}
		return '?'
	}, s)
}
