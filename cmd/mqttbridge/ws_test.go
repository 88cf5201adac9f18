package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// wsClient is a real WebSocket client speaking the JSON protocol; every
// frame both ways is checked against asyncapi.yaml.
type wsClient struct {
	tb testing.TB
	ws *websocket.Conn
	in *instance
}

func (in *instance) dialWS(tb testing.TB, query string, header http.Header) (*wsClient, *http.Response, error) {
	tb.Helper()
	u := "ws://" + in.HTTPAddr.String() + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	ws, resp, err := websocket.DefaultDialer.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	tb.Cleanup(func() { ws.Close() })
	return &wsClient{tb: tb, ws: ws, in: in}, resp, nil
}

func (in *instance) wsConnect(tb testing.TB, query string) (*wsClient, map[string]any) {
	tb.Helper()
	c, resp, err := in.dialWS(tb, query, nil)
	if err != nil {
		tb.Fatalf("dial /v1/ws?%s: %v (%v)", query, err, resp)
	}
	welcome := c.read()
	if welcome["type"] != "welcome" {
		tb.Fatalf("first frame %v, want welcome", welcome)
	}
	return c, welcome
}

func (c *wsClient) send(frame string) {
	c.tb.Helper()
	c.in.frames.Client(c.tb, []byte(frame))
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.tb.Fatalf("send %s: %v", frame, err)
	}
}

// read returns the next frame, failing the test after 10 s.
func (c *wsClient) read() map[string]any {
	c.tb.Helper()
	f, err := c.tryRead(10 * time.Second)
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	return f
}

func (c *wsClient) tryRead(d time.Duration) (map[string]any, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(d))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	c.in.frames.Server(c.tb, data)
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		c.tb.Fatalf("frame %s: %v", data, err)
	}
	return f, nil
}

// until reads frames until one of type typ (and ref, when given) arrives,
// returning it and the message frames read on the way.
func (c *wsClient) until(typ, ref string) (map[string]any, []map[string]any) {
	c.tb.Helper()
	var msgs []map[string]any
	for {
		f := c.read()
		if f["type"] == typ && (ref == "" || f["ref"] == ref) {
			return f, msgs
		}
		if f["type"] == "message" {
			msgs = append(msgs, f)
			continue
		}
		c.tb.Fatalf("got %v while waiting for %s %s", f, typ, ref)
	}
}

func (c *wsClient) request(frame, ref string) map[string]any {
	c.tb.Helper()
	c.send(frame)
	for {
		f := c.read()
		if f["ref"] == ref {
			return f
		}
		if f["type"] != "message" {
			c.tb.Fatalf("got %v while waiting for the answer to %s", f, ref)
		}
	}
}

// The whole protocol against the shared Mosquitto: every frame type, its
// errors, delivery from a real MQTT publisher and to a real MQTT subscriber.
func TestWebSocketProtocol(t *testing.T) {
	prefix := testenv.Prefix(t)
	in := start(t, "--mqtt-url", testenv.MosquittoURL(t), "--topics", prefix+"/#")
	in.waitReady(t)
	t.Cleanup(func() { clearRetained(t, testenv.MosquittoURL(t), prefix+"/#") })
	port := brokerPort(t, testenv.MosquittoURL(t))
	mosquittoPub(t, port, "-t", prefix+"/plant/1/temp", "-r", "-m", "21.5")
	eventually(t, "retained value stored", func() string {
		if resp, _ := in.do(t, "GET", "/v1/topics/"+prefix+"/plant/1/temp", nil); resp.StatusCode != 200 {
			return fmt.Sprint(resp.StatusCode)
		}
		return ""
	})

	c, welcome := in.wsConnect(t, "")
	if s, _ := welcome["session"].(string); !strings.HasPrefix(s, "s_") || welcome["resumed"] != false {
		t.Fatalf("welcome %v", welcome)
	}

	// subscribe with a snapshot: the current value comes before the ok.
	c.send(fmt.Sprintf(`{"type":"subscribe","id":"s1","filters":[%q,%q],"snapshot":true}`, prefix+"/plant/+/temp", prefix+"/plant/#"))
	ok, msgs := c.until("ok", "s1")
	if len(msgs) != 1 || msgs[0]["payload"] != "21.5" || msgs[0]["snapshot"] != true || ok["type"] != "ok" {
		t.Fatalf("snapshot %v, ok %v", msgs, ok)
	}

	// A device publishes: delivered once although two filters match.
	mosquittoPub(t, port, "-t", prefix+"/plant/2/temp", "-m", "19")
	m := c.read()
	if m["type"] != "message" || m["topic"] != prefix+"/plant/2/temp" || m["payload"] != "19" || m["snapshot"] != nil {
		t.Fatalf("live message %v", m)
	}
	if f := c.request(`{"type":"ping","id":"once"}`, "once"); f["type"] != "pong" {
		t.Fatalf("a second frame for one message: %v", f)
	}

	// publish: ok with the broker's result, and a real subscriber gets it.
	sub := testenv.Subscribe(t, testenv.MosquittoURL(t), prefix+"/cmd/#")
	ok = c.request(fmt.Sprintf(`{"type":"publish","id":"p1","topic":%q,"payload_base64":"AP8=","qos":1}`, prefix+"/cmd/x"), "p1")
	result, _ := ok["result"].(map[string]any)
	if ok["type"] != "ok" || result["reason_code"] != 0.0 {
		t.Fatalf("publish answer %v", ok)
	}
	if got := receive(t, sub); got.Topic != prefix+"/cmd/x" || string(got.Payload) != "\x00\xff" {
		t.Fatalf("subscriber got %q %x", got.Topic, got.Payload)
	}

	// ping, ack and unsubscribe.
	if f := c.request(`{"type":"ping","id":"k"}`, "k"); f["type"] != "pong" {
		t.Fatalf("ping answer %v", f)
	}
	if f := c.request(`{"type":"ack","id":"a","ids":["1-0"]}`, "a"); f["type"] != "ok" {
		t.Fatalf("ack answer %v", f)
	}
	if f := c.request(fmt.Sprintf(`{"type":"unsubscribe","id":"u","filters":[%q,%q]}`, prefix+"/plant/+/temp", prefix+"/plant/#"), "u"); f["type"] != "ok" {
		t.Fatalf("unsubscribe answer %v", f)
	}
	mosquittoPub(t, port, "-t", prefix+"/plant/3/temp", "-m", "x")
	if f := c.request(`{"type":"ping","id":"k2"}`, "k2"); f["type"] != "pong" {
		t.Fatalf("a message after unsubscribe: %v", f)
	}

	// Errors name the reason and keep the connection. (Frames that break
	// the protocol on purpose bypass the AsyncAPI check.)
	for _, e := range []struct{ frame, ref, code string }{
		{`{"type":"subscribe","id":"e1","filters":["a/#/b"]}`, "e1", "invalid_topic"},
		{`{"type":"subscribe","id":"e2","filters":["elsewhere/#"]}`, "e2", "topic_not_bridged"},
		{`{"type":"publish","id":"e3","topic":"a/+","payload":"x"}`, "e3", "invalid_topic"},
		{`{"type":"subscribe","id":"e4","filters":["x"],"bogus":1}`, "e4", "invalid_request"},
		{`{"type":"launch","id":"e5"}`, "e5", "invalid_request"},
		{`{not json`, "", "invalid_request"},
	} {
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte(e.frame)); err != nil {
			t.Fatal(err)
		}
		f := c.read()
		if f["type"] != "error" || f["code"] != e.code || e.ref != "" && f["ref"] != e.ref || e.ref == "" && f["ref"] != nil {
			t.Errorf("%s: %v, want error %s", e.frame, f, e.code)
		}
	}

	// An oversized frame closes the connection with 1009.
	big := fmt.Sprintf(`{"type":"publish","topic":%q,"payload":%q}`, prefix+"/big", strings.Repeat("x", 70<<10))
	_ = c.ws.WriteMessage(websocket.TextMessage, []byte(big))
	for {
		if _, err := c.tryRead(5 * time.Second); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Fatalf("oversized frame: %v, want close 1009", err)
			}
			break
		}
	}

	// A foreign Origin is refused before the upgrade.
	_, resp, err := in.dialWS(t, "", http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: %v %v", err, resp)
	}
	if _, resp, err := in.dialWS(t, "", http.Header{"Origin": {"http://localhost:3000"}}); err != nil {
		t.Fatalf("localhost origin refused: %v %v", err, resp)
	}
}

// Listening only: filters in the URL subscribe at connect; a bad filter or
// parameter is a 400 before the upgrade.
func TestWebSocketURLSubscribe(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	c, _ := in.wsConnect(t, "filter="+url.QueryEscape("a/+/b")+"&snapshot=true")
	if resp, out := in.do(t, "POST", "/v1/topics/a/1/b", []byte("hi")); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, out)
	}
	if m := c.read(); m["type"] != "message" || m["payload"] != "hi" {
		t.Fatalf("got %v", m)
	}
	for _, q := range []string{"filter=a/%23/b", "filter=%24SYS/x", "filter=a&nonsense=1", "filter=a&qos=2", "last_id=x"} {
		_, resp, err := in.dialWS(t, q, nil)
		if err == nil || resp.StatusCode != 400 {
			t.Errorf("%s: %v %v", q, err, resp)
		}
	}
}

// A client that stops reading is disconnected with 4001 and counted, while
// a second client on the same topic receives every message. (The slow
// client reads again before the write timeout, so that the close frame can
// reach it; a client that never reads again is cut at the write timeout.)
func TestSlowClientDoesNotHoldOthers(t *testing.T) {
	in := startWith(t, func(c *config.Config) {
		c.WS.QueueMessages = 8
		c.WS.WriteTimeout = config.Duration(time.Minute)
	}, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	slow, _ := in.wsConnect(t, "filter=load/%23")
	fast, _ := in.wsConnect(t, "filter=load/%23")
	// The slow client's socket buffers fill before its queue does; big
	// payloads get there sooner. The reading client gets each message
	// before the next is published.
	payload := strings.Repeat("x", 60<<10)
	const n = 300
	for i := 0; i < n; i++ {
		body, _ := json.Marshal(map[string]any{"topic": "load/x", "payload": fmt.Sprint(i, payload), "qos": 0})
		if resp, out := in.do(t, "POST", "/v1/publish", body, "Content-Type", "application/json"); resp.StatusCode != 202 {
			t.Fatalf("publish %d: %d %.200s", i, resp.StatusCode, out)
		}
		f := fast.read()
		if p, _ := f["payload"].(string); !strings.HasPrefix(p, fmt.Sprint(i, "x")) {
			t.Fatalf("the reading client got %.100v as message %d", f, i)
		}
	}
	for {
		_, err := slow.tryRead(10 * time.Second)
		if err != nil {
			if !websocket.IsCloseError(err, 4001) {
				t.Fatalf("slow client: %v, want close 4001", err)
			}
			break
		}
	}
	if in.ws.SlowClosed() == 0 {
		t.Fatal("the slow client was not counted")
	}
}
