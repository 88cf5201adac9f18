package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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
