package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/transport"
)

// waitFor bounds every wait on the binary or the broker; it only matters on failure.
const waitFor = 20 * time.Second

var (
	buildOnce sync.Once
	binaryDir string
	binary    string
	buildErr  error
)

// buildBinary builds cmd/hangwatch once per test run; TestMain removes it at the end.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binaryDir, buildErr = os.MkdirTemp("", "hangwatch-bin"); buildErr != nil {
			return
		}
		binary = filepath.Join(binaryDir, "hangwatch")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// removeBinary removes what buildBinary built.
func removeBinary() {
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
}

// syncBuffer is a buffer that the process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

// process is a running hangwatch binary.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed once it has exited
}

func startBinary(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(buildBinary(t), args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), "HANGWATCH_LOG_FORMAT=json")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLog waits until the process has logged a line with msg.
func (p *process) waitLog(t *testing.T, msg string) {
	t.Helper()
	p.waitFor(t, `"msg":"`+msg+`"`)
}

// waitFor waits until the process has written s on stderr.
func (p *process) waitFor(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); !bytes.Contains(p.stderr.Bytes(), []byte(s)); {
		select {
		case <-p.done:
			t.Fatalf("exited before writing %q:\n%s", s, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends sig and returns the exit code.
func (p *process) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(waitFor):
		t.Fatalf("hangwatch did not exit after %v:\n%s", sig, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// turnEvent is a conversation-update of call id whose history is msgs, stamped now.
func turnEvent(id string, msgs ...string) []byte {
	now := time.Now().UnixMilli()
	hist := ""
	for i, m := range msgs {
		if i > 0 {
			hist += ","
		}
		role := "user"
		if m[0] == 'r' {
			role = "assistant"
		}
		hist += fmt.Sprintf(`{"messageId":%q,"role":%q,"text":"Hello?","timestamp":%d}`, m, role, now)
	}
	return fmt.Appendf(nil, `{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"teamId":"team-1","status":"ongoing"},"assistant":{},"messages":[%s],"phone":{},"customer":{}}}`, now, id, hist)
}

// TestBinaryRun runs the real binary against a broker: a stalled call hangs once, an
// answered one does not, and SIGTERM exits 0.
func TestBinaryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	outputs := make(chan *nats.Msg, 16)
	for _, s := range []string{"voice.hang.>", "voice.hang-resolved.>"} {
		if _, err := nc.ChanSubscribe(s, outputs); err != nil {
			t.Fatal(err)
		}
	}

	p := startBinary(t, "run", "--nats-url", srv.ClientURL(), "--timeout", "1s", "--max-lag", "500ms", "--max-wait", "0", "--metrics-listen", "")
	p.waitLog(t, "consuming")

	publish := func(subject string, data []byte) {
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	publish("voice.events.stalled.conversation-update", turnEvent("stalled", "user-1"))
	publish("voice.events.answered.conversation-update", turnEvent("answered", "user-1"))
	publish("voice.events.answered.conversation-update", turnEvent("answered", "user-1", "reply-1"))
	published := time.Now()

	var m *nats.Msg
	select {
	case m = <-outputs:
	case <-time.After(waitFor):
		t.Fatalf("no hang:\n%s", p.stderr)
	}
	if took := time.Since(published); took < 900*time.Millisecond {
		t.Errorf("hang after %v, before the 1s timeout", took)
	}
	if m.Subject != "voice.hang.team-1.stalled" {
		t.Errorf("hang subject = %q, want voice.hang.team-1.stalled", m.Subject)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got != "stalled:user-1:hang" {
		t.Errorf("Nats-Msg-Id = %q, want stalled:user-1:hang", got)
	}
	var ev struct {
		Message struct {
			Type     string              `json:"type"`
			Call     struct{ ID string } `json:"call"`
			Messages []json.RawMessage   `json:"messages"`
			Hang     struct {
				Reason      string `json:"reason"`
				ThresholdMs int64  `json:"thresholdMs"`
			} `json:"hang"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("hang payload is not JSON: %v", err)
	}
	if ev.Message.Type != "hang" || ev.Message.Call.ID != "stalled" || len(ev.Message.Messages) != 1 ||
		ev.Message.Hang.Reason != "turn-timeout" || ev.Message.Hang.ThresholdMs != 1000 {
		t.Errorf("hang payload = %s", m.Data)
	}
	// The answered call's deadline passed with the stalled one's: nothing more comes.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-outputs:
		t.Errorf("a second output: %s %s", m.Subject, m.Data)
	case <-time.After(300 * time.Millisecond):
	}

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, p.stderr)
	}
	if !bytes.Contains(p.stderr.Bytes(), []byte(`"msg":"engine stopped"`)) {
		t.Errorf("no orderly shutdown in the log:\n%s", p.stderr)
	}
}
