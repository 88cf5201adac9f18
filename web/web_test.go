package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/mqttbridge/mqttbridge/web"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesEachFileWithItsType(t *testing.T) {
	h := web.Handler(web.Options{})
	cases := []struct {
		path, file, contentType, contains string
	}{
		{"/", "index.html", "text/html; charset=utf-8", "<title>mqttbridge console</title>"},
		{"/client.js", "client.js", "text/javascript; charset=utf-8", "export class MqttBridge"},
		{"/client.d.ts", "client.d.ts", "text/plain; charset=utf-8", "export class MqttBridge"},
		{"/console.js", "console.js", "text/javascript; charset=utf-8", `from "./client.js"`},
		{"/console.css", "console.css", "text/css; charset=utf-8", "--accent"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, c.path)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", c.path, resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("GET %s: Cache-Control %q, want no-cache", c.path, got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("GET %s: X-Content-Type-Options %q", c.path, got)
			}
			etag := resp.Header.Get("ETag")
			if len(etag) < 10 || !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) {
				t.Errorf("GET %s: ETag %q, want a quoted strong tag", c.path, etag)
			}
			if other, dup := seen[etag]; dup {
				t.Errorf("GET %s: same ETag as %s", c.path, other)
			}
			seen[etag] = c.path
			onDisk, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != string(onDisk) {
				t.Errorf("GET %s: served %d bytes that differ from %s (%d bytes)", c.path, len(body), c.file, len(onDisk))
			}
			if !strings.Contains(string(body), c.contains) {
				t.Errorf("GET %s: body lacks %q", c.path, c.contains)
			}

			// The ETag revalidates.
			resp = get(t, h, http.MethodGet, c.path, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s with If-None-Match: %d, want 304", c.path, resp.StatusCode)
			}
			resp = get(t, h, http.MethodGet, c.path, "If-None-Match", `"other"`)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s with another If-None-Match: %d, want 200", c.path, resp.StatusCode)
			}
			resp = get(t, h, http.MethodHead, c.path)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.contentType {
				t.Errorf("HEAD %s: %d %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestConsoleHasAStrictContentSecurityPolicy(t *testing.T) {
	resp := get(t, web.Handler(web.Options{}), http.MethodGet, "/")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("Content-Security-Policy %q allows inline code", csp)
	}
}

func TestOtherPathsAndMethods(t *testing.T) {
	h := web.Handler(web.Options{})
	for _, p := range []string{"/index.html", "/web.go", "/e2e/package.json", "/client.js/", "/nope"} {
		if resp := get(t, h, http.MethodGet, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp := get(t, h, http.MethodPost, "/client.js")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /client.js: %d Allow %q, want 405 with Allow: GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestPathsAreServed(t *testing.T) {
	h := web.Handler(web.Options{})
	for _, p := range web.Paths() {
		if resp := get(t, h, http.MethodGet, p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s (listed by Paths): %d", p, resp.StatusCode)
		}
	}
}
