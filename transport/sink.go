package transport

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// SinkOptions configures a Sink.
type SinkOptions struct {
	// HangSubject and ResolvedSubject are where hangs and hang-resolved go (defaults
	// DefaultHangSubject and DefaultResolvedSubject).
	HangSubject, ResolvedSubject wire.SubjectTemplate
}

// Sink publishes hangs and hang-resolved on core NATS. It implements engine.Sink.
type Sink struct {
	conn *Conn
	o    SinkOptions
	bufs sync.Pool
	pub  [detector.KindResolved + 1]atomic.Int64
}

// NewSink returns a sink that publishes through c.
func NewSink(c *Conn, o SinkOptions) *Sink {
	if o.HangSubject.String() == "" {
		o.HangSubject = wire.MustParseSubjectTemplate(wire.DefaultHangSubject)
	}
	if o.ResolvedSubject.String() == "" {
		o.ResolvedSubject = wire.MustParseSubjectTemplate(wire.DefaultResolvedSubject)
	}
	s := &Sink{conn: c, o: o}
	s.bufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
	return s
}

// Publish publishes out, with the headers of SPEC §3.
func (s *Sink) Publish(callID string, out *detector.Output) error {
	msg, buf := s.message(callID, out)
	defer s.bufs.Put(buf)
	// PublishMsg copies the message into the connection's buffer before it returns, so
	// the buffer can serve the next output.
	if err := s.conn.NATS().PublishMsg(msg); err != nil {
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, err)
	}
	s.pub[out.Kind].Add(1)
	return nil
}

// message builds the NATS message of an output, in a pooled buffer.
func (s *Sink) message(callID string, out *detector.Output) (*nats.Msg, *[]byte) {
	tmpl := s.o.HangSubject
	if out.Kind == detector.KindResolved {
		tmpl = s.o.ResolvedSubject
	}
	buf := s.bufs.Get().(*[]byte)
	*buf = wire.AppendOutput((*buf)[:0], callID, out)
	msg := nats.NewMsg(wire.Subject(tmpl, callID, out))
	msg.Data = *buf
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set(nats.MsgIdHdr, wire.MsgID(callID, out))
	return msg, buf
}

// Published returns how many hangs and hang-resolved were published.
func (s *Sink) Published() (hangs, resolved int64) {
	return s.pub[detector.KindHang].Load(), s.pub[detector.KindResolved].Load()
}
