package natstest

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of a server that can freeze: while frozen it holds
// every byte in both directions, so that the connections stay up but nothing gets
// through, as on a network that hangs.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	closed bool
	frozen bool
	thawed chan struct{} // closed when not frozen
	conns  []net.Conn
	wg     sync.WaitGroup
}

// StartProxy starts a proxy to target (host:port) and closes it when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, thawed: make(chan struct{})}
	close(p.thawed)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// URL is the nats:// URL of the proxy.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Freeze holds every byte from now on.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thawed = true, make(chan struct{})
	}
}

// Thaw lets the bytes through again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// Close closes the listener and every connection, and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Thaw()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() { p.pipe(in, out) })
	}
}

// pipe copies from src to dst, waiting while frozen before it writes.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thawed := p.thawed
			p.mu.Unlock()
			<-thawed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or a connection closed: the other direction ends with it
		}
	}
}
