package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a progress bar of the phase under way on stderr: redrawn in place on
// a terminal, a line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	label string
	state func() (done float64, detail string) // done in [0, 1]
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(false)
			case <-p.stop:
				return
			}
		}
	})
	return p
}

// begin shows a new task.
func (p *progress) begin(label string, state func() (float64, string)) {
	p.mu.Lock()
	p.label, p.state, p.start = label, state, time.Now()
	p.mu.Unlock()
	if p.tty {
		p.draw(false)
	}
}

// end draws the task one last time, finished, and clears it.
func (p *progress) end() {
	p.draw(true)
	p.mu.Lock()
	p.state = nil
	p.mu.Unlock()
}

// note prints a line above the bar.
func (p *progress) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *progress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return
	}
	done, detail := p.state()
	if final {
		done = 1
	}
	done = min(max(done, 0), 1)
	const width = 30
	n := int(done * width)
	bar := strings.Repeat("█", n) + strings.Repeat("░", width-n)
	line := fmt.Sprintf("%-24s %s %3.0f%% %5.1fs  %s", p.label, bar, done*100, time.Since(p.start).Seconds(), detail)
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// close stops the redrawing goroutine.
func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
}
