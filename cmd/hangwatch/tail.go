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

const tailSummary = `Print the hang, hang-resolved and hang-unresolved events published on NATS, one per
line: the event's JSON, or with --format text a one-line summary (with what the caller
was waiting for, and why an unresolved call ended). Runs until interrupted.`

// defaultTailURL is where tail looks without --nats-url: the embedded server's default.
const defaultTailURL = "nats://" + transport.DefaultEmbeddedListen

// tailOptions are the flags of `hangwatch tail`.
type tailOptions struct {
	conn                               *transport.ConnOptions
	hang, resolved, unresolved, format string
}

func tailFlags(c *command) *tailOptions {
	o := &tailOptions{conn: connFlags(c)}
	c.fs.StringVar(&o.hang, "hang-subject", wire.DefaultHangSubject, "subject template of hang events, as given to run")
	c.fs.StringVar(&o.resolved, "resolved-subject", wire.DefaultResolvedSubject, "subject template of hang-resolved events, as given to run")
	c.fs.StringVar(&o.unresolved, "unresolved-subject", wire.DefaultUnresolvedSubject, "subject template of hang-unresolved events, as given to run")
	c.fs.StringVar(&o.format, "format", "json", "json (the events as published) or text (one summary line each, times in the local zone)")
	return o
}

func tailCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("tail", tailSummary)
	o := tailFlags(c)
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	conn, format := o.conn, &o.format
	if *format != "json" && *format != "text" {
		return usageError{c, fmt.Errorf("--format: want json or text, got %q", *format)}
	}
	var templates []wire.SubjectTemplate
	for _, t := range []struct{ flag, raw string }{{"--hang-subject", o.hang}, {"--resolved-subject", o.resolved}, {"--unresolved-subject", o.unresolved}} {
		tmpl, err := wire.ParseSubjectTemplate(t.raw)
		if err != nil {
			return usageError{c, fmt.Errorf("%s: %w", t.flag, err)}
		}
		templates = append(templates, tmpl)
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
	return tail(ctx, nc, templates, *format, stdout)
}

// tail prints every output published on the subjects of the templates, each once, until
// ctx is done; then it closes nc.
func tail(ctx context.Context, nc *transport.Conn, templates []wire.SubjectTemplate, format string, stdout io.Writer) (err error) {
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cerr := nc.Close(closeCtx); err == nil {
			err = cerr
		}
	}()
	// One channel for every subject keeps the lines in arrival order, written by this
	// goroutine only.
	msgs := make(chan *nats.Msg, 1024)
	for _, s := range wire.OutputWildcards(templates...) {
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
			if _, err := fmt.Fprintln(stdout, tailLine(format, m.Subject, m.Data, time.Local)); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// tailLine renders an output event as one line: its JSON, compacted (an event carries the
// history byte for byte as the pipeline sent it, pretty-printed or not), or a summary
// with the time in loc.
func tailLine(format, subject string, data []byte, loc *time.Location) string {
	if format == "text" {
		return summarize(subject, data, loc)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return summarize(subject, data, loc) // not JSON: say so, on one line
	}
	return b.String()
}

// tailTimeLayout is the time of a summary line: 21:31:48.592 CET. A zone without an
// abbreviation shows as its offset: 21:31:48.592 +0530.
const tailTimeLayout = "15:04:05.000 MST"

// event is the part of an output that a summary line shows.
type event struct {
	Message struct {
		Timestamp int64  `json:"timestamp"`
		Type      string `json:"type"`
		Call      struct {
			ID     string `json:"id"`
			TeamID string `json:"teamId"`
			OrgID  string `json:"orgId"` // the team of a Vapi call (SPEC §1)
		} `json:"call"`
		Hang struct {
			Reason             string `json:"reason"`
			Stage              string `json:"stage"`
			UserMessageID      string `json:"userMessageId"`
			FirstUserMessageID string `json:"firstUserMessageId"`
			ReplyMessageID     string `json:"replyMessageId"`
			WaitMs             int64  `json:"waitMs"`
			ThresholdMs        int64  `json:"thresholdMs"`
			InputGapMs         int64  `json:"inputGapMs"`
			EndedReason        string `json:"endedReason"`
			Model              struct {
				Provider string `json:"provider"`
				Model    string `json:"model"`
			} `json:"model"`
		} `json:"hang"`
	} `json:"message"`
}

// summarize renders an output event as one line for people: when (in loc, with its
// zone, to read beside logs in local time), what, which call, why, what the caller was
// waiting for (the stage), how long they waited, and for a call that ended hung, why it
// ended. It never shows message text.
func summarize(subject string, data []byte, loc *time.Location) string {
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Sprintf("%s: not a hangwatch event: %v", subject, err)
	}
	m, h := ev.Message, ev.Message.Hang
	if m.Call.TeamID == "" {
		m.Call.TeamID = m.Call.OrgID
	}
	for _, s := range []*string{&m.Type, &m.Call.ID, &m.Call.TeamID, &h.Reason, &h.Stage, &h.UserMessageID, &h.FirstUserMessageID,
		&h.ReplyMessageID, &h.EndedReason, &h.Model.Provider, &h.Model.Model} {
		*s = printable(*s)
	}
	at := time.UnixMilli(m.Timestamp).In(loc).Format(tailTimeLayout)
	head := fmt.Sprintf("call=%s team=%s %s, %s", m.Call.ID, m.Call.TeamID, h.Reason, h.Stage)
	wait := float64(h.WaitMs) / 1000
	switch m.Type {
	case "hang":
		line := fmt.Sprintf("%s HANG       %s: %s unanswered for %.1fs (first turn %s)", at, head, h.UserMessageID, wait, h.FirstUserMessageID)
		if h.InputGapMs > 0 {
			line += fmt.Sprintf(", after an input gap of %.1fs", float64(h.InputGapMs)/1000)
		}
		if h.Model.Model != "" {
			line += fmt.Sprintf(" model=%s/%s", h.Model.Provider, h.Model.Model)
		}
		return line
	case "hang-resolved":
		return fmt.Sprintf("%s RESOLVED   %s: %s answered after %.1fs (reply %s)", at, head, h.FirstUserMessageID, wait, h.ReplyMessageID)
	case "hang-unresolved":
		why := "no reason given"
		if h.EndedReason != "" {
			why = h.EndedReason
		}
		return fmt.Sprintf("%s UNRESOLVED %s: %s never answered, the call ended after %.1fs (%s)", at, head, h.FirstUserMessageID, wait, why)
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
