package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// Requests with made-up methods and paths, before authentication, add no
// series to /metrics: unknown methods count as _OTHER, unmatched routes as
// "unmatched".
func TestMetricsLabelsBounded(t *testing.T) {
	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	series := func() int {
		t.Helper()
		return len(scrape(t, in.base, "Authorization", "Bearer "+svcKey))
	}
	client := &http.Client{}
	flood := func(n int) {
		t.Helper()
		for range n {
			method := fmt.Sprintf("ZZ%X", rand.Uint64())
			switch rand.IntN(4) {
			case 0:
				method = "GET"
			case 1:
				method = "DELETE"
			}
			path := fmt.Sprintf("/%x", rand.Uint64())
			switch rand.IntN(3) {
			case 0:
				path = "/v1/topics" + path
			case 1:
				path = "/v1" + path
			}
			req, err := http.NewRequest(method, in.base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	series() // the scrape's own series
	flood(100)
	before := series()
	flood(2000)
	if after := series(); after > before+5 {
		t.Fatalf("/metrics grew from %d to %d series after 2000 requests with made-up methods and paths", before, after)
	}
}

// A payload published as text/html or image/svg+xml keeps its content
// type, but every raw answer (GET, long-poll, a request's reply) tells the
// browser not to sniff it and to show it sandboxed, without script; every
// other answer is nosniff too.
func TestRawPayloadHeaders(t *testing.T) {
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	in := startWith(t, func(c *config.Config) { c.Request.ReplyPrefix = prefix + "/reply/" },
		"--mqtt-url", mq, "--topics", prefix+"/#")
	in.waitReady(t)
	testenv.StartDevice(t, mq, prefix+"/dev/cmd", func(bridge.Message) (bridge.Message, bool) {
		return bridge.Message{Payload: []byte("<script>alert(1)</script>"), Properties: bridge.Properties{ContentType: "text/html"}}, true
	})
	sandboxed := func(what string, resp *http.Response, contentType string) {
		t.Helper()
		h := resp.Header
		if h.Get("Content-Type") != contentType || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Content-Security-Policy") != "sandbox; default-src 'none'" {
			t.Errorf("%s: Content-Type %q, X-Content-Type-Options %q, Content-Security-Policy %q", what,
				h.Get("Content-Type"), h.Get("X-Content-Type-Options"), h.Get("Content-Security-Policy"))
		}
	}

	page := "/v1/topics/" + prefix + "/page"
	if resp, body := in.do(t, "POST", page+"?retain=true", []byte("<script>alert(1)</script>"), "Content-Type", "text/html"); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	var etag string
	eventually(t, "the last value", func() string {
		resp, body := in.doBad(t, "GET", page, nil)
		if resp.StatusCode != 200 {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		sandboxed("GET", resp, "text/html")
		etag = resp.Header.Get("ETag")
		return ""
	})

	polled := make(chan *http.Response, 1)
	go func() {
		resp, _ := in.doBad(t, "GET", page+"?wait=10", nil, "If-None-Match", etag)
		polled <- resp
	}()
	time.Sleep(300 * time.Millisecond) // the long-poll waits
	if resp, body := in.do(t, "POST", page, []byte("<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"), "Content-Type", "image/svg+xml"); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if resp := <-polled; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("long-poll: %v", resp)
	} else {
		sandboxed("long-poll", resp, "image/svg+xml")
	}

	resp, body := in.do(t, "POST", "/v1/request/"+prefix+"/dev/cmd?timeout=5", []byte("x"))
	if resp.StatusCode != 200 {
		t.Fatalf("request: %d %s", resp.StatusCode, body)
	}
	sandboxed("request", resp, "text/html")

	for _, path := range []string{"/healthz", "/v1/topics/" + prefix + "/none", "/openapi.yaml"} {
		if resp, _ := in.doBad(t, "GET", path, nil); resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, resp.Header.Get("X-Content-Type-Options"))
		}
	}
}

// With a credential the browser sends by itself (a client certificate), a
// page of another site cannot publish or delete: a state-changing request
// from a browser whose origin is neither the server's nor in
// http.cors.allowed_origins is refused with 403 before anything reaches
// the broker. Same-origin pages, allowed origins and clients that are not
// browsers (no Origin, no Sec-Fetch-Site) go on working.
func TestCrossSiteRequestForgery(t *testing.T) {
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	certs := testenv.NewCerts(t)
	in, _, _ := startTLS(t, certs, func(c *config.Config) {
		c.MQTT.URL, c.MQTT.Topics = mq, []string{prefix + "/#"}
		c.HTTP.TLS.ClientCAFile = certs.CAFile
		c.Auth.ClientCert.Enabled = true
		c.Auth.ClientCert.Rules = config.Rules{Publish: []string{prefix + "/#"}}
		c.HTTP.CORS.AllowedOrigins = []string{"https://app.example"}
	})
	clientCert, err := tls.LoadX509KeyPair(certs.ClientCertFile, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	in.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool(t, certs.CAFile), Certificates: []tls.Certificate{clientCert}}}}
	in.waitReady(t)
	got := testenv.Subscribe(t, mq, prefix+"/#")

	evil := []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Content-Type", "text/plain"}
	for _, attack := range []struct {
		name, method, path string
		body               string
		header             []string
	}{
		{"raw publish", "POST", "/v1/topics/" + prefix + "/evil/raw", "on", evil},
		{"JSON publish as text/plain", "POST", "/v1/publish", `{"topic":"` + prefix + `/evil/json","payload":"on"}`, evil},
		{"batch", "POST", "/v1/publish/batch", `[{"topic":"` + prefix + `/evil/batch","payload":"on"}]`, evil},
		{"delete", "DELETE", "/v1/topics/" + prefix + "/evil/delete", "", evil[:4]},
		{"same site, not allowed", "POST", "/v1/topics/" + prefix + "/evil/sibling", "on",
			[]string{"Origin", "https://sibling.app.example", "Sec-Fetch-Site", "same-site", "Content-Type", "text/plain"}},
		{"old browser", "POST", "/v1/topics/" + prefix + "/evil/old", "on", []string{"Origin", "https://evil.example", "Content-Type", "text/plain"}},
		{"opaque origin", "POST", "/v1/topics/" + prefix + "/evil/null", "on", []string{"Origin", "null", "Content-Type", "text/plain"}},
	} {
		resp, body := in.doBad(t, attack.method, attack.path, []byte(attack.body), attack.header...)
		if resp.StatusCode != 403 || errorCode(body) != "forbidden" {
			t.Errorf("%s: %d %s, want 403 forbidden", attack.name, resp.StatusCode, body)
		}
	}

	self := "https://" + in.HTTPAddr.String()
	allowed := map[string][]string{
		prefix + "/ok/same-origin": {"Origin", self, "Sec-Fetch-Site", "same-origin", "Content-Type", "text/plain"},
		prefix + "/ok/old-same":    {"Origin", self, "Content-Type", "text/plain"},
		prefix + "/ok/cors":        {"Origin", "https://app.example", "Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"},
		prefix + "/ok/curl":        {"Content-Type", "text/plain"},
	}
	for topic, header := range allowed {
		if resp, body := in.do(t, "POST", "/v1/topics/"+topic, []byte("on"), header...); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s, want 200", topic, resp.StatusCode, body)
		}
	}
	for len(allowed) > 0 {
		msg := testenv.NextMessage(t, got, 10*time.Second)
		if _, ok := allowed[msg.Topic]; !ok {
			t.Fatalf("the broker got %s", msg.Topic)
		}
		delete(allowed, msg.Topic)
	}
	select {
	case msg := <-got:
		t.Fatalf("the broker got %s", msg.Topic)
	case <-time.After(200 * time.Millisecond):
	}
}

// With http.cors.allowed_origins "*", a page of any origin may send what a
// browser sends only after a preflight (JSON, a bearer token), which then
// carries no credentials of the browser's; a form-like request that needs
// no preflight is still refused.
func TestCrossSiteAnyOrigin(t *testing.T) {
	in := startLogged(t, func(c *config.Config) { c.HTTP.CORS.AllowedOrigins = []string{"*"} }, nil)
	in.waitReady(t)
	foreign := []string{"Origin", "https://page.example", "Sec-Fetch-Site", "cross-site"}
	for _, tc := range []struct {
		name   string
		method string
		header []string
		want   int
	}{
		{"text/plain", "POST", []string{"Content-Type", "text/plain"}, 403},
		{"form", "POST", []string{"Content-Type", "application/x-www-form-urlencoded"}, 403},
		{"no type", "POST", nil, 403},
		{"JSON", "POST", []string{"Content-Type", "application/json"}, 200},
		{"bearer token", "POST", []string{"Content-Type", "text/plain", "Authorization", "Bearer x"}, 200},
		{"delete", "DELETE", nil, 200},
	} {
		header := append(foreign[:len(foreign):len(foreign)], tc.header...)
		payload := []byte(`"on"`)
		if tc.method == "DELETE" {
			payload = nil
		}
		if resp, body := in.do(t, tc.method, "/v1/topics/any/x", payload, header...); resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
	}
}

// An idle keep-alive connection is closed after http.idle_timeout, a body
// slower than http.read_timeout is cut, headers over
// http.max_header_bytes get 431; streams and requests that wait longer
// than the read timeout after their body go on.
func TestHTTPTimeouts(t *testing.T) {
	testenv.Long(t, "waiting out idle and read timeouts")
	in := startWith(t, func(c *config.Config) {
		c.HTTP.ReadTimeout = config.Duration(time.Second)
		c.HTTP.IdleTimeout = config.Duration(time.Second)
		c.HTTP.MaxHeaderBytes = 4 * config.KiB
		c.WS.PingInterval = config.Duration(time.Minute) // nothing but the test's own frames
	}, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", in.HTTPAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	// closedWithin reads until the server closes c, and fails when that
	// takes longer than d.
	closedWithin := func(t *testing.T, what string, c net.Conn, r *bufio.Reader, d time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, r)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open for %s", what, d)
		}
	}

	t.Run("idle", func(t *testing.T) {
		c, r := dial(t)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		closedWithin(t, "an idle keep-alive connection", c, r, 8*time.Second)
	})
	t.Run("slow body", func(t *testing.T) {
		c, r := dial(t)
		fmt.Fprintf(c, "POST /v1/topics/slow/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("no answer to a body that stopped: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 {
			t.Errorf("a body that stopped: %d %s", resp.StatusCode, body)
		}
		closedWithin(t, "after a body that stopped", c, r, 8*time.Second)
	})
	t.Run("header limit", func(t *testing.T) {
		get := func(size int) int {
			t.Helper()
			req, _ := http.NewRequest("GET", in.base+"/healthz", nil)
			req.Header.Set("X-Big", strings.Repeat("x", size))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := get(16 << 10); got != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("16 KiB of headers: %d, want 431", got)
		}
		if got := get(3 << 10); got != 200 {
			t.Errorf("3 KiB of headers: %d, want 200", got)
		}
	})
	t.Run("streams and waits outlast it", func(t *testing.T) {
		_, events := in.openStream(t, "filter=slow/%23")
		ws, _ := in.wsConnect(t, "filter=slow/%23")
		poll, request := make(chan int, 1), make(chan int, 1)
		go func() {
			resp, err := http.Get(in.base + "/v1/topics/slow/none?wait=3")
			if err != nil {
				poll <- 0
				return
			}
			resp.Body.Close()
			poll <- resp.StatusCode
		}()
		go func() {
			resp, err := http.Post(in.base+"/v1/request/waits/cmd?timeout=3", "text/plain", strings.NewReader("x"))
			if err != nil {
				request <- 0
				return
			}
			resp.Body.Close()
			request <- resp.StatusCode
		}()
		time.Sleep(3 * time.Second)
		ws.send(`{"type":"publish","id":"1","topic":"slow/x","payload":"late"}`)
		for f := ws.read(); f["type"] != "message" || f["payload"] != "late"; f = ws.read() {
			if f["type"] == "error" {
				t.Fatalf("WebSocket after 3 s: %v", f)
			}
		}
		select {
		case ev, ok := <-events:
			if !ok || ev.event != "message" || !strings.Contains(ev.data, `"late"`) {
				t.Errorf("SSE after 3 s: %v %v", ev, ok)
			}
		case <-time.After(10 * time.Second):
			t.Error("SSE after 3 s: nothing")
		}
		if got := <-poll; got != 404 {
			t.Errorf("a long-poll of 3 s: %d, want 404 when it ends", got)
		}
		if got := <-request; got != 504 {
			t.Errorf("a request waiting 3 s for its reply: %d, want 504", got)
		}
	})
}
