package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/transport"
)

// BudgetConfig is the memory scenario of issue 11 (`make bench-memory`), against the
// hangwatch binary: Calls calls armed at once, each with a History-byte history, under a
// retained-bytes budget; then they end; then Tombs end-of-call-reports of calls never
// seen, and one new call, which must not be refused.
type BudgetConfig struct {
	Binary string
	// Calls armed at once, each keeping a history of HistoryBytes (a conversation-update
	// whose last message is an unanswered user turn).
	Calls, HistoryBytes int
	// MaxRetained is the binary's --max-retained-bytes.
	MaxRetained int64
	// Tombs is the number of end-of-call-reports of calls never seen.
	Tombs int
	// ReturnWait is how long the RSS is watched for its return after the calls end.
	ReturnWait time.Duration
	// NATSURL is the server to use; empty starts an embedded one.
	NATSURL string
	Out     string
}

// DefaultBudgetConfig is the scenario of issue 11: 16,000 calls of 200 KB under a
// 256 MiB budget, then 1,000,000 tombstones.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{Calls: 16_000, HistoryBytes: 200_000, MaxRetained: 256 << 20, Tombs: 1_000_000,
		ReturnWait: time.Minute, Out: "bench/out"}
}

// BudgetResult is what the scenario measured of the binary's process.
type BudgetResult struct {
	Calls, HistoryBytes int
	MaxRetained         int64
	// PublishedBytes is the input of the armed calls.
	PublishedBytes int64
	// Armed is the binary's count of armed calls once all were delivered; Retained its
	// retained bytes then, and Truncated the calls that kept only the tail of their
	// history (hangwatch_history_truncations_total).
	Armed, Retained, Truncated int64
	// RSSIdle is the RSS before the calls; RSSArmed with every call armed; PeakRSS the
	// peak over the arming (VmHWM).
	RSSIdle, RSSArmed, PeakRSS int64
	// RSSEnded is the RSS once it fell below the target after the calls ended, or at
	// the end of the wait; ReturnTime how long that took from the last end.
	RSSEnded   int64
	ReturnTime time.Duration
	Returned   bool
	// Tombs end-of-call-reports of calls never seen; TombsHeld the ended calls the
	// binary remembers then (hangwatch_calls{state="ended"}); RSSTombs its RSS.
	Tombs     int
	TombsHeld int64
	RSSTombs  int64
	// NewCallArmed says that a new call after the tombstones was taken in (armed);
	// Refused is hangwatch_calls_refused_total at the end.
	NewCallArmed bool
	Refused      int64
	Elapsed      time.Duration
}

// budgetReturnTarget is what the RSS must return below once the calls have ended.
const budgetReturnTarget = 150_000_000

// budgetOverhead is what the RSS may take beyond the budget while the calls are armed.
const budgetOverhead = 150_000_000

// RunBudget runs the memory scenario against the binary and returns what it measured.
// Progress goes to stderr.
func RunBudget(ctx context.Context, cfg BudgetConfig, stderr io.Writer) (*BudgetResult, error) {
	if cfg.Binary == "" {
		return nil, fmt.Errorf("%w: the memory scenario needs --binary", ErrConfig)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	start := time.Now()
	prog := newProgress(stderr)
	defer prog.close()
	url := cfg.NATSURL
	if url == "" {
		srv, err := transport.StartEmbedded(transport.EmbeddedOptions{Listen: "127.0.0.1:0"})
		if err != nil {
			return nil, err
		}
		defer srv.Shutdown()
		url = srv.ClientURL()
	}
	pub, err := nats.Connect(url, nats.Name("hangbench-publisher"))
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	defer pub.Close()
	obs, err := nats.Connect(url, nats.Name("hangbench-observer"))
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	defer obs.Close()
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}

	b, err := startBudgetBinary(cfg, url, metricsAddr)
	if err != nil {
		return nil, err
	}
	var stopErr error
	defer func() {
		if b != nil {
			stopErr = b.stop()
		}
	}()
	echo := newEchoes()
	sess := &session{cfg: &Config{}, obs: obs}
	sub, err := sess.watch(b.dl, echo.handle)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	seq, err := b.probe(pub, echo)
	if err != nil {
		return nil, err
	}
	res := &BudgetResult{Calls: cfg.Calls, HistoryBytes: cfg.HistoryBytes, MaxRetained: cfg.MaxRetained, Tombs: cfg.Tombs}
	res.RSSIdle = b.proc().rss
	// Large events: a marker every 16, at most 64 (13 MB) in flight.
	pc := &Config{MarkEvery: 16, Window: 64}
	p := newPump(pub, echo, pc, seq)
	p.stall = 5 * time.Minute

	ev := newBudgetEvents(cfg.HistoryBytes)
	done := 0
	prog.begin("memory scenario: arm", func() (float64, string) {
		return float64(done) / float64(cfg.Calls), fmt.Sprintf("%d calls, RSS %s", done, mb(b.proc().rss))
	})
	for i := range cfg.Calls {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		subject, data := ev.armed(i)
		if err := p.publish(subject, data); err != nil {
			return res, err
		}
		res.PublishedBytes += int64(len(data))
		done = i + 1
	}
	if _, err := p.finish(); err != nil {
		return res, err
	}
	prog.end()
	// The last marker is back once the engine has read everything before it; its shards
	// may still be applying the last events.
	var m map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err = scrape(metricsAddr); err != nil {
			return res, err
		}
		if int(m[`hangwatch_calls{state="armed"}`]) >= cfg.Calls || time.Now().After(deadline) {
			break
		}
	}
	pr := b.proc()
	res.RSSArmed, res.PeakRSS = pr.rss, pr.peak
	res.Armed, res.Retained = int64(m[`hangwatch_calls{state="armed"}`]), int64(m["hangwatch_retained_bytes"])
	res.Truncated = int64(m[`hangwatch_history_truncations_total{cause="retention"}`])

	// The calls end: the memory they kept must go back to the system.
	done = 0
	prog.begin("memory scenario: end", func() (float64, string) {
		return float64(done) / float64(cfg.Calls), fmt.Sprintf("%d calls, RSS %s", done, mb(b.proc().rss))
	})
	p.every, p.window = 1024, 16384
	for i := range cfg.Calls {
		subject, data := ev.end(i, "mem")
		if err := p.publish(subject, data); err != nil {
			return res, err
		}
		done = i + 1
	}
	if _, err := p.finish(); err != nil {
		return res, err
	}
	prog.end()
	ended := time.Now()
	prog.begin("memory scenario: return", func() (float64, string) {
		return float64(time.Since(ended)) / float64(cfg.ReturnWait), "RSS " + mb(b.proc().rss)
	})
	for {
		res.RSSEnded = b.proc().rss
		if res.RSSEnded < budgetReturnTarget {
			res.Returned, res.ReturnTime = true, time.Since(ended)
			break
		}
		if time.Since(ended) > cfg.ReturnWait {
			res.ReturnTime = time.Since(ended)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	prog.end()

	// Calls never seen end: each costs a tombstone, and must not keep a new call out.
	done = 0
	prog.begin("memory scenario: tombstones", func() (float64, string) {
		return float64(done) / float64(cfg.Tombs), fmt.Sprintf("%d ends, RSS %s", done, mb(b.proc().rss))
	})
	for i := range cfg.Tombs {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		subject, data := ev.end(i, "tomb")
		if err := p.publish(subject, data); err != nil {
			return res, err
		}
		done = i + 1
	}
	p.every, p.window = 16, 64
	subject, data := ev.armedNew()
	if err := p.publish(subject, data); err != nil {
		return res, err
	}
	if _, err := p.finish(); err != nil {
		return res, err
	}
	prog.end()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err = scrape(metricsAddr); err != nil {
			return res, err
		}
		if m[`hangwatch_calls{state="armed"}`] >= 1 || time.Now().After(deadline) {
			break
		}
	}
	res.RSSTombs = b.proc().rss
	res.TombsHeld = int64(m[`hangwatch_calls{state="ended"}`])
	res.NewCallArmed = m[`hangwatch_calls{state="armed"}`] == 1
	for k, v := range m {
		if strings.HasPrefix(k, "hangwatch_calls_refused_total") {
			res.Refused += int64(v)
		}
	}
	stopErr = b.stop()
	b = nil
	res.Elapsed = time.Since(start)
	return res, stopErr
}

// Met reports whether the scenario met the goals of issue 11.
func (r *BudgetResult) Met() bool {
	return r.PeakRSS <= r.MaxRetained+budgetOverhead && r.Returned && r.NewCallArmed && r.Refused == 0
}

// Report writes the figures, the goals, and last a JSON line.
func (r *BudgetResult) Report(w io.Writer) {
	fmt.Fprintf(w, "\nmemory scenario (issue 11), the hangwatch binary, took %v\n", r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "%d calls armed with %.0f KB histories (%.2f GB published), --max-retained-bytes %d MiB:\n",
		r.Calls, float64(r.HistoryBytes)/1e3, float64(r.PublishedBytes)/1e9, r.MaxRetained>>20)
	fmt.Fprintf(w, "  armed %d, retained %s, %d kept only the tail of their history\n", r.Armed, mb(r.Retained), r.Truncated)
	fmt.Fprintf(w, "  RSS before %s, all armed %s, peak %s (goal: at most the budget + 150 MB = %s)\n",
		mb(r.RSSIdle), mb(r.RSSArmed), mb(r.PeakRSS), mb(r.MaxRetained+budgetOverhead))
	verdict := "returned"
	if !r.Returned {
		verdict = "NOT returned"
	}
	fmt.Fprintf(w, "  after the calls ended: RSS %s after %v (goal: below %s): %s\n",
		mb(r.RSSEnded), r.ReturnTime.Round(100*time.Millisecond), mb(budgetReturnTarget), verdict)
	fmt.Fprintf(w, "%d end-of-call-reports of calls never seen: %d ended calls remembered, RSS %s;\n"+
		"  a new call after them armed: %v, calls refused: %d\n", r.Tombs, r.TombsHeld, mb(r.RSSTombs), r.NewCallArmed, r.Refused)
	goals := "met"
	if !r.Met() {
		goals = "MISSED"
	}
	fmt.Fprintf(w, "goals: %s\n", goals)
	data, _ := json.Marshal(map[string]any{
		"calls": r.Calls, "history_bytes": r.HistoryBytes, "max_retained_mib": r.MaxRetained >> 20,
		"retained_mb": round(float64(r.Retained)/1e6, 1), "truncated": r.Truncated,
		"rss_armed_mb": round(float64(r.RSSArmed)/1e6, 1), "peak_rss_mb": round(float64(r.PeakRSS)/1e6, 1),
		"rss_ended_mb": round(float64(r.RSSEnded)/1e6, 1), "return_s": round(r.ReturnTime.Seconds(), 1),
		"tombs": r.Tombs, "rss_tombs_mb": round(float64(r.RSSTombs)/1e6, 1), "new_call_armed": r.NewCallArmed,
		"refused": r.Refused, "met": r.Met(),
	})
	fmt.Fprintln(w, string(data))
}

// budgetBinary is the binary under the scenario.
type budgetBinary struct{ *child }

func startBudgetBinary(cfg BudgetConfig, url, metricsAddr string) (*budgetBinary, error) {
	c := &child{name: SubjectBinary, dl: "bench.dl.budget", done: make(chan struct{}),
		logPath: filepath.Join(cfg.Out, "budget-binary.log")}
	args := []string{"run", "--nats-url", url, "--dead-letter-subject", c.dl, "--metrics-listen", metricsAddr,
		"--timeout", "1h", "--max-wait", "0", "--call-ttl", "2h", "--max-calls", "1000000",
		"--max-retained-bytes", strconv.FormatInt(cfg.MaxRetained, 10)}
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("binary log: %w", err)
	}
	c.cmd = exec.Command(cfg.Binary, args...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	go func() { // owned by c: stop waits for done
		c.waitErr = c.cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return &budgetBinary{c}, nil
}

// budgetEvents renders the events of the scenario: one armed conversation-update
// template, whose call id is written over for each call.
type budgetEvents struct {
	armedData []byte
	idAt      int
}

const budgetIDLen = 16 // "mem-" and 12 digits

func newBudgetEvents(historyBytes int) *budgetEvents {
	now := time.Now().UnixMilli()
	id := "mem-" + strings.Repeat("0", budgetIDLen-4)
	var b []byte
	b = append(b, `{"message":{"timestamp":`...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, `,"type":"conversation-update","call":{"id":"`...)
	idAt := len(b)
	b = append(b, id...)
	b = append(b, `","teamId":"team-mem","assistantId":"asst-mem","status":"ongoing"},"assistant":{},"messages":[`...)
	text := strings.Repeat("The caller explains the problem at some length. ", 20) // ~1 KB
	for n := 1; len(b) < historyBytes-2*len(text); n++ {
		b = append(b, `{"messageId":"user-`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `","role":"user","text":"`...)
		b = append(b, text...)
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, now-1000, 10)
		b = append(b, `},{"messageId":"user-`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `-reply","role":"assistant","text":"`...)
		b = append(b, text...)
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, now-1000, 10)
		b = append(b, `},`...)
	}
	b = append(b, `{"messageId":"user-last","role":"user","text":"Hello? Are you still there?","timestamp":`...)
	b = strconv.AppendInt(b, now-1000, 10)
	b = append(b, `}]}}`...)
	return &budgetEvents{armedData: b, idAt: idAt}
}

func budgetID(b []byte, prefix string, i int) []byte {
	b = append(b, prefix...)
	b = append(b, '-')
	s := strconv.Itoa(i)
	for range budgetIDLen - len(prefix) - 1 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// armed returns the armed event of call i.
func (e *budgetEvents) armed(i int) (string, []byte) {
	var id [budgetIDLen]byte
	copy(e.armedData[e.idAt:], budgetID(id[:0], "mem", i))
	return "voice.events." + string(id[:]) + ".conversation-update", e.armedData
}

// armedNew returns the armed event of a call after the tombstones.
func (e *budgetEvents) armedNew() (string, []byte) {
	var id [budgetIDLen]byte
	copy(e.armedData[e.idAt:], budgetID(id[:0], "new", 1))
	return "voice.events." + string(id[:]) + ".conversation-update", e.armedData
}

// end returns the end-of-call-report of call i of prefix (mem: the armed calls; tomb:
// calls never seen).
func (e *budgetEvents) end(i int, prefix string) (string, []byte) {
	id := string(budgetID(nil, prefix, i))
	data := `{"message":{"timestamp":` + strconv.FormatInt(time.Now().UnixMilli(), 10) +
		`,"type":"end-of-call-report","endedReason":"customer-ended-call","call":{"id":"` + id +
		`","teamId":"team-mem","status":"finished"},"messages":[]}}`
	return "voice.events." + id + ".end-of-call-report", []byte(data)
}

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// scrape reads the binary's /metrics: each sample by its name and labels as written.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	if len(m) == 0 {
		return nil, errors.New("scrape: no metrics")
	}
	return m, nil
}
