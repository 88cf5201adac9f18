package wsproxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// The frames of /v1/ws are parsed by this package (wsframe.go) out of the
// bytes that came while the socket was readable: a message in several
// frames, with a ping between them, a client's close, a broken frame and a
// silent client each get what RFC 6455 and docs/websocket.md say.
func TestClientFrames(t *testing.T) {
	env := func(t *testing.T) *wsEnv { return newWSEnvConfig(t, nil, func(c *Config) { c.ReadLimit = 4 << 10 }) }

	t.Run("fragmented message", func(t *testing.T) {
		e := env(t)
		// gorilla sends a message larger than its write buffer in
		// several frames; the ping comes between two of them.
		d := websocket.Dialer{WriteBufferSize: 256}
		frag, _, err := d.Dial(e.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer frag.Close()
		readFrame(t, frag) // welcome
		w, err := frag.NextWriter(websocket.TextMessage)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"type":"ping","id":"` + strings.Repeat("i", 60) + `"}`
		if _, err := w.Write([]byte(body[:40])); err != nil {
			t.Fatal(err)
		}
		pongs := make(chan string, 1)
		frag.SetPongHandler(func(s string) error { pongs <- s; return nil })
		if err := frag.WriteControl(websocket.PingMessage, []byte("mid"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body[40:] + strings.Repeat(" ", 600))); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if f := readFrame(t, frag); f["type"] != "pong" || f["ref"] != strings.Repeat("i", 60) {
			t.Fatalf("got %v, want the pong answering the fragmented ping", f)
		}
		select {
		case p := <-pongs:
			if p != "mid" {
				t.Fatalf("WebSocket pong %q, want %q", p, "mid")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no WebSocket pong")
		}
	})

	t.Run("client close is answered with its code", func(t *testing.T) {
		e := env(t)
		ws := e.dial(t, "t/close")
		if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if code := readUntilClose(t, ws); code != websocket.CloseGoingAway {
			t.Fatalf("answered with %d, want %d", code, websocket.CloseGoingAway)
		}
	})

	t.Run("over the read limit: 1009", func(t *testing.T) {
		e := env(t)
		ws := e.dial(t, "t/big")
		if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 5<<10))); err != nil {
			t.Fatal(err)
		}
		if code := readUntilClose(t, ws); code != websocket.CloseMessageTooBig {
			t.Fatalf("closed with %d, want 1009", code)
		}
	})

	t.Run("an unmasked frame: 1002", func(t *testing.T) {
		e := env(t)
		ws := e.dial(t, "t/unmasked")
		// A client's frame must be masked (RFC 6455, 5.1).
		if _, err := ws.UnderlyingConn().Write([]byte{0x81, 2, '{', '}'}); err != nil {
			t.Fatal(err)
		}
		if code := readUntilClose(t, ws); code != websocket.CloseProtocolError {
			t.Fatalf("closed with %d, want 1002", code)
		}
	})
}

// A client from which nothing arrives for PongTimeout (it does not answer
// the pings) is closed with 1000, though no goroutine reads it meanwhile:
// the ping timer watches the silence.
func TestPongTimeoutCloses(t *testing.T) {
	e := newWSEnvConfig(t, nil, func(c *Config) { c.PingInterval = 50 * time.Millisecond; c.PongTimeout = 300 * time.Millisecond })
	ws := e.dial(t, "t/x")
	// Not reading, the client answers no ping.
	time.Sleep(600 * time.Millisecond)
	var closeErr *websocket.CloseError
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := ws.ReadMessage()
		if errors.As(err, &closeErr) {
			break
		}
		if err != nil {
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
	if closeErr.Code != websocket.CloseNormalClosure {
		t.Fatalf("closed with %d, want 1000", closeErr.Code)
	}
	waitFor(t, "the connection ended", func() bool { return len(e.conns()) == 0 })
}

// Over TLS the socket's readiness says nothing about whole records, so the
// connection reads in a goroutine of its own (no poller), with the same
// frames: the welcome, a request and its answer, a message, a clean close.
func TestTLSConnectionReadsInGoroutine(t *testing.T) {
	e := newWSEnv(t, nil)
	ts := httptest.NewTLSServer(e.srv)
	defer ts.Close()
	d := websocket.Dialer{TLSClientConfig: ts.Client().Transport.(*http.Transport).TLSClientConfig}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(ts.URL, "https")+"?filter=t/tls", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if f := readFrame(t, ws); f["type"] != "welcome" {
		t.Fatalf("first frame %v", f)
	}
	waitFor(t, "subscribed", func() bool { return e.b.Subscriptions() > 0 })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, ws); f["type"] != "pong" || f["ref"] != "p" {
		t.Fatalf("got %v, want the pong", f)
	}
	e.b.Ingest(bridge.Message{Topic: "t/tls", Payload: []byte("m")})
	if f := readFrame(t, ws); f["payload"] != "m" {
		t.Fatalf("got %v, want the message", f)
	}
	for _, c := range e.conns() {
		if c.watcher != nil {
			t.Fatal("a TLS connection is in the poller")
		}
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if code := readUntilClose(t, ws); code != websocket.CloseNormalClosure {
		t.Fatalf("answered with %d", code)
	}
	waitFor(t, "the connection ended", func() bool { return len(e.conns()) == 0 })
}
