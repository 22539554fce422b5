package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Markers tell how far a subject has got. A marker is an event that is not JSON, so
// every subject rejects it as bad input and republishes it unchanged on its dead-letter
// subject, from the goroutine that consumes the events, in order: when the load
// generator reads marker n back, the subject has decoded every event published before
// it. The real binary does the same with --dead-letter-subject, so all subjects are
// measured alike, without a hook into any of them.
const (
	markerSubject = "voice.events.bench-marker.status-update"
	markerPrefix  = "bench-marker "
)

func marker(seq int64) []byte { return strconv.AppendInt([]byte(markerPrefix), seq, 10) }

// parseMarker returns the sequence number of a marker.
func parseMarker(data []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(markerPrefix))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest), 10, 64)
	return n, err == nil
}

// echoes follows the markers that a subject sent back.
type echoes struct {
	last   atomic.Int64 // highest sequence number read back
	at     atomic.Int64 // when it was read, Unix ns
	notify chan struct{}
}

func newEchoes() *echoes { return &echoes{notify: make(chan struct{}, 1)} }

// handle is the dead-letter subscription's handler.
func (e *echoes) handle(m *nats.Msg) {
	seq, ok := parseMarker(m.Data)
	if !ok {
		return
	}
	now := time.Now().UnixNano()
	for {
		last := e.last.Load()
		if seq <= last {
			return
		}
		if e.last.CompareAndSwap(last, seq) {
			e.at.Store(now)
			break
		}
	}
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// errStalled is returned when a subject sends no marker back for too long: it lost
// events, or stopped.
var errStalled = errors.New("the subject stopped answering markers")

// wait returns once marker seq is back, or errStalled after stall without progress.
func (e *echoes) wait(seq int64, stall time.Duration) error {
	timer := time.NewTimer(stall)
	defer timer.Stop()
	for last := e.last.Load(); last < seq; last = e.last.Load() {
		select {
		case <-e.notify:
			if e.last.Load() > last {
				timer.Reset(stall)
			}
		case <-timer.C:
			return fmt.Errorf("%w: marker %d of %d back after %v without progress", errStalled, e.last.Load(), seq, stall)
		}
	}
	return nil
}

// pump publishes events in a closed loop: a marker after every MarkEvery events, and a
// wait whenever more than Window events are out that the subject has not decoded.
type pump struct {
	nc            *nats.Conn
	echo          *echoes
	every, window int64
	stall         time.Duration
	seq           int64 // last marker published
	events, bytes int64
	sinceMark     int64
}

func newPump(nc *nats.Conn, echo *echoes, cfg *Config, seq int64) *pump {
	return &pump{nc: nc, echo: echo, every: int64(cfg.MarkEvery), window: int64(cfg.Window),
		stall: 60 * time.Second, seq: seq}
}

// publish publishes one event, and waits when the window is full.
func (p *pump) publish(subject string, data []byte) error {
	if err := p.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.events++
	p.bytes += int64(len(data))
	if p.sinceMark++; p.sinceMark < p.every {
		return nil
	}
	if err := p.mark(); err != nil {
		return err
	}
	// Markers out beyond the window: wait until the subject has caught up.
	if behind := p.seq - p.window/p.every; behind > p.echo.last.Load() {
		return p.echo.wait(behind, p.stall)
	}
	return nil
}

func (p *pump) mark() error {
	p.seq++
	p.sinceMark = 0
	if err := p.nc.Publish(markerSubject, marker(p.seq)); err != nil {
		return fmt.Errorf("publish marker: %w", err)
	}
	return nil
}

// finish publishes a last marker and waits until the subject has decoded everything,
// and returns when it had. Core NATS may drop a marker like any event when the subject
// falls behind (a slow consumer): when none comes back for remark, it publishes another,
// whose return says the same, until stall has passed without progress.
func (p *pump) finish() (time.Time, error) {
	const remark = 5 * time.Second
	start, last := time.Now(), p.echo.last.Load()
	for {
		if err := p.mark(); err != nil {
			return time.Time{}, err
		}
		if err := p.nc.Flush(); err != nil {
			return time.Time{}, fmt.Errorf("flush: %w", err)
		}
		err := p.echo.wait(p.seq, min(remark, p.stall))
		if err == nil {
			return time.Unix(0, p.echo.at.Load()), nil
		}
		if now := p.echo.last.Load(); now > last {
			start, last = time.Now(), now
		}
		if time.Since(start) >= p.stall {
			return time.Time{}, err
		}
	}
}

// markers counts the markers the pump published from seq on.
func (p *pump) markers(from int64) int64 { return p.seq - from }
