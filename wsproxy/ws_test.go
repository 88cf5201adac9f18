package wsproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
)

// Tests of GET /v1/ws in this package: how the writer batches and what an
// idle connection holds. The protocol itself is tested end to end in
// cmd/mqttbridge (ws_test.go, resume_test.go).

// wsUpstream owns the test topics; nothing is published through it.
type wsUpstream struct{}

func (wsUpstream) Name() string       { return "ws-test" }
func (wsUpstream) Problems() []string { return nil }
func (wsUpstream) Publish(context.Context, bridge.Message) (bridge.PublishResult, error) {
	return bridge.PublishResult{}, bridge.ErrUnavailable
}

type wsEnv struct {
	b    *bridge.Bridge
	srv  *Server
	http *httptest.Server
	url  string
}

// newWSEnv serves /v1/ws over a real socket with a memory store, whose
// ingested messages reach the feeds at once.
func newWSEnv(t *testing.T, wrap func(net.Conn) net.Conn) *wsEnv {
	t.Helper()
	return newWSEnvConfig(t, wrap, nil)
}

// newWSEnvConfig is newWSEnv with mod applied to the server's Config.
func newWSEnvConfig(t *testing.T, wrap func(net.Conn) net.Conn, mod func(*Config)) *wsEnv {
	t.Helper()
	return newWSEnvBridge(t, wrap, nil, mod)
}

// newWSEnvBridge is newWSEnvConfig with modBridge applied to the bridge's
// Config.
func newWSEnvBridge(t *testing.T, wrap func(net.Conn) net.Conn, modBridge func(*bridge.Config), mod func(*Config)) *wsEnv {
	t.Helper()
	store, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bc := bridge.Config{Store: store, Sessions: memory.NewSessions()}
	if modBridge != nil {
		modBridge(&bc)
	}
	b, err := bridge.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute(bridge.Route{Filters: []string{"t/#"}, Upstream: wsUpstream{}}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Bridge: b}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.wrapConn = wrap
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return &wsEnv{b: b, srv: s, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// dial connects with filter=<filter> and waits until the subscription is
// live (it is made after the welcome).
func (e *wsEnv) dial(t *testing.T, filter string) *websocket.Conn {
	t.Helper()
	subs := e.b.Subscriptions()
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"?filter="+url.QueryEscape(filter), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if f := readFrame(t, ws); f["type"] != "welcome" {
		t.Fatalf("first frame %v, want welcome", f)
	}
	waitFor(t, "subscribed", func() bool { return e.b.Subscriptions() > subs })
	return ws
}

func readFrame(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if typ != websocket.TextMessage || json.Unmarshal(data, &f) != nil {
		t.Fatalf("frame %d %q", typ, data)
	}
	return f
}

// conns returns the server's open connections.
func (e *wsEnv) conns() []*conn {
	e.srv.conns.mu.Lock()
	defer e.srv.conns.mu.Unlock()
	var out []*conn
	for c := range e.srv.conns.set {
		out = append(out, c)
	}
	return out
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatedConn counts the writes that reach the socket; once closed, the
// gate holds the next write until it is opened again.
type gatedConn struct {
	net.Conn
	writes atomic.Int64
	mu     sync.Mutex
	gate   chan struct{} // nil: open
	held   chan struct{} // closed when a write waits at the gate
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	gate, held := g.gate, g.held
	g.gate = nil
	g.mu.Unlock()
	if gate != nil {
		close(held)
		<-gate
	}
	g.writes.Add(1)
	return g.Conn.Write(p)
}

// shut makes the next write wait until the returned open is called; held
// is closed once a write waits.
func (g *gatedConn) shut() (held <-chan struct{}, open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate, h := make(chan struct{}), make(chan struct{})
	g.gate, g.held = gate, h
	return h, func() { close(gate) }
}

// Frames that queue up while a write is under way leave in one write,
// intact and in order, with the answer and the pong that came meanwhile:
// each connection's writer batches what it has. Without the batching
// every frame was a write of its own.
func TestWriterBatchesQueuedFrames(t *testing.T) {
	var gc *gatedConn
	e := newWSEnv(t, func(c net.Conn) net.Conn { gc = &gatedConn{Conn: c}; return gc })
	ws := e.dial(t, "t/#")
	c := e.conns()[0]

	held, open := gc.shut()
	e.b.Ingest(bridge.Message{Topic: "t/x", Payload: []byte("0")})
	<-held // the writer is writing message 0 and cannot write more
	const n = 200
	for i := 1; i < n; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/x", Payload: fmt.Appendf(nil, "%d", i)})
	}
	// A request (answered by the writer) and a WebSocket ping (answered
	// by gorilla from the reader) while the writer waits.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p1"}`)); err != nil {
		t.Fatal(err)
	}
	var pongs atomic.Int64
	ws.SetPongHandler(func(string) error { pongs.Add(1); return nil })
	if err := ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer queued", func() bool {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return len(c.ctrl) == 1
	})
	if q := c.feed.Len(); q != n-1 {
		t.Fatalf("%d messages queued, want %d", q, n-1)
	}
	before := gc.writes.Load()
	open()

	for i := 0; i < n; i++ {
		f := readFrame(t, ws)
		if f["type"] != "message" || f["payload"] != fmt.Sprint(i) {
			t.Fatalf("frame %d: %v", i, f)
		}
	}
	if f := readFrame(t, ws); f["type"] != "pong" || f["ref"] != "p1" {
		t.Fatalf("after the messages: %v, want the pong answering p1", f)
	}
	// Message 0; the 199 others with the answer (about 40 KB); the
	// WebSocket pong, with them or on its own.
	if w := gc.writes.Load() - before; w > 3 {
		t.Fatalf("%d writes for %d frames, want at most 3", w, n+2)
	}
	// The server answered the WebSocket ping before it read the next
	// request, so the pong has arrived by that request's answer.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p2"}`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, ws); f["type"] != "pong" || f["ref"] != "p2" {
		t.Fatalf("got %v, want the pong answering p2", f)
	}
	if pongs.Load() != 1 {
		t.Fatalf("%d WebSocket pongs, want 1", pongs.Load())
	}
}

// A batch bigger than flushAt leaves in several writes, and a frame bigger
// than flushAt on its own, all in order.
func TestWriterBatchOverFlushAt(t *testing.T) {
	var gc *gatedConn
	e := newWSEnv(t, func(c net.Conn) net.Conn { gc = &gatedConn{Conn: c}; return gc })
	ws := e.dial(t, "t/#")

	held, open := gc.shut()
	e.b.Ingest(bridge.Message{Topic: "t/x", Payload: []byte("first")})
	<-held
	sizes := []int{10 << 10, 30 << 10, 70 << 10, 100, 50 << 10, 20 << 10, 5}
	for i, size := range sizes {
		e.b.Ingest(bridge.Message{Topic: "t/x", Payload: []byte(fmt.Sprint(i, strings.Repeat("x", size)))})
	}
	open()
	if f := readFrame(t, ws); f["payload"] != "first" {
		t.Fatalf("got %.100v", f)
	}
	for i, size := range sizes {
		f := readFrame(t, ws)
		if f["payload"] != fmt.Sprint(i, strings.Repeat("x", size)) {
			t.Fatalf("message %d: %.100v", i, f)
		}
	}
}

// An idle connection holds one goroutine (the reader), no batch buffer
// and no queue: the writer runs only while there is something to write.
func TestIdleConnectionHoldsNoWriter(t *testing.T) {
	e := newWSEnv(t, nil)
	e.dial(t, "t/warm") // the server's own goroutines are up
	const n = 40
	before := runtime.NumGoroutine()
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i] = e.dial(t, fmt.Sprintf("t/%d", i))
	}
	// Each connection delivers one message and goes idle again.
	for i := range clients {
		e.b.Ingest(bridge.Message{Topic: fmt.Sprintf("t/%d", i), Payload: []byte("m")})
	}
	for i, ws := range clients {
		if f := readFrame(t, ws); f["payload"] != "m" {
			t.Fatalf("client %d: %v", i, f)
		}
	}
	waitFor(t, "every writer stopped", func() bool {
		for _, c := range e.conns() {
			if c.wstate.Load() != wIdle {
				return false
			}
		}
		return true
	})
	for _, c := range e.conns() {
		c.bc.mu.Lock()
		buf := c.bc.buf
		c.bc.mu.Unlock()
		if buf != nil || c.feed.Len() != 0 {
			t.Fatalf("an idle connection holds a batch buffer (%v) or a queue (%d)", buf != nil, c.feed.Len())
		}
	}
	// One goroutine per connection (the HTTP handler, which reads); the
	// client side has none. Two per connection before.
	waitFor(t, "writer goroutines ended", func() bool { return runtime.NumGoroutine()-before <= n+n/4 })
}

// Shutdown still closes idle and busy connections with 1012.
func TestShutdownClosesWith1012(t *testing.T) {
	e := newWSEnv(t, nil)
	idle := e.dial(t, "t/a")
	busy := e.dial(t, "t/b")
	for i := 0; i < 100; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/b", Payload: []byte("m")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(ctx) }()
	for _, ws := range []*websocket.Conn{idle, busy} {
		for {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := ws.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, CloseServiceRestart) {
					t.Fatalf("got %v, want close 1012", err)
				}
				break
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A handshake admitted before Shutdown but registered after Shutdown
// walked the open connections still gets 1012, and Shutdown does not wait
// out its grace period for it. The hijack hook holds the handshake
// between admission (enter) and registration (run) until Shutdown has
// begun. Without the fix the connection stayed open and Shutdown ran into
// its deadline.
func TestShutdownEndsLateRegisteredConn(t *testing.T) {
	hijacked, proceed := make(chan struct{}), make(chan struct{})
	e := newWSEnv(t, func(c net.Conn) net.Conn {
		close(hijacked)
		<-proceed
		return c
	})
	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	dialDone := make(chan dialed, 1)
	go func() {
		ws, _, err := websocket.DefaultDialer.Dial(e.url+"?filter=t/a", nil)
		dialDone <- dialed{ws, err}
	}()
	<-hijacked // admitted, not yet registered

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutDone := make(chan error, 1)
	go func() { shutDone <- e.srv.Shutdown(ctx) }()
	waitFor(t, "shutdown began", func() bool {
		e.srv.conns.mu.Lock()
		defer e.srv.conns.mu.Unlock()
		return e.srv.conns.closing
	})
	if n := len(e.conns()); n != 0 {
		t.Fatalf("%d connections registered before the handshake finished", n)
	}
	close(proceed)

	d := <-dialDone
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.ws.Close()
	for {
		_ = d.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := d.ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, CloseServiceRestart) {
				t.Fatalf("got %v, want close 1012", err)
			}
			break
		}
	}
	if err := <-shutDone; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
