package transport

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
)

// benchCall numbers the calls of the benchmarks, so that no output is a duplicate of
// one stored before, in any run.
var benchCall atomic.Int64

// BenchmarkHangStreamPublish measures how many hangs per second one member stores in
// the hang stream of an embedded JetStream server (file storage, on this machine's
// disk), over loopback and over a link with a round trip of 1 ms (a proxy that delays
// every byte by half of it each way, as between two machines of a data centre):
// mode=sync publishes each output and waits for its ack before the next, as hangwatch
// v1 did (one round trip per output); mode=async is the JetStream sink, with up to
// window outputs awaiting their ack at once.
func BenchmarkHangStreamPublish(b *testing.B) {
	srv := startJetStream(b)
	out := hangOutput(b, detector.KindHang, "user-2")
	for _, rtt := range []time.Duration{0, time.Millisecond} {
		url := srv.ClientURL()
		if rtt > 0 {
			url = startDelayProxy(b, listenOf(srv.Embedded), rtt/2).url()
		}
		b.Run("rtt="+rtt.String()+"/mode=sync", func(b *testing.B) {
			conn := connect(b, srv, ConnOptions{URL: url})
			sink := newJSSink(b, conn, JetStreamSinkOptions{})
			js, err := jetstream.New(conn.NATS())
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				msg, buf := sink.core.message("call-"+strconv.FormatInt(benchCall.Add(1), 10), out, StorePrefix)
				if _, err := js.PublishMsg(ctx, msg); err != nil {
					b.Fatal(err)
				}
				sink.core.bufs.Put(buf)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hangs/s")
		})
		for _, window := range []int{16, DefaultPublishWindow} {
			b.Run("rtt="+rtt.String()+"/mode=async/window="+strconv.Itoa(window), func(b *testing.B) {
				conn := connect(b, srv, ConnOptions{URL: url})
				sink := newJSSink(b, conn, JetStreamSinkOptions{Window: window})
				closeSink, _ := runSink(b, sink)
				ctx := context.Background()
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					if err := sink.Publish("call-"+strconv.FormatInt(benchCall.Add(1), 10), out); err != nil {
						b.Fatal(err)
					}
				}
				// Stored, every one: the time to the last ack counts.
				if err := sink.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "hangs/s")
				if err := closeSink(); err != nil {
					b.Fatal(err)
				}
				if st := sink.Stats(); st.Duplicates > 0 || st.Unpublished > 0 {
					b.Fatalf("%d duplicates, %d unpublished", st.Duplicates, st.Unpublished)
				}
			})
		}
	}
}

// delayProxy is a TCP proxy that delays every byte by a fixed time in each direction,
// without limiting the bandwidth: a link with latency.
type delayProxy struct {
	ln    net.Listener
	delay time.Duration
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startDelayProxy(tb testing.TB, target string, delay time.Duration) *delayProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &delayProxy{ln: ln, delay: delay}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(out, in) })
			p.wg.Go(func() { p.pipe(in, out) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *delayProxy) url() string { return "nats://" + p.ln.Addr().String() }

// pipe copies src to dst, each chunk delay after it was read.
func (p *delayProxy) pipe(dst, src net.Conn) {
	type chunk struct {
		due  time.Time
		data []byte
	}
	chunks := make(chan chunk, 4096)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer dst.Close()
		for c := range chunks {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				return
			}
		}
	})
	defer wg.Wait()
	defer close(chunks)
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			chunks <- chunk{time.Now().Add(p.delay), buf[:n]}
		}
		if err != nil {
			return
		}
	}
}
