package wsproxy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// B1: a burst of more small messages than the queue once held (1,024)
// but within ws.queue_bytes reaches a client that reads, all of them, in
// order, and does not disconnect it. Before, the 1,025th message closed
// the connection with 4001.
func TestBurstWithinBytesKeepsReader(t *testing.T) {
	e := newWSEnv(t, nil)
	ws := e.dial(t, "t/#")
	const n = 4000
	payload := strings.Repeat("x", 60)
	for i := 0; i < n; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/b", Payload: fmt.Appendf(nil, "%04d%s", i, payload)})
	}
	for i := 0; i < n; i++ {
		f := readFrame(t, ws)
		if f["type"] != "message" || f["payload"] != fmt.Sprintf("%04d%s", i, payload) {
			t.Fatalf("frame %d: %.80v", i, f)
		}
	}
	if e.srv.SlowClosed() != 0 {
		t.Fatal("a reading client was closed as slow")
	}
}

// readUntilClose reads what the server sent until its close frame and
// returns the close code.
func readUntilClose(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

// A client that does not read is closed with 4001 once its queue goes
// over ws.queue_bytes (it gets the close frame when it reads again).
func TestNotReadingOverBytesCloses4001(t *testing.T) {
	e := newWSEnvConfig(t, nil, func(c *Config) { c.QueueBytes = 1 << 20 })
	ws := e.dial(t, "t/#")
	c := e.conns()[0]
	payload := bytes.Repeat([]byte("y"), 32<<10)
	for i := 0; i < 10000 && c.feed.Err() == nil; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/s", Payload: payload})
	}
	if bridge.ErrorCode(c.feed.Err()) != bridge.ECodeSlowConsumer {
		t.Fatalf("the queue of a client that does not read: %v", c.feed.Err())
	}
	if code := readUntilClose(t, ws); code != CloseSlowConsumer {
		t.Fatalf("closed with %d, want %d", code, CloseSlowConsumer)
	}
	if e.srv.SlowClosed() != 1 {
		t.Fatalf("%d slow closes counted", e.srv.SlowClosed())
	}
}

// A client that stopped reading is closed with 4001 once its oldest
// queued message waited longer than ws.max_lag, though its queue is far
// within ws.queue_bytes.
func TestNotReadingPastMaxLagCloses4001(t *testing.T) {
	testenv.Long(t, "waiting past ws.max_lag")
	const lag = 200 * time.Millisecond
	e := newWSEnvConfig(t, nil, func(c *Config) { c.QueueBytes = 256 << 20; c.MaxLag = lag })
	ws := e.dial(t, "t/#")
	c := e.conns()[0]
	payload := bytes.Repeat([]byte("z"), 64<<10)
	// Until the socket's buffers are full: messages stay queued.
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("the socket never filled")
		}
		e.b.Ingest(bridge.Message{Topic: "t/l", Payload: payload})
		if c.feed.Len() > 2 {
			time.Sleep(2 * lag)
			if c.feed.Len() > 0 {
				break
			}
		}
	}
	if c.feed.Err() != nil {
		t.Fatalf("failed before the lag: %v", c.feed.Err())
	}
	e.b.Ingest(bridge.Message{Topic: "t/l", Payload: []byte("late")})
	if bridge.ErrorCode(c.feed.Err()) != bridge.ECodeSlowConsumer {
		t.Fatalf("a client behind by more than max_lag: %v", c.feed.Err())
	}
	if code := readUntilClose(t, ws); code != CloseSlowConsumer {
		t.Fatalf("closed with %d, want %d", code, CloseSlowConsumer)
	}
}
