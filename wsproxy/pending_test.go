package wsproxy

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// dialQoS1 connects with filter at QoS 1, waits until the subscription
// is live, and returns the welcome.
func (e *wsEnv) dialQoS1(t *testing.T, filter string) (*websocket.Conn, map[string]any) {
	t.Helper()
	subs := e.b.Subscriptions()
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"?qos=1&filter="+url.QueryEscape(filter), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	w := readFrame(t, ws)
	if w["type"] != "welcome" {
		t.Fatalf("first frame %v, want welcome", w)
	}
	waitFor(t, "subscribed", func() bool { return e.b.Subscriptions() > subs })
	return ws, w
}

// sendAck acknowledges one message, without an id (no ok comes back).
func sendAck(t *testing.T, ws *websocket.Conn, id any) {
	t.Helper()
	if err := ws.WriteJSON(map[string]any{"type": "ack", "ids": []any{id}}); err != nil {
		t.Fatal(err)
	}
}

// readMessage reads the next frame, which must be the message with this
// payload.
func readMessage(t *testing.T, ws *websocket.Conn, payload string) map[string]any {
	t.Helper()
	f := readFrame(t, ws)
	if f["type"] != "message" || f["payload"] != payload || f["ack"] != true {
		t.Fatalf("got %v, want the message %q with ack", f, payload)
	}
	return f
}

// waitStalled waits until the connection's writer holds messages back for
// want pending acks.
func (e *wsEnv) waitStalled(t *testing.T, want int) {
	t.Helper()
	waitFor(t, "the writer waits for acks", func() bool {
		cs := e.conns()
		return len(cs) == 1 && cs[0].waitAck.Load() && cs[0].pending.len() == want
	})
}

// A QoS 1 session resumed with a backlog much larger than ws.max_pending
// is replayed completely, paced by the client's acks: never more than
// max_pending unacknowledged messages are out, and a client that acks
// what it processed is not closed with 4002. The same holds for a
// subscribe frame with last_id. Before, the replay ran in the reader (no
// ack was read until it ended) and sent the whole backlog at once: the
// connection closed with 4002 on every resume.
func TestReplayKeepsToMaxPending(t *testing.T) {
	const maxPending, backlog = 4, 40
	e := newWSEnvConfig(t, nil, func(c *Config) { c.MaxPending = maxPending })

	first, welcome := e.dialQoS1(t, "t/r/#")
	session, lastID := welcome["session"].(string), welcome["last_id"].(string)
	first.Close()
	waitFor(t, "the session saved", func() bool { return len(e.conns()) == 0 })

	for i := range backlog {
		e.b.Ingest(bridge.Message{Topic: "t/r/x", QoS: 1, Payload: fmt.Appendf(nil, "r%d", i)})
	}
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"?session="+url.QueryEscape(session)+"&last_id="+url.QueryEscape(lastID), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if f := readFrame(t, ws); f["type"] != "welcome" || f["resumed"] != true {
		t.Fatalf("first frame %v, want a resumed welcome", f)
	}

	// Without acks the replay stops at max_pending; each ack lets one
	// more message go.
	var ids []any
	for i := range maxPending {
		ids = append(ids, readMessage(t, ws, fmt.Sprintf("r%d", i))["id"])
	}
	e.waitStalled(t, maxPending)
	for i := maxPending; i < backlog; i++ {
		sendAck(t, ws, ids[i-maxPending])
		ids = append(ids, readMessage(t, ws, fmt.Sprintf("r%d", i))["id"])
		if i+1 < backlog {
			e.waitStalled(t, maxPending)
		}
	}
	for _, id := range ids[backlog-maxPending:] {
		sendAck(t, ws, id)
	}

	// A subscribe frame with last_id replays the same way, and its ok
	// follows the replay; the reader goes on reading acks meanwhile.
	after, _ := e.b.LastID(t.Context())
	for i := range backlog {
		e.b.Ingest(bridge.Message{Topic: "t/q/x", QoS: 1, Payload: fmt.Appendf(nil, "q%d", i)})
	}
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "id": "s1", "filters": []string{"t/q/#"}, "qos": 1, "last_id": after}); err != nil {
		t.Fatal(err)
	}
	for i := range backlog {
		sendAck(t, ws, readMessage(t, ws, fmt.Sprintf("q%d", i))["id"])
	}
	if f := readFrame(t, ws); f["type"] != "ok" || f["ref"] != "s1" {
		t.Fatalf("got %v, want the subscribe's ok", f)
	}
	// Live messages go on, paced the same way.
	e.b.Ingest(bridge.Message{Topic: "t/q/x", QoS: 1, Payload: []byte("live")})
	readMessage(t, ws, "live")
}

// A client that stops acknowledging live QoS 1 messages gets at most
// max_pending of them; the rest wait in its queue, and when that fills the
// connection closes with 4002 (not 4001: the client reads, it does not
// ack). Before, the server sent on and closed with 4002 once one more than
// max_pending was out.
func TestLiveWaitsForAcksThen4002(t *testing.T) {
	const maxPending = 2
	e := newWSEnvConfig(t, nil, func(c *Config) { c.MaxPending = maxPending; c.QueueMessages = 8 })
	ws, _ := e.dialQoS1(t, "t/l/#")
	for i := range maxPending {
		e.b.Ingest(bridge.Message{Topic: "t/l/x", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
	}
	for i := range maxPending {
		readMessage(t, ws, fmt.Sprint(i))
	}
	for i := maxPending; i < 40; i++ {
		e.b.Ingest(bridge.Message{Topic: "t/l/x", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
	}
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, CloseTooManyUnack) {
		t.Fatalf("got %v, want close 4002 and no message beyond max_pending", err)
	}
}
