package main

import (
	"context"
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

func (in *instance) publish(tb testing.TB, topic, payload string) {
	tb.Helper()
	if resp, out := in.do(tb, "POST", "/v1/topics/"+topic, []byte(payload)); resp.StatusCode != 200 {
		tb.Fatalf("POST %s: %d %s", topic, resp.StatusCode, out)
	}
}

// messages reads n message frames, failing on anything else.
func (c *wsClient) messages(n int) []map[string]any {
	c.tb.Helper()
	var out []map[string]any
	for len(out) < n {
		f := c.read()
		if f["type"] != "message" {
			c.tb.Fatalf("got %v while waiting for message %d of %d", f, len(out)+1, n)
		}
		out = append(out, f)
	}
	return out
}

func payloads(msgs []map[string]any) string {
	var p []string
	for _, m := range msgs {
		p = append(p, fmt.Sprint(m["payload"]))
	}
	return strings.Join(p, ",")
}

// A client resumes after a server restart from its last message id: the
// messages it missed come first, in order, then live ones, none twice.
// The history is in Redis, so it outlives the process.
func TestResumeAcrossRestart(t *testing.T) {
	prefix := testenv.Prefix(t)
	args := []string{"--mqtt-url", testenv.MosquittoURL(t), "--redis-url", testenv.RedisURL(t),
		"--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := start(t, args...)
	a.waitReady(t)
	filter := "filter=" + url.QueryEscape(prefix+"/alarm/+")
	c, _ := a.wsConnect(t, filter)
	a.publish(t, prefix+"/alarm/1", "m1")
	m1 := c.messages(1)[0]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.tryRead(5 * time.Second); !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Fatalf("on shutdown: %v, want close 1012", err)
	}

	b := start(t, args...)
	b.waitReady(t)
	b.publish(t, prefix+"/alarm/1", "m2")
	b.publish(t, prefix+"/alarm/2", "m3")
	b.publish(t, prefix+"/other", "not for us")
	eventually(t, "m3 stored", func() string {
		if resp, _ := b.do(t, "GET", "/v1/topics/"+prefix+"/alarm/2", nil); resp.StatusCode != 200 {
			return fmt.Sprint(resp.StatusCode)
		}
		return ""
	})
	c2, _ := b.wsConnect(t, filter+"&last_id="+m1["id"].(string))
	if got := payloads(c2.messages(2)); got != "m2,m3" {
		t.Fatalf("replayed %s, want m2,m3", got)
	}
	b.publish(t, prefix+"/alarm/1", "m4")
	if got := payloads(c2.messages(1)); got != "m4" {
		t.Fatalf("live %s, want m4", got)
	}
	if f, err := c2.tryRead(300 * time.Millisecond); err == nil {
		t.Fatalf("an extra frame: %v", f)
	}
}

// When the history window no longer covers last_id, the client is told
// with a gap frame, and live messages still flow.
func TestResumeGap(t *testing.T) {
	in := startWith(t, func(c *config.Config) { c.History.Size = 5 }, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	c, _ := in.wsConnect(t, "filter=g/%23")
	in.publish(t, "g/1", "first")
	first := c.messages(1)[0]["id"].(string)
	for i := 0; i < 20; i++ {
		in.publish(t, "g/1", fmt.Sprint(i))
	}
	c.messages(20)
	c2, _ := in.wsConnect(t, "filter=g/%23&last_id="+first)
	if f := c2.read(); f["type"] != "gap" || f["last_id"] != first {
		t.Fatalf("got %v, want gap", f)
	}
	in.publish(t, "g/1", "live")
	if got := payloads(c2.messages(1)); got != "live" {
		t.Fatalf("after the gap: %s", got)
	}
}

// QoS 1: an unacknowledged message is re-sent when the session resumes,
// and not after it was acknowledged.
func TestQoS1RedeliveredUntilAcked(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	c, welcome := in.wsConnect(t, "filter=alarms/%23&qos=1")
	session := welcome["session"].(string)
	in.publish(t, "alarms/fire", "A1")
	m := c.messages(1)[0]
	if m["ack"] != true {
		t.Fatalf("a QoS 1 delivery without ack: %v", m)
	}
	id := m["id"].(string)
	c.ws.Close()

	resume := "session=" + session + "&last_id=" + id
	var c2 *wsClient
	eventually(t, "session saved", func() string {
		var w map[string]any
		c2, w = in.wsConnect(t, resume)
		if w["resumed"] != true {
			c2.ws.Close()
			return fmt.Sprint(w)
		}
		return ""
	})
	again := c2.messages(1)[0]
	if again["id"] != id || again["ack"] != true || again["payload"] != "A1" {
		t.Fatalf("re-sent %v", again)
	}
	c2.send(`{"type":"ack","ids":["` + id + `"]}`)
	in.publish(t, "alarms/fire", "A2") // the session's subscription came back
	if got := payloads(c2.messages(1)); got != "A2" {
		t.Fatalf("live after resume: %s", got)
	}
	c2.send(fmt.Sprintf(`{"type":"ack","id":"x","ids":[%q]}`, c2.in.lastID(t)))
	c2.until("ok", "x")
	c2.ws.Close()

	var c3 *wsClient
	eventually(t, "session saved again", func() string {
		var w map[string]any
		c3, w = in.wsConnect(t, "session="+session)
		if w["resumed"] != true {
			c3.ws.Close()
			return fmt.Sprint(w)
		}
		return ""
	})
	if f := c3.request(`{"type":"ping","id":"p"}`, "p"); f["type"] != "pong" {
		t.Fatalf("acknowledged messages came back: %v", f)
	}
}

func (in *instance) lastID(tb testing.TB) string {
	tb.Helper()
	id, err := in.Bridge.LastID(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, event, data string }

// sse opens /v1/stream and returns its events.
func (in *instance) sse(tb testing.TB, query, lastEventID string) <-chan sseEvent {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", in.base+"/v1/stream?"+query, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		tb.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		readSSE(resp.Body, out)
	}()
	return out
}

func nextEvent(tb testing.TB, ch <-chan sseEvent) sseEvent {
	tb.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			tb.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		tb.Fatal("no event within 10s")
	}
	return sseEvent{}
}

// SSE streams matching messages with their ids, and Last-Event-ID resumes.
func TestSSEResume(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	in.publish(t, "plant/0/t", "old")
	events := in.sse(t, "filter=plant/%23&snapshot=true", "")
	if ev := nextEvent(t, events); ev.id != "" || !strings.Contains(ev.data, `"snapshot":true`) || !strings.Contains(ev.data, `"old"`) {
		t.Fatalf("snapshot event %+v", ev)
	}
	in.publish(t, "plant/1/t", "a")
	in.publish(t, "plant/2/t", "b")
	a, b := nextEvent(t, events), nextEvent(t, events)
	if a.event != "message" || !strings.Contains(a.data, `"payload":"a"`) || !strings.Contains(b.data, `"payload":"b"`) || a.id == "" {
		t.Fatalf("events %+v %+v", a, b)
	}
	resumed := in.sse(t, "filter=plant/%23", a.id)
	if ev := nextEvent(t, resumed); ev.id != b.id {
		t.Fatalf("resumed with %+v, want %s", ev, b.id)
	}
	in.publish(t, "plant/3/t", "c")
	if ev := nextEvent(t, resumed); !strings.Contains(ev.data, `"payload":"c"`) {
		t.Fatalf("live after resume: %+v", ev)
	}
	if resp, out := in.doBad(t, "GET", "/v1/stream?filter=a/%23/b", nil); resp.StatusCode != 400 {
		t.Fatalf("invalid filter: %d %s", resp.StatusCode, out)
	}
}

// Long-poll: an answer at once when the value differs from If-None-Match,
// the next message when it comes, 304 (or 404) when none does.
func TestLongPoll(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	if resp, _ := in.do(t, "GET", "/v1/topics/door/state?wait=1", nil); resp.StatusCode != 404 {
		t.Fatalf("no value, timeout: %d", resp.StatusCode)
	}
	in.publish(t, "door/state", "closed")
	var etag string
	eventually(t, "value", func() string {
		resp, body := in.do(t, "GET", "/v1/topics/door/state?wait=1", nil)
		etag = resp.Header.Get("ETag")
		if resp.StatusCode != 200 || string(body) != "closed" {
			return fmt.Sprint(resp.StatusCode, string(body))
		}
		return ""
	})
	if resp, _ := in.do(t, "GET", "/v1/topics/door/state?wait=1", nil, "If-None-Match", etag); resp.StatusCode != 304 {
		t.Fatalf("unchanged, timeout: %d", resp.StatusCode)
	}
	done := make(chan string)
	go func() {
		resp, body := in.do(t, "GET", "/v1/topics/door/state?wait=30", nil, "If-None-Match", etag)
		done <- fmt.Sprint(resp.StatusCode, " ", string(body))
	}()
	time.Sleep(200 * time.Millisecond)
	in.publish(t, "door/state", "open")
	if got := <-done; got != "200 open" {
		t.Fatalf("long-poll answered %s", got)
	}
	if resp, out := in.doBad(t, "GET", "/v1/topics/door/state?wait=999", nil); resp.StatusCode != 400 {
		t.Fatalf("wait too long: %d %s", resp.StatusCode, out)
	}
}
