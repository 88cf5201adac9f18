package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// scrape reads /metrics: every sample, keyed by its name and labels as
// exposed ("mqttbridge_publishes_total{outcome=\"ok\",qos=\"1\"}").
func scrape(tb testing.TB, base string, header ...string) map[string]float64 {
	tb.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// After a publish, a WebSocket delivery and a slow-client close, /metrics
// shows each of them with its labels.
func TestMetricsAfterTraffic(t *testing.T) {
	in := startWith(t, func(c *config.Config) {
		c.WS.QueueMessages = 8
		c.WS.WriteTimeout = config.Duration(time.Minute)
	}, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)

	// A QoS 1 publish and its delivery to a reading WebSocket client.
	fast, _ := in.wsConnect(t, "filter=m/%23")
	if resp, body := in.do(t, "POST", "/v1/topics/m/one?qos=1", []byte("21.5")); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if f := fast.read(); f["payload"] != "21.5" {
		t.Fatalf("the client got %v", f)
	}
	got := scrape(t, in.base)
	for _, want := range []string{
		`mqttbridge_publishes_total{outcome="ok",qos="1"}`,
		`mqttbridge_messages_delivered_total{kind="ws"}`,
		`mqttbridge_stream_connections{kind="ws"}`,
		`mqttbridge_subscriptions`,
		`mqttbridge_upstream_connected{broker="embedded"}`,
		`mqttbridge_ingest_messages_total{broker="embedded"}`,
		`mqttbridge_ingest_lease_held{broker="embedded"}`,
		`mqttbridge_http_requests_total{method="POST",route="/v1/topics/*topic",status="200"}`,
		`mqttbridge_http_request_duration_seconds_count{method="POST",route="/v1/topics/*topic"}`,
		`mqttbridge_store_call_duration_seconds_count{op="put"}`,
	} {
		if got[want] < 1 {
			t.Errorf("%s = %v, want >= 1", want, got[want])
		}
	}
	if _, ok := got[`mqttbridge_tail_backlog_messages`]; ok {
		t.Error("the tail backlog is exposed without a shared store")
	}
	if v, ok := got[`mqttbridge_upstream_reconnects_total{broker="embedded"}`]; !ok || v != 0 {
		t.Errorf("reconnects = %v (present %v), want 0", v, ok)
	}
	if v := got[`mqttbridge_http_requests_total{method="POST",route="/v1/topics/m/one",status="200"}`]; v != 0 {
		t.Error("requests are labelled with the raw path, not the route template")
	}

	// A client that stops reading is closed with 4001 and counted.
	slow, _ := in.wsConnect(t, "filter=m/%23")
	payload := strings.Repeat("x", 60<<10)
	for i := 0; i < 300; i++ { // as TestSlowClientDoesNotHoldOthers
		body, _ := json.Marshal(map[string]any{"topic": "m/load", "payload": fmt.Sprint(i, payload), "qos": 0})
		if resp, out := in.do(t, "POST", "/v1/publish", body, "Content-Type", "application/json"); resp.StatusCode != 202 {
			t.Fatalf("publish %d: %d %.200s", i, resp.StatusCode, out)
		}
		fast.read()
	}
	for {
		if _, err := slow.tryRead(10 * time.Second); err != nil {
			if !websocket.IsCloseError(err, 4001) {
				t.Fatalf("slow client: %v, want close 4001", err)
			}
			break
		}
	}
	eventually(t, "slow-client metrics", func() string {
		got := scrape(t, in.base)
		for _, want := range []string{`mqttbridge_slow_client_disconnects_total{kind="ws"}`, `mqttbridge_queue_drops_total{kind="ws"}`} {
			if got[want] < 1 {
				return fmt.Sprintf("%s = %v", want, got[want])
			}
		}
		if v := got[`mqttbridge_stream_connections{kind="ws"}`]; v != 1 {
			return fmt.Sprintf("ws connections = %v, want 1 (the reading client)", v)
		}
		return ""
	})
}

// Each request is logged once at info with its route template, status and
// request id (the client's when valid, echoed); a token in the query never
// reaches the log. With authentication on, /metrics needs credentials.
func TestRequestLog(t *testing.T) {
	var logs testenv.SyncBuffer
	in := startLogged(t, withAuth, &logs)
	in.waitReady(t)
	tok := token(t, "alice", nil)

	resp, _ := in.do(t, "GET", "/v1/topics/users/alice/x", nil, append(bearer(tok), "X-Request-Id", "req-42.a")...)
	if got := resp.Header.Get("X-Request-Id"); got != "req-42.a" {
		t.Errorf("X-Request-Id echoed %q, want req-42.a", got)
	}
	// An SSE stream authenticated with ?access_token=, closed at once.
	req, _ := http.NewRequest("GET", in.base+"/v1/stream?filter=users/alice/%23&access_token="+tok, nil)
	req.Header.Set("X-Request-Id", "bad id;forged=1")
	ctx, cancel := context.WithCancel(context.Background())
	sresp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	generated := sresp.Header.Get("X-Request-Id")
	if sresp.StatusCode != 200 || generated == "" || strings.ContainsAny(generated, " \n") {
		t.Fatalf("stream: %d, request id %q", sresp.StatusCode, generated)
	}
	cancel()
	sresp.Body.Close()

	eventually(t, "request log lines", func() string {
		l := logs.String()
		for _, want := range []string{
			`msg="http request" method=GET route=/v1/topics/*topic status=404`,
			`request_id=req-42.a`,
			`msg="http request" method=GET route=/v1/stream status=200`,
			`request_id=` + generated,
		} {
			if !strings.Contains(l, want) {
				return "missing " + want
			}
		}
		return ""
	})
	if l := logs.String(); strings.Contains(l, tok) || strings.Contains(l, "access_token") || strings.Contains(l, "forged") {
		t.Errorf("the log holds a token, the raw query or a forged id:\n%s", l)
	}

	// /metrics needs credentials with authentication on.
	if resp, body := in.doBad(t, "GET", "/metrics", nil); resp.StatusCode != 401 {
		t.Errorf("/metrics without credentials: %d %s, want 401", resp.StatusCode, body)
	}
	got := scrape(t, in.base, "Authorization", "Bearer "+svcKey)
	if got[`mqttbridge_http_requests_total{method="GET",route="/v1/stream",status="200"}`] != 1 {
		t.Errorf("the stream request is not counted")
	}
}

// metrics.public serves /metrics without credentials with authentication on.
func TestMetricsPublic(t *testing.T) {
	in := startLogged(t, func(c *config.Config) { withAuth(c); c.Metrics.Public = true }, nil)
	scrape(t, in.base)
	if resp, _ := in.doBad(t, "GET", "/v1/topics/users/alice/x", nil); resp.StatusCode != 401 {
		t.Errorf("the API without credentials: %d, want 401", resp.StatusCode)
	}
}

// A graceful shutdown: readiness turns 503 "draining" while the listener
// still answers, new streams are refused with 503, open WebSocket clients
// get 1012 (service restart).
func TestGracefulShutdownDrains(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	c, _ := in.wsConnect(t, "filter=d/%23")
	closed := make(chan error, 1)
	go func() {
		for {
			if _, err := c.tryRead(30 * time.Second); err != nil {
				closed <- err
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Fatalf("open WebSocket client: %v, want close 1012", err)
	}
	// The listener still answers, with readiness false and the reason.
	resp, body := in.do(t, "GET", "/readyz", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"draining`) {
		t.Fatalf("/readyz while draining: %d %s, want 503 draining", resp.StatusCode, body)
	}
	if _, resp, err := in.dialWS(t, "filter=d/%23", nil); err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("new WebSocket while draining: %v %v, want 503", err, resp)
	}
	if resp, body := in.do(t, "GET", "/v1/stream?filter=d/%23", nil); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("new SSE stream while draining: %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	// Publishes still work until Close.
	if resp, body := in.do(t, "POST", "/v1/topics/d/x?qos=1", []byte("1")); resp.StatusCode != 200 {
		t.Errorf("publish while draining: %d %s", resp.StatusCode, body)
	}
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(in.base + "/readyz"); err == nil {
		t.Error("the listener still answers after Close")
	}
}

// Close releases the ingest lease: a second instance on the same Redis
// takes it over long before the lease could have expired.
func TestShutdownReleasesIngestLease(t *testing.T) {
	testenv.Long(t, "waiting 10-15 s for the second instance's lease retry")
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	_, redisURL := testenv.StartRedis(t, false)
	const ttl = 30 * time.Second // the old lease expires no sooner than 20s after Close
	change := func(c *config.Config) { c.MQTT.IngestLease = config.Duration(ttl) }
	args := []string{"--mqtt-url", mq.URL, "--redis-url", redisURL, "--topics", "lease/#"}
	a := startWith(t, change, args...)
	a.waitReady(t)
	held := func(in *instance) float64 {
		return scrape(t, in.base)[`mqttbridge_ingest_lease_held{broker="default"}`]
	}
	eventually(t, "a holds the lease", func() string {
		if held(a) != 1 {
			return "not held"
		}
		return ""
	})
	b := startWith(t, change, args...)
	b.waitReady(t)
	if held(b) == 1 {
		t.Fatal("both instances hold the lease")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	// b retries every ttl/3 to ttl/2, so it takes the released lease
	// within 15s; an unreleased one would be free only 20s after Close.
	for held(b) != 1 {
		if time.Since(closed) > ttl*2/3 {
			t.Fatal("the second instance did not take the lease before the old one could expire: it was not released")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// With Redis, /metrics tells how far the history tail is behind: once
	// b delivered what it recorded, nothing.
	if resp, body := b.do(t, "POST", "/v1/topics/lease/x?qos=1", []byte("1")); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	eventually(t, "the tail's backlog metrics", func() string {
		got := scrape(t, b.base)
		for _, name := range []string{"mqttbridge_tail_backlog_messages", "mqttbridge_tail_oldest_undelivered_seconds"} {
			if v, ok := got[name]; !ok || v != 0 {
				return fmt.Sprintf("%s = %v (present %v), want 0", name, v, ok)
			}
		}
		return ""
	})
}
