package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// child is a subject under test running in a process of its own, connected to the load
// generator's NATS server: its RSS and CPU time are its own, read from /proc.
type child struct {
	name    string // the subject: raw, engine, baseline or binary
	cmd     *exec.Cmd
	logPath string
	ctl     string // control subject; empty for the binary, which has none
	dl      string // dead-letter subject, where its markers come back
	done    chan struct{}
	waitErr error
}

// detFlags are the detection flags a subject runs with.
type detFlags struct {
	timeout, maxWait, callTTL time.Duration
	maxCalls                  int64
}

// startChild starts subject name for a phase. Its stderr goes to a log in cfg.Out.
func startChild(cfg *Config, url, phase, name string, det detFlags) (*child, error) {
	tag := phase + "-" + name
	c := &child{name: name, dl: "bench.dl." + tag, done: make(chan struct{}),
		logPath: filepath.Join(cfg.Out, tag+".log")}
	common := []string{"--nats-url", url, "--dead-letter-subject", c.dl,
		"--timeout", det.timeout.String(), "--max-wait", det.maxWait.String(), "--call-ttl", det.callTTL.String(),
		"--max-calls", strconv.FormatInt(det.maxCalls, 10)}
	var args []string
	if name == SubjectBinary {
		args = append([]string{cfg.Binary, "run", "--metrics-listen="}, common...)
	} else {
		c.ctl = "bench.ctl." + tag
		args = append(append(append([]string(nil), cfg.Self...), "--serve", name, "--ctl", c.ctl), common...)
		if name == SubjectEngine {
			args = append(args, cfg.EngineArgs...)
		}
		if cfg.Profile {
			args = append(args, "--cpuprofile", filepath.Join(cfg.Out, tag+".pprof"),
				"--memprofile", filepath.Join(cfg.Out, tag+".heap.pprof"))
		}
	}
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("subject log: %w", err)
	}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), ChildEnv+"=1")
	// A subject must not outlive the load generator.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { // owned by c: stop waits for done
		c.waitErr = c.cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// probe publishes markers until one comes back: the subject is subscribed. It returns
// the last marker published.
func (c *child) probe(nc *nats.Conn, echo *echoes) (int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for seq := int64(1); ; seq++ {
		if err := nc.Publish(markerSubject, marker(seq)); err != nil {
			return 0, fmt.Errorf("probe %s: %w", c.name, err)
		}
		if err := nc.Flush(); err != nil {
			return 0, fmt.Errorf("probe %s: %w", c.name, err)
		}
		select {
		case <-echo.notify:
			// Subscribed: wait for the last probe too, so that none is still on its way.
			return seq, echo.wait(seq, 30*time.Second)
		case <-c.done:
			return 0, fmt.Errorf("%s exited at start (%v): see %s", c.name, c.waitErr, c.logPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not ready after 30s: see %s", c.name, c.logPath)
		}
	}
}

// stats asks the subject for its counters; with gc, after two garbage collections.
func (c *child) stats(nc *nats.Conn, gc bool) (ChildStats, error) {
	req := "stats"
	if gc {
		req = "gc"
	}
	return c.request(nc, req)
}

// lagStats asks the subject for its counters, its own lags counting the hangs due
// until until.
func (c *child) lagStats(nc *nats.Conn, until time.Time) (ChildStats, error) {
	return c.request(nc, "stats "+strconv.FormatInt(until.UnixNano(), 10))
}

func (c *child) request(nc *nats.Conn, req string) (ChildStats, error) {
	var st ChildStats
	if c.ctl == "" {
		return st, errors.New("no control subject")
	}
	m, err := nc.Request(c.ctl, []byte(req), 2*time.Minute)
	if err != nil {
		return st, fmt.Errorf("stats of %s: %w", c.name, err)
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return st, fmt.Errorf("stats of %s: %w", c.name, err)
	}
	return st, nil
}

// stop sends SIGTERM, so that the subject drains and exits as on a deploy, and waits;
// after a minute it kills it.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within a minute: killed", c.name)
	}
	if c.waitErr != nil {
		return fmt.Errorf("%s: %w (see %s)", c.name, c.waitErr, c.logPath)
	}
	return nil
}

// proc is what /proc tells of a process.
type proc struct {
	cpu       time.Duration // user and system time
	rss, peak int64         // VmRSS and VmHWM, bytes
}

// clockTick is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func (c *child) proc() proc { return readProc(c.cmd.Process.Pid) }

func readProc(pid int) proc {
	var p proc
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses and may hold spaces.
		if i := bytes.LastIndexByte(data, ')'); i > 0 {
			f := strings.Fields(string(data[i+1:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				p.cpu = time.Duration(ut+st) * clockTick
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "VmRSS":
				p.rss = kb << 10
			case "VmHWM":
				p.peak = kb << 10
			}
		}
		f.Close()
	}
	return p
}

// selfCPU returns the CPU time of the load generator itself: publisher, NATS server
// and observer.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// binaryEvents reads the events the binary applied from its last log line
// "engine stopped".
func (c *child) binaryEvents() (int64, bool) {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return 0, false
	}
	var found bool
	var events int64
	for line := range bytes.Lines(data) {
		var l struct {
			Msg    string `json:"msg"`
			Events int64  `json:"events"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == "engine stopped" {
			events, found = l.Events, true
		}
	}
	return events, found
}
