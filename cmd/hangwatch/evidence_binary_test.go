package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"github.com/hangwatch/hangwatch/transport"
)

// The checks of issue 11 ("Evidence before verdict") on the real binary: a process
// stopped across its deadlines, and the small defects of its list.

// metricsAddr returns the address the process serves /metrics on, from its log (start
// it with --metrics-listen 127.0.0.1:0).
func (p *process) metricsAddr(t *testing.T) string {
	t.Helper()
	p.waitLog(t, "serving metrics")
	m := regexp.MustCompile(`"msg":"serving metrics","addr":"([^"]+)"`).FindSubmatch(p.stderr.Bytes())
	if m == nil {
		t.Fatalf("no address in the log:\n%s", p.stderr)
	}
	return string(m[1])
}

// scrape reads the process's /metrics.
func (p *process) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get("http://" + p.metricsAddr(t) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", res.StatusCode, err)
	}
	return parseMetrics(t, string(body))
}

// untilMetric polls the process's /metrics until the sample of name with labels
// reaches at least want.
func (p *process) untilMetric(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); ; {
		v, _ := lookup(p.scrape(t), name, labels...)
		if v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, v, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pipeline publishes a test's events: on core NATS, or stored in JetStream.
type pipeline struct {
	t  *testing.T
	nc *nats.Conn
	js *jsBroker // nil: core NATS
}

func (pl *pipeline) publish(call string, data []byte) {
	pl.t.Helper()
	subject := "voice.events." + call + ".conversation-update"
	if pl.js != nil {
		pl.js.publish(subject, data)
		return
	}
	if err := pl.nc.Publish(subject, data); err != nil {
		pl.t.Fatal(err)
	}
	if err := pl.nc.Flush(); err != nil {
		pl.t.Fatal(err)
	}
}

// TestBinaryStoppedAcrossDeadlines stops the hangwatch process (SIGSTOP: what a long GC
// pause, CPU throttling or a VM steal does) for about 4 s across the deadlines of 13
// calls, while the pipeline answers 12 of them before their deadline. When the process
// goes on, the replies waiting for it are applied before any deadline fires: no false
// hang, and the unanswered call hangs once. In core mode and in JetStream mode.
func TestBinaryStoppedAcrossDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary in real time")
	}
	t.Parallel()
	const (
		timeout  = 3 * time.Second
		answered = 12
	)
	for _, mode := range []string{"core", "jetstream"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"run", "--timeout", timeout.String(), "--max-wait", "0", "--max-lag", "500ms", "--metrics-listen", "127.0.0.1:0"}
			pl := &pipeline{t: t}
			var url, live string
			if mode == "jetstream" {
				pl.js = newJSBroker(t)
				pl.nc, url, live = pl.js.nc, pl.js.url, "consuming live"
				args = append(args, "--jetstream")
			} else {
				srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(srv.Shutdown)
				if pl.nc, err = nats.Connect(srv.ClientURL()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pl.nc.Close)
				url, live = srv.ClientURL(), "consuming"
			}
			hangs, err := pl.nc.SubscribeSync("voice.hang.>")
			if err == nil {
				err = pl.nc.Flush()
			}
			if err != nil {
				t.Fatal(err)
			}
			p := startBinary(t, append(args, "--nats-url", url)...)
			p.waitLog(t, live)

			start := time.Now()
			for i := range answered {
				id := fmt.Sprint("answered-", i)
				pl.publish(id, turnEvent(id, "user-1"))
			}
			pl.publish("silent", turnEvent("silent", "user-1"))
			p.untilMetric(t, answered+1, "hangwatch_events_applied_total")
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			time.Sleep(time.Second)
			for i := range answered {
				id := fmt.Sprint("answered-", i)
				pl.publish(id, turnEvent(id, "user-1", "reply-1"))
			}
			if late := time.Since(start); late > timeout-500*time.Millisecond {
				t.Fatalf("the replies went out %v after the turns, too close to the %v timeout: the machine is too slow for this test", late, timeout)
			}
			time.Sleep(time.Until(stopped.Add(4 * time.Second))) // the deadlines pass while stopped
			if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}

			m, err := hangs.NextMsg(waitFor)
			if err != nil {
				t.Fatalf("no hang of the unanswered call: %v\n%s", err, p.stderr)
			}
			if m.Subject != "voice.hang.team-1.silent" {
				t.Errorf("hang of %s, want only the unanswered call's", m.Subject)
			}
			if m, err := hangs.NextMsg(time.Second); err == nil {
				t.Errorf("a false hang: %s\n%s", m.Subject, p.stderr)
			}
			fams := p.scrape(t)
			if v := value(t, fams, "hangwatch_hangs_total", "reason", "turn-timeout", "stage", "awaiting-assistant"); v != 1 {
				t.Errorf("hangwatch_hangs_total = %v, want 1", v)
			}
			if v := value(t, fams, "hangwatch_calls", "state", "idle"); v != answered {
				t.Errorf("hangwatch_calls{state=idle} = %v, want the %d answered calls", v, answered)
			}

			if mode == "jetstream" {
				if code := p.stop(t, syscall.SIGTERM); code != 0 {
					t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
				}
				return
			}
			// On SIGTERM, core mode says how many calls it stops watching: their state
			// lives in this process only.
			pl.publish("pending", turnEvent("pending", "user-1"))
			p.untilMetric(t, 1, "hangwatch_calls", "state", "armed")
			if code := p.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
			}
			if !regexp.MustCompile(`"level":"warn","ts":[^,]+,"msg":"stopped watching calls with an unanswered turn[^"]*","armed":1,"hung":1}`).Match(p.stderr.Bytes()) {
				t.Errorf("no warning with the 1 armed and 1 hung call it stops watching:\n%s", p.stderr)
			}
		})
	}
}

// TestBinaryInputEdges: two of the small defects of issue 11, on the binary in core
// mode. An event of type hang (another service's, or hangwatch's own seen again) whose
// call.status is finished ends the call: no hang follows for it. A bad event of nearly
// the server's max payload is still dead-lettered, cut to fit, with a header that says
// how long it was.
func TestBinaryInputEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary in real time")
	}
	t.Parallel()
	srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	hangs, err := nc.SubscribeSync("voice.hang.>")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := nc.SubscribeSync("voice.dead")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "run", "--nats-url", srv.ClientURL(), "--timeout", "1s", "--max-lag", "500ms", "--max-wait", "0",
		"--dead-letter-subject", "voice.dead", "--metrics-listen", "127.0.0.1:0")
	p.waitLog(t, "consuming")
	publish := func(subject string, data []byte) {
		t.Helper()
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}

	publish("voice.events.ended.conversation-update", turnEvent("ended", "user-1"))
	publish("voice.events.control.conversation-update", turnEvent("control", "user-1"))
	publish("voice.events.ended.hang", fmt.Appendf(nil,
		`{"message":{"type":"hang","timestamp":%d,"call":{"id":"ended","teamId":"team-1","status":"finished"},"hang":{"reason":"turn-timeout"}}}`, time.Now().UnixMilli()))
	m, err := hangs.NextMsg(waitFor)
	if err != nil {
		t.Fatalf("no hang of the control call: %v\n%s", err, p.stderr)
	}
	if m.Subject != "voice.hang.team-1.control" {
		t.Errorf("hang of %s, want the control call's only: a finished status ends a call, whatever the event's type", m.Subject)
	}
	if m, err := hangs.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("a hang of an ended call: %s", m.Subject)
	}
	fams := p.scrape(t)
	if v := value(t, fams, "hangwatch_calls_ended_total"); v != 1 {
		t.Errorf("hangwatch_calls_ended_total = %v, want 1", v)
	}

	// Not JSON, 100 bytes under the max payload: with its headers, it would not fit.
	max := int(nc.MaxPayload())
	bad := bytes.Repeat([]byte("x"), max-100)
	publish("voice.events.big.conversation-update", bad)
	dl, err := dead.NextMsg(waitFor)
	if err != nil {
		t.Fatalf("no dead letter: %v\n%s", err, p.stderr)
	}
	if got := dl.Header.Get(transport.HeaderBadInputReason); got != "not-json" {
		t.Errorf("dead letter reason %q, want not-json", got)
	}
	if got := dl.Header.Get(transport.HeaderTruncated); got != strconv.Itoa(len(bad)) {
		t.Errorf("%s = %q, want the original length %d", transport.HeaderTruncated, got, len(bad))
	}
	if len(dl.Data) >= len(bad) || !bytes.Equal(dl.Data, bad[:len(dl.Data)]) {
		t.Errorf("dead letter of %d bytes, want the event's first bytes, cut", len(dl.Data))
	}
	if v := value(t, p.scrape(t), "hangwatch_dead_letters_total"); v != 1 {
		t.Errorf("hangwatch_dead_letters_total = %v, want 1", v)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
	}
}
