package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangwatch/hangwatch/transport"
)

func TestMain(m *testing.M) {
	// The binary, built once by the first test that runs it, goes with the run.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBinary()
		os.Exit(code)
	}))
}

// lookupIn looks variables up in environ, as os.LookupEnv does in the environment.
func lookupIn(environ map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := environ[k]
		return v, ok
	}
}

// runArgs runs the command in process, with env as the whole environment.
func runArgs(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old := env
	env = lookupIn(environ)
	defer func() { env = old }()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		give       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", give: nil, wantCode: exitUsage, wantStderr: "Commands:"},
		{name: "help", give: []string{"help"}, wantCode: exitOK, wantStdout: "Commands:"},
		{name: "unknown command", give: []string{"serve"}, wantCode: exitUsage, wantStderr: `unknown command "serve"`},
		{name: "version", give: []string{"version"}, wantCode: exitOK, wantStdout: "hangwatch dev (go"},
		{name: "run help names every env variable", give: []string{"run", "--help"}, wantCode: exitOK, wantStdout: "HANGWATCH_MAX_WAIT"},
		{name: "run help hides secret values", env: map[string]string{"HANGWATCH_NATS_PASSWORD": "s3cr3t"}, give: []string{"run", "--help"}, wantCode: exitOK, wantStdout: "--nats-password"},
		{name: "run help hides a secret on the command line", give: []string{"run", "--nats-token", "s3cr3t", "--help"}, wantCode: exitOK, wantStdout: "--nats-token"},
		{name: "unknown flag", give: []string{"run", "--timeout-ms", "5"}, wantCode: exitUsage, wantStderr: "flag provided but not defined: -timeout-ms"},
		{name: "bad duration", give: []string{"run", "--timeout", "5 seconds"}, wantCode: exitUsage, wantStderr: `invalid value "5 seconds" for flag -timeout`},
		{name: "zero timeout", give: []string{"run", "--timeout", "0s"}, wantCode: exitUsage, wantStderr: "timeout must be above 0"},
		{name: "max wait under timeout", give: []string{"run", "--max-wait", "3s"}, wantCode: exitUsage, wantStderr: "max-wait must be 0 or above timeout"},
		{name: "ttl under max wait", give: []string{"run", "--call-ttl", "9s"}, wantCode: exitUsage, wantStderr: "call-ttl must be above"},
		{name: "bad env value", env: map[string]string{"HANGWATCH_MAX_WAIT": "soon"}, give: []string{"run"}, wantCode: exitUsage, wantStderr: `invalid value "soon" for HANGWATCH_MAX_WAIT`},
		{name: "bad secret env value is not shown", env: map[string]string{"HANGWATCH_EMBEDDED_PASSWORD": "s3cr3t"}, give: []string{"run", "--embedded-listen", "nowhere"}, wantCode: exitError, wantStderr: "listen address"},
		{name: "embedded password without a user", env: map[string]string{"HANGWATCH_EMBEDDED_PASSWORD": "s3cr3t"}, give: []string{"run", "--embedded-listen", "127.0.0.1:0"}, wantCode: exitError, wantStderr: "give both a user and a password"},
		{name: "bad subject", give: []string{"run", "--subject", "voice events"}, wantCode: exitUsage, wantStderr: "--subject: bad subject"},
		{name: "dead letters consumed", give: []string{"run", "--dead-letter-subject", "voice.events.dead"}, wantCode: exitUsage, wantStderr: "is one --subject consumes"},
		{name: "dead letters with a wildcard", give: []string{"run", "--dead-letter-subject", "dead.*"}, wantCode: exitUsage, wantStderr: "holds a wildcard"},
		{name: "bad template", give: []string{"run", "--hang-subject", "voice.hang.{team}"}, wantCode: exitUsage, wantStderr: "unknown placeholder {team}"},
		{name: "bad log format", give: []string{"run", "--log-format", "xml"}, wantCode: exitUsage, wantStderr: "--log-format"},
		{name: "unreachable server", give: []string{"run", "--nats-url", "nats://127.0.0.1:1", "--nats-connect-timeout", "1s"}, wantCode: exitError, wantStderr: "connect to NATS at nats://127.0.0.1:1"},
		// Read from HANGWATCH_NATS_URL (SPEC §4), the embedded server is not started.
		{name: "unreachable server from the environment", env: map[string]string{"HANGWATCH_NATS_URL": "nats://127.0.0.1:1"}, give: []string{"run", "--nats-connect-timeout", "1s", "--embedded-listen", "nowhere"}, wantCode: exitError, wantStderr: "connect to NATS at nats://127.0.0.1:1"},
		{name: "tail unreachable", give: []string{"tail", "--nats-url", "nats://127.0.0.1:1"}, wantCode: exitError, wantStderr: "connect to NATS"},
		{name: "tail bad format", give: []string{"tail", "--format", "yaml"}, wantCode: exitUsage, wantStderr: "--format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runArgs(t, tt.env, tt.give...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstderr: %s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stdout %q\nstderr %q\nwant them to hold %q and %q", stdout, stderr, tt.wantStdout, tt.wantStderr)
			}
			if code == exitUsage || code == exitError {
				if lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); lines > 0 && tt.give != nil && !strings.Contains(stderr, "Commands:") {
					t.Errorf("error is %d lines, want one: %q", lines+1, stderr)
				}
			}
			for _, secret := range []string{"s3cr3t"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output shows a secret: %q", stdout+stderr)
				}
			}
		})
	}
}

func TestEnvironmentFillsFlags(t *testing.T) {
	c := newCommand("run", "")
	o := sidecarFlags(c)
	environ := map[string]string{
		"HANGWATCH_MAX_WAIT": "12s",
		"HANGWATCH_TIMEOUT":  "4s", // the command line wins
		"HANGWATCH_SUBJECT":  "a.>, b.*",
	}
	if err := c.parse([]string{"--timeout", "3s"}, lookupIn(environ)); err != nil {
		t.Fatal(err)
	}
	if o.det.MaxWait != 12*time.Second || o.det.Timeout != 3*time.Second {
		t.Errorf("max-wait %v, timeout %v; want 12s from the environment and 3s from the command line", o.det.MaxWait, o.det.Timeout)
	}
	if got := o.subjects.String(); got != "a.>,b.*" {
		t.Errorf("subjects = %q, want a.>,b.*", got)
	}
}

func TestEnvironmentEmptyValues(t *testing.T) {
	c := newCommand("run", "")
	o := sidecarFlags(c)
	environ := map[string]string{"HANGWATCH_METRICS_LISTEN": "", "HANGWATCH_TIMEOUT": ""}
	if err := c.parse(nil, lookupIn(environ)); err != nil {
		t.Fatal(err)
	}
	if o.metricsListen != "" || o.det.Timeout != 5*time.Second {
		t.Errorf("metrics-listen %q, timeout %v; want empty (disabled) and the default", o.metricsListen, o.det.Timeout)
	}
}

func TestSubjectFlagReplacesDefault(t *testing.T) {
	c := newCommand("run", "")
	o := sidecarFlags(c)
	if err := c.parse([]string{"--subject", "a.>", "--subject", "b.>"}, noEnv); err != nil {
		t.Fatal(err)
	}
	if got := o.subjects.String(); got != "a.>,b.>" {
		t.Errorf("subjects = %q, want a.>,b.> without the default", got)
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{
			name: "hang",
			give: `{"message":{"timestamp":1763647346707,"type":"hang","call":{"id":"c1","teamId":"t1"},"messages":[{"text":"secret"}],"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"user-2","firstUserMessageId":"user-2","waitMs":3000,"thresholdMs":3000}}}`,
			want: "14:02:26.707 UTC HANG       call=c1 team=t1 turn-timeout, awaiting-assistant: user-2 unanswered for 3.0s (first turn user-2)",
		},
		{
			name: "hang awaiting a tool, after an input gap, with the model",
			give: `{"message":{"timestamp":1763647346707,"type":"hang","call":{"id":"c1","teamId":"t1"},"hang":{"reason":"max-wait","stage":"awaiting-tool","userMessageId":"user-4","firstUserMessageId":"user-2","waitMs":10000,"thresholdMs":10000,"inputGapMs":1500,"model":{"provider":"openai","model":"gpt-4o"}}}}`,
			want: "14:02:26.707 UTC HANG       call=c1 team=t1 max-wait, awaiting-tool: user-4 unanswered for 10.0s (first turn user-2), after an input gap of 1.5s model=openai/gpt-4o",
		},
		{
			name: "resolved",
			give: `{"message":{"timestamp":1763647350816,"type":"hang-resolved","call":{"id":"c1","teamId":"t1"},"hang":{"reason":"turn-timeout","stage":"after-tool","userMessageId":"user-3","firstUserMessageId":"user-2","replyMessageId":"r3","waitMs":7100}}}`,
			want: "14:02:30.816 UTC RESOLVED   call=c1 team=t1 turn-timeout, after-tool: user-2 answered after 7.1s (reply r3)",
		},
		{
			name: "unresolved",
			give: `{"message":{"timestamp":1763647350816,"type":"hang-unresolved","call":{"id":"c1","teamId":"t1"},"hang":{"reason":"turn-timeout","stage":"awaiting-tool","userMessageId":"user-3","firstUserMessageId":"user-2","waitMs":12000,"endedReason":"customer-ended-call"}}}`,
			want: "14:02:30.816 UTC UNRESOLVED call=c1 team=t1 turn-timeout, awaiting-tool: user-2 never answered, the call ended after 12.0s (customer-ended-call)",
		},
		{
			name: "unresolved without a reason",
			give: `{"message":{"timestamp":1763647350816,"type":"hang-unresolved","call":{"id":"c1","teamId":"t1"},"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","firstUserMessageId":"user-2","waitMs":12000,"endedReason":""}}}`,
			want: "14:02:30.816 UTC UNRESOLVED call=c1 team=t1 turn-timeout, awaiting-assistant: user-2 never answered, the call ended after 12.0s (no reason given)",
		},
		{name: "not JSON", give: `nope`, want: "voice.hang.t.c: not a hangwatch event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize("voice.hang.t.c", []byte(tt.give), time.UTC)
			if !strings.HasPrefix(got, tt.want) || strings.Contains(got, "secret") {
				t.Errorf("summarize() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestRunEmbeddedStartsAndStops starts `run` with its own embedded server on a free
// port, in process, and stops it like a signal would.
func TestRunEmbeddedFailsOnBusyPort(t *testing.T) {
	srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	addr := strings.TrimPrefix(srv.ClientURL(), "nats://")
	code, _, stderr := runArgs(t, nil, "run", "--embedded-listen", addr)
	if code != exitError || !strings.Contains(stderr, "start embedded NATS server") {
		t.Errorf("run on a busy port: exit %d, stderr %q; want exit 1 and a one-line reason", code, stderr)
	}
}

// TestRunFailsOnBusyPorts: a port of the metrics or of the HTTP ingest that is in use
// fails the start with a one-line error, rather than leave the sidecar running without
// them.
func TestRunFailsOnBusyPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	tests := []struct {
		name string
		give []string
		want string
	}{
		{name: "metrics", give: []string{"--metrics-listen", busy}, want: "--metrics-listen: listen tcp " + busy},
		{name: "HTTP ingest", give: []string{"--metrics-listen", "", "--http-listen", busy}, want: "--http-listen: listen tcp " + busy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				code   int
				stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, _, stderr := runArgs(t, nil, append([]string{"run", "--embedded-listen", "127.0.0.1:0", "--log-level", "error"}, tt.give...)...)
				done <- result{code, stderr}
			}()
			var code int
			var stderr string
			select {
			case r := <-done:
				code, stderr = r.code, r.stderr
			case <-time.After(waitFor):
				t.Fatal("the sidecar runs without the port it was given")
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if last := lines[len(lines)-1]; code != exitError || !strings.HasPrefix(last, "hangwatch: ") || !strings.Contains(last, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and a last line holding %q", code, stderr, tt.want)
			}
		})
	}
}

// TestTailLine: tail prints one JSON object per line, even for a history the pipeline
// sent pretty-printed, and its text summary shows no control character a publisher
// slipped into an id.
func TestTailLine(t *testing.T) {
	pretty := []byte("{\n  \"message\": {\n    \"type\": \"hang\",\n    \"messages\": [\n      {\"text\": \"a\\nb\"}\n    ]\n  }\n}")
	got := tailLine("json", "voice.hang.t.c", pretty, time.UTC)
	if strings.Contains(got, "\n") || !json.Valid([]byte(got)) || !strings.Contains(got, `"a\nb"`) {
		t.Errorf("tailLine(json) = %q, want the event compacted on one line", got)
	}
	evil := []byte(`{"message":{"type":"hang-unresolved","call":{"id":"c\u001b[31m1","teamId":"t\u0007"},"hang":{"userMessageId":"u\r","stage":"\u001b]0;x","endedReason":"e\u001b[2J"}}}`)
	if got := tailLine("text", "voice.hang.t.c", evil, time.UTC); strings.ContainsAny(got, "\x1b\x07\r") {
		t.Errorf("tailLine(text) = %q holds control characters", got)
	}
	if got := tailLine("text", "voice.hang.t.c", evil, time.UTC); !strings.Contains(got, "UNRESOLVED") {
		t.Errorf("tailLine(text) = %q, want an unresolved hang", got)
	}
}
