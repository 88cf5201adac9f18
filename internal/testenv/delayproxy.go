package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DelayProxy is a TCP proxy in front of a server (a Redis, say) that can
// slow the server's answers down while the test runs: every chunk the
// server sends reaches the client Delay after the proxy read it. It is a
// delay line: the latency changes, not the throughput, and the order
// stays. What the client sends goes through at once.
type DelayProxy struct {
	Addr string // host:port to dial in place of the server

	target string
	ln     net.Listener
	delay  atomic.Int64 // time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close: chunks waiting go at once
	wg     sync.WaitGroup
}

// StartDelayProxy listens on a free loopback port and forwards every
// connection to target, without delay until SetDelay. The cleanup closes
// it and every connection through it.
func StartDelayProxy(tb testing.TB, target string) *DelayProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: delay proxy: %v", err)
	}
	p := &DelayProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// SetDelay sets how long the server's answers take to reach the client
// from now on (0: at once). Chunks already on their way keep their delay.
func (p *DelayProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Close stops listening, closes every connection and waits for the
// proxy's goroutines. It is safe to call twice.
func (p *DelayProxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// track registers c so that Close closes it; false when closed already.
func (p *DelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *DelayProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client) || !p.track(server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		p.wg.Add(2)
		go p.forward(server, client)
		go p.delayed(client, server)
	}
}

// forward copies what the client sends to the server at once.
func (p *DelayProxy) forward(server, client net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if _, werr := server.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = server.Close()
	_ = client.Close()
	p.mu.Lock()
	delete(p.conns, server)
	delete(p.conns, client)
	p.mu.Unlock()
}

type chunk struct {
	due  time.Time
	data []byte
}

// delayed copies what the server sends to the client, each chunk when its
// delay has passed.
func (p *DelayProxy) delayed(client, server net.Conn) {
	defer p.wg.Done()
	line := make(chan chunk, 4096)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer client.Close()
		for c := range line {
			if d := time.Until(c.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-p.done:
					t.Stop()
				}
			}
			if _, err := client.Write(c.data); err != nil {
				_ = server.Close()
				for range line { // until the reader sees the close
				}
				return
			}
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := server.Read(buf)
		if n > 0 {
			line <- chunk{time.Now().Add(time.Duration(p.delay.Load())), buf[:n]}
		}
		if err != nil {
			break
		}
	}
	close(line) // the writer closes the client after the last chunk
}
