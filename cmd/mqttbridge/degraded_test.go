package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// shortSession keeps the ingest session a test leaves on the shared
// Mosquitto short.
func shortSession(c *config.Config) { c.MQTT.SessionExpiry = config.Duration(10 * time.Second) }

// wantUnavailable checks a 503 with Retry-After and the error code.
func wantUnavailable(t *testing.T, what string, resp *http.Response, body []byte, code string) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || errorCode(body) != code {
		t.Errorf("%s: %d, Retry-After %q, %s; want 503 %s with Retry-After", what, resp.StatusCode, resp.Header.Get("Retry-After"), body, code)
	}
}

// waitValue polls GET /v1/topics/topic until it answers payload.
func (in *instance) waitValue(t *testing.T, topic, payload string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := in.do(t, "GET", "/v1/topics/"+topic, nil)
		if resp.StatusCode == 200 && string(body) == payload {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s, want 200 %s", topic, resp.StatusCode, body, payload)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextMessage returns the payload of the next message event of a stream.
func nextMessage(t *testing.T, events <-chan sseEvent) string {
	t.Helper()
	ev := nextEvent(t, events)
	var env struct{ Payload string }
	if ev.event != "message" || json.Unmarshal([]byte(ev.data), &env) != nil {
		t.Fatalf("event %+v, want a message", ev)
	}
	return env.Payload
}

// With Redis down at start-up the service listens at once: /healthz 200,
// /readyz 503 naming Redis, publishing works, reads and streams answer 503
// with Retry-After. When Redis comes up, everything resumes by itself.
func TestStartWithRedisDown(t *testing.T) {
	testenv.Long(t, "a Redis that starts late")
	rds, redisURL := testenv.StartRedis(t, false)
	rds.Stop() // its port stays known: nothing listens there until Start
	prefix := testenv.Prefix(t)
	filter := "filter=" + url.QueryEscape(prefix+"/#")
	in := startWith(t, shortSession, "--mqtt-url", testenv.MosquittoURL(t), "--redis-url", redisURL, "--topics", prefix+"/#")

	if resp, body := in.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	resp, body := in.do(t, "GET", "/readyz", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "Redis did not answer") {
		t.Errorf("readyz with Redis down: %d %s", resp.StatusCode, body)
	}
	if resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/a?qos=1", []byte("down")); resp.StatusCode != 200 {
		t.Errorf("QoS 1 publish with Redis down: %d %s", resp.StatusCode, body)
	}
	resp, body = in.do(t, "GET", "/v1/topics/"+prefix+"/a", nil)
	wantUnavailable(t, "GET a topic", resp, body, "store_unavailable")
	resp, body = in.do(t, "GET", "/v1/messages?"+filter, nil)
	wantUnavailable(t, "GET /v1/messages", resp, body, "store_unavailable")
	resp, body = in.do(t, "GET", "/v1/topics/"+prefix+"/a?wait=5", nil)
	wantUnavailable(t, "long-poll", resp, body, "store_unavailable")
	resp, body = in.do(t, "GET", "/v1/stream?"+filter, nil)
	wantUnavailable(t, "GET /v1/stream", resp, body, "store_unavailable")
	if _, status := in.dialAuth(t, filter); status != http.StatusServiceUnavailable {
		t.Errorf("WebSocket connect with Redis down: %d, want 503", status)
	}

	rds.Start()
	in.waitReady(t)
	events := in.sse(t, filter, "")
	ws, _ := in.wsConnect(t, filter)
	if resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/a?qos=1&retain=true", []byte("up")); resp.StatusCode != 200 {
		t.Fatalf("publish after Redis came up: %d %s", resp.StatusCode, body)
	}
	in.waitValue(t, prefix+"/a", "up")
	if p := nextMessage(t, events); p != "up" {
		t.Errorf("streamed %q, want up", p)
	}
	if f := ws.read(); f["type"] != "message" || f["payload"] != "up" {
		t.Errorf("WebSocket frame %v, want the message up", f)
	}
}

// With the broker down at start-up the service listens: /readyz names the
// broker, a publish is refused at once with 503 and Retry-After; when the
// broker comes up, publishing, reading and streaming work by themselves.
func TestStartWithBrokerDown(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	mq.Stop()
	prefix := testenv.Prefix(t)
	in := startWith(t, func(c *config.Config) { c.MQTT.ReconnectMax = config.Duration(time.Second) },
		"--mqtt-url", mq.URL, "--topics", prefix+"/#")

	if resp, body := in.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	resp, body := in.do(t, "GET", "/readyz", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), `broker \"default\": not connected`) {
		t.Errorf("readyz with the broker down: %d %s", resp.StatusCode, body)
	}
	resp, body = in.do(t, "POST", "/v1/topics/"+prefix+"/a?qos=1", []byte("down"))
	wantUnavailable(t, "publish", resp, body, "broker_unavailable")

	mq.Start()
	in.waitReady(t)
	events := in.sse(t, "filter="+url.QueryEscape(prefix+"/#"), "")
	if resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/a?qos=1", []byte("up")); resp.StatusCode != 200 {
		t.Fatalf("publish after the broker came up: %d %s", resp.StatusCode, body)
	}
	in.waitValue(t, prefix+"/a", "up")
	if p := nextMessage(t, events); p != "up" {
		t.Errorf("streamed %q, want up", p)
	}
}

// While Redis is down go-redis's own lines come out in the service's log
// format, with component=redis at warn level, and the same line a few
// times at most, however often it dials.
func TestRedisLogLines(t *testing.T) {
	testenv.Long(t, "three seconds of a Redis that is down")
	var logs testenv.SyncBuffer
	cfg, err := config.Load([]string{"--http-addr", "127.0.0.1:0", "--embedded-mqtt-addr", "127.0.0.1:0",
		"--redis-url", fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	in := runInstance(t, cfg, slog.New(slog.NewJSONHandler(io.MultiWriter(newTBWriter(t), &logs), nil)))
	// Every request dials Redis (and go-redis retries): dozens a second.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		in.do(t, "GET", "/readyz", nil)
		in.do(t, "GET", "/v1/topics/x", nil)
	}

	count := map[string]int{}
	for _, s := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct{ Level, Msg, Component string }
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("not a JSON line: %q", s)
		}
		if l.Component != "redis" {
			continue
		}
		if l.Level != "WARN" || !strings.HasPrefix(l.Msg, "redis: ") {
			t.Errorf("go-redis line %q", s)
		}
		count[l.Msg]++
	}
	if len(count) == 0 {
		t.Fatal("no go-redis line in the service's log")
	}
	for msg, n := range count {
		if n > 2 {
			t.Errorf("%d times in 3 s: %s", n, msg)
		}
	}
}
