package wsproxy

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// watchedSessions tells when a Save starts and counts those that returned.
type watchedSessions struct {
	bridge.Sessions
	started  chan struct{}
	returned atomic.Int32
}

func (w *watchedSessions) Save(ctx context.Context, s bridge.Session, ttl time.Duration) error {
	select {
	case w.started <- struct{}{}:
	default:
	}
	defer w.returned.Add(1)
	return w.Sessions.Save(ctx, s, ttl)
}

// A slow Redis never stalls a WebSocket client: its session checkpoint
// (Sessions.Save) runs outside the locks that the writer and the ack path
// take. The sessions are in Redis behind a proxy that delays Redis'
// answers; the messages published while a checkpoint waits for its answer,
// and the answer to an ack, all arrive before that Save returns. Before,
// the checkpoint held the lock that every QoS 1 delivery and every ack
// take, so the writer waited for Redis.
func TestSlowSessionSaveDoesNotStallDelivery(t *testing.T) {
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartDelayProxy(t, u.Host)
	pu := *u
	pu.Host = proxy.Addr
	client, err := redisstore.NewClient(pu.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	st, err := redisstore.New(client, redisstore.Config{KeyPrefix: testenv.Prefix(t) + ":"})
	if err != nil {
		t.Fatal(err)
	}
	sessions := &watchedSessions{Sessions: st.Sessions(), started: make(chan struct{}, 1)}
	e := newWSEnvBridge(t, nil, func(c *bridge.Config) { c.Sessions = sessions }, nil)

	ws, _, err := websocket.DefaultDialer.Dial(e.url+"?qos=1&filter="+url.QueryEscape("t/#"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if f := readFrame(t, ws); f["type"] != "welcome" {
		t.Fatalf("first frame %v", f)
	}
	// The subscription's checkpoint, at full speed (it also opens the
	// client's connection to Redis).
	<-sessions.started
	waitFor(t, "the first checkpoint", func() bool { return sessions.returned.Load() == 1 })

	// Redis slows down; a message makes the session change, and half a
	// second later its checkpoint waits for Redis.
	const delay = 1800 * time.Millisecond
	proxy.SetDelay(delay)
	defer proxy.SetDelay(0) // the closing connection saves its session
	e.b.Ingest(bridge.Message{Topic: "t/x", Payload: []byte("0"), QoS: 1})
	if f := readFrame(t, ws); f["payload"] != "0" {
		t.Fatalf("got %v, want message 0", f)
	}
	<-sessions.started

	const n = 20
	for i := 1; i <= n; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/x", Payload: fmt.Appendf(nil, "%d", i), QoS: 1})
	}
	var ids []any
	for i := 1; i <= n; i++ {
		f := readFrame(t, ws)
		if f["type"] != "message" || f["payload"] != fmt.Sprint(i) {
			t.Fatalf("frame %d: %v", i, f)
		}
		ids = append(ids, f["id"])
	}
	ack := fmt.Sprintf(`{"type":"ack","id":"a1","ids":%s}`, mustJSON(ids))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(ack)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, ws); f["type"] != "ok" || f["ref"] != "a1" {
		t.Fatalf("got %v, want the ack's ok", f)
	}
	if r := sessions.returned.Load(); r != 1 {
		t.Fatalf("the messages and the ack's answer came after the slow checkpoint returned (%d Saves returned, want 1): delivery waited for Redis", r)
	}
}
