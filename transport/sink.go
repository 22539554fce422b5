package transport

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/wire"
)

// SinkOptions configures a Sink.
type SinkOptions struct {
	// HangSubject, ResolvedSubject and UnresolvedSubject are where the outputs go
	// (defaults wire.DefaultHangSubject, DefaultResolvedSubject, DefaultUnresolvedSubject).
	HangSubject, ResolvedSubject, UnresolvedSubject wire.SubjectTemplate
	// Tap, when set, is handed every output the sink published, with its Nats-Msg-Id
	// (the webhook delivery of core mode). It must not keep data after it returns.
	Tap func(msgID string, data []byte)
}

func (o SinkOptions) withDefaults() SinkOptions {
	if o.HangSubject.String() == "" {
		o.HangSubject = wire.MustParseSubjectTemplate(wire.DefaultHangSubject)
	}
	if o.ResolvedSubject.String() == "" {
		o.ResolvedSubject = wire.MustParseSubjectTemplate(wire.DefaultResolvedSubject)
	}
	if o.UnresolvedSubject.String() == "" {
		o.UnresolvedSubject = wire.MustParseSubjectTemplate(wire.DefaultUnresolvedSubject)
	}
	return o
}

// template returns the subject template of an output kind.
func (o SinkOptions) template(k detector.Kind) wire.SubjectTemplate {
	switch k {
	case detector.KindResolved:
		return o.ResolvedSubject
	case detector.KindUnresolved:
		return o.UnresolvedSubject
	}
	return o.HangSubject
}

// Wildcards returns the subjects that match every output.
func (o SinkOptions) Wildcards() []string {
	o = o.withDefaults()
	return wire.OutputWildcards(o.HangSubject, o.ResolvedSubject, o.UnresolvedSubject)
}

// Sink publishes the outputs on core NATS, with the headers of SPEC §3, each fitted to
// the server's max payload.
type Sink struct {
	conn *Conn
	o    SinkOptions
	bufs sync.Pool
	pub  [detector.KindUnresolved + 1]atomic.Int64
	cut  atomic.Int64 // outputs cut to fit the server's max payload
}

var _ engine.Sink = (*Sink)(nil)

// NewSink returns a sink that publishes through c.
func NewSink(c *Conn, o SinkOptions) *Sink {
	s := &Sink{conn: c, o: o.withDefaults()}
	s.bufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
	return s
}

// headerRoom is what the headers and subject of an output take at most, which its
// payload must leave room for within the server's max payload.
const headerRoom = 2048

// maxOutput returns the most bytes an output's payload may take.
func maxOutput(c *Conn) int { return max(int(c.NATS().MaxPayload())-headerRoom, 1024) }

// Publish publishes out.
func (s *Sink) Publish(callID string, out *detector.Output) error {
	msg, buf := s.message(callID, out, "")
	defer s.bufs.Put(buf)
	// PublishMsg copies the message into the connection's buffer before it returns, so
	// the buffer can serve the next output.
	if err := s.conn.NATS().PublishMsg(msg); err != nil {
		return fmt.Errorf("publish %v on %s: %w", out.Kind, msg.Subject, err)
	}
	s.pub[out.Kind].Add(1)
	if s.o.Tap != nil {
		s.o.Tap(msg.Header.Get(nats.MsgIdHdr), msg.Data)
	}
	return nil
}

// message builds the NATS message of an output, in a pooled buffer, on its subject with
// prefix (and a dot) before it when prefix is not empty.
func (s *Sink) message(callID string, out *detector.Output, prefix string) (*nats.Msg, *[]byte) {
	subject := wire.Subject(s.o.template(out.Kind), callID, out)
	if prefix != "" {
		subject = prefix + "." + subject
	}
	msgID := wire.MsgID(callID, out)
	buf := s.bufs.Get().(*[]byte)
	var cut bool
	// The subject and the Nats-Msg-Id (as long as the call and turn ids are) count
	// against the max payload too.
	*buf, cut = wire.AppendOutputFit((*buf)[:0], callID, out, maxOutput(s.conn)-len(subject)-len(msgID))
	if cut {
		s.cut.Add(1)
	}
	msg := nats.NewMsg(subject)
	msg.Data = *buf
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set(nats.MsgIdHdr, msgID)
	return msg, buf
}

// Published returns how many outputs of each kind were published.
func (s *Sink) Published() map[detector.Kind]int64 {
	m := map[detector.Kind]int64{}
	for k := detector.KindHang; k <= detector.KindUnresolved; k++ {
		m[k] = s.pub[k].Load()
	}
	return m
}

// Fitted returns how many outputs were cut to fit the server's max payload.
func (s *Sink) Fitted() int64 { return s.cut.Load() }
