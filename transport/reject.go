package transport

import (
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/wire"
)

// Headers of a dead letter: the reason an event was rejected, the error, the subject it
// came on, and, when it had to be cut to fit the server's max payload, its length.
const (
	HeaderBadInputReason = "Hangwatch-Bad-Input"
	HeaderBadInputError  = "Hangwatch-Error"
	HeaderSubject        = "Hangwatch-Subject"
	HeaderTruncated      = "Hangwatch-Truncated"
)

// Rejects is what every input shares about bad input (SPEC §5) — the core and JetStream
// sources, the HTTP ingest: it counts it by reason, logs it (on the limited logger; its
// text only at debug level), and dead-letters it.
type Rejects struct {
	nc         *nats.Conn
	subject    string // the dead-letter subject; empty: none
	log        *zap.Logger
	limited    *zap.Logger
	bad        [wire.NumRejections]atomic.Int64
	dead       atomic.Int64
	deadErrors atomic.Int64
	deadCut    atomic.Int64
	ignored    atomic.Int64
}

// NewRejects returns the bad-input handling of an input that publishes its dead letters
// (when deadLetter is set) through nc.
func NewRejects(nc *nats.Conn, deadLetter string, log, limited *zap.Logger) *Rejects {
	return &Rejects{nc: nc, subject: deadLetter, log: log, limited: limitedOr(limited, log)}
}

// RejectStats are the counters of bad input.
type RejectStats struct {
	// Bad counts the events rejected, by reason.
	Bad map[wire.Rejection]int64
	// DeadLettered and DeadLetterErrors count the rejected events republished on the
	// dead-letter subject, and those that could not be; DeadLettersCut those cut to fit
	// the server's max payload; DeadLettersIgnored the dead letters that came back in and
	// were dropped.
	DeadLettered, DeadLetterErrors, DeadLettersCut, DeadLettersIgnored int64
}

// Stats returns the counters.
func (r *Rejects) Stats() RejectStats {
	st := RejectStats{Bad: map[wire.Rejection]int64{}}
	for _, reason := range wire.Rejections() {
		if n := r.bad[reason].Load(); n > 0 {
			st.Bad[reason] = n
		}
	}
	st.DeadLettered, st.DeadLetterErrors = r.dead.Load(), r.deadErrors.Load()
	st.DeadLettersCut, st.DeadLettersIgnored = r.deadCut.Load(), r.ignored.Load()
	return st
}

// IsDeadLetter reports whether a message is one of hangwatch's dead letters, which comes
// back in when the dead-letter subject is one a source consumes: it is dropped (and
// counted), not rejected again, which would loop forever.
func (r *Rejects) IsDeadLetter(subject string, h nats.Header) bool {
	if h.Get(HeaderBadInputReason) == "" {
		return false
	}
	r.ignored.Add(1)
	r.limited.Warn("a dead letter came back in: ignored; the dead-letter subject should not be consumed", zap.String("subject", subject))
	return true
}

// deadLetterRoom is what the headers of a dead letter take, at most, beside its data.
const deadLetterRoom = 1024

// Count counts bad input refused before its bytes were read (too large to read).
func (r *Rejects) Count(reason wire.Rejection) { r.bad[reason].Add(1) }

// Reject counts a bad event that came from origin (its subject), logs it and
// dead-letters it. It returns the reason.
func (r *Rejects) Reject(subject string, data []byte, err error) wire.Rejection {
	reason, _ := wire.RejectionOf(err)
	r.bad[reason].Add(1)
	r.limited.Warn("bad input: "+reason.String(), zap.String("subject", subject), zap.Int("bytes", len(data)), zap.Error(err))
	if ce := r.log.Check(zap.DebugLevel, "bad input payload"); ce != nil {
		ce.Write(zap.String("subject", subject), zap.ByteString("payload", data[:min(len(data), 1024)]))
	}
	if r.subject == "" {
		return reason
	}
	nc := r.nc
	dl := nats.NewMsg(r.subject)
	dl.Data = data
	dl.Header.Set(HeaderBadInputReason, reason.String())
	dl.Header.Set(HeaderBadInputError, err.Error())
	dl.Header.Set(HeaderSubject, subject)
	// An event near the max payload (or over it: too-large) would not fit with the
	// headers: cut it, and say so.
	if most := int(nc.MaxPayload()) - deadLetterRoom - len(subject); most > 0 && len(data) > most {
		dl.Data = data[:most]
		dl.Header.Set(HeaderTruncated, strconv.Itoa(len(data)))
		r.deadCut.Add(1)
	}
	if err := nc.PublishMsg(dl); err != nil {
		r.deadErrors.Add(1)
		r.limited.Error("dead letter", zap.String("subject", r.subject), zap.Error(err))
		return reason
	}
	r.dead.Add(1)
	return reason
}
