package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/internal/apitest"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
	"github.com/mqttbridge/mqttbridge/web"
)

// credential is one column of the matrix: the headers sent, and the topic
// root its identity may use (users/<name>).
type credential struct {
	name   string
	header []string
	root   string // "" when the credential must be refused with 401
}

// endpoint is one row: how to call it under a topic root, and the status
// when the identity may use that root and when it may not.
type endpoint struct {
	name            string
	call            func(t *testing.T, in *instance, root string, header []string) int
	allowed, denied int
}

// rest calls an operation of openapi.yaml through the validator, so that
// every answer, refusals included, matches the spec.
func rest(method, path, body string, extra ...string) func(*testing.T, *instance, string, []string) int {
	return func(t *testing.T, in *instance, root string, header []string) int {
		t.Helper()
		p := strings.ReplaceAll(path, "ROOT", root)
		var b []byte
		if body != "" {
			b = []byte(strings.ReplaceAll(body, "ROOT", root))
		}
		resp, got := in.doBad(t, method, p, b, append(slices.Clone(header), extra...)...)
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") != `Bearer realm="mqttbridge"` {
			t.Errorf("401 with WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
		if method == http.MethodPost && strings.HasSuffix(path, "/batch") && resp.StatusCode == http.StatusBadRequest {
			// A refused item refuses the batch; its own status says why.
			var r struct{ Results []struct{ Status int } }
			if decodeInto(got, &r) != nil || len(r.Results) != 1 || r.Results[0].Status != http.StatusForbidden {
				t.Errorf("batch refusal %s, want one item with status 403", got)
			}
		}
		return resp.StatusCode
	}
}

func stream(t *testing.T, in *instance, root string, header []string) int {
	status, _ := in.openStream(t, "filter="+url.QueryEscape(root+"/#"), header...)
	return status
}

func ws(t *testing.T, in *instance, root string, header []string) int {
	_, status := in.dialAuth(t, "filter="+url.QueryEscape(root+"/#"), header...)
	return status
}

// Every endpoint answers every kind of credential with the exact status:
// 401 for none or bad ones, 403 for a good one on a topic it may not use,
// success for a good one on its own topics. Health and readiness, and the
// console's files and the spec (auth.public_console, on by default), never
// need credentials; unknown paths do.
func TestAuthMatrix(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	in := startLogged(t, withAuth, logs)
	in.waitReady(t)
	alice := token(t, "alice", nil)
	creds := []credential{
		{name: "no credentials"},
		{name: "malformed", header: bearer("not.a.jwt")},
		{name: "wrong signature", header: bearer(tokenWith(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "alice", nil))},
		{name: "expired", header: bearer(token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }))},
		{name: "alg none", header: bearer(unsignedToken("alice"))},
		{name: "wrong audience", header: bearer(token(t, "alice", func(c jwt.MapClaims) { c["aud"] = "someone-else" }))},
		{name: "unknown API key", header: []string{"X-API-Key", svcKey + "x"}},
		{name: "valid but topic denied", header: bearer(alice), root: "users/bob"},
		{name: "valid and allowed", header: bearer(alice), root: "users/alice"},
		{name: "API key, allowed", header: []string{"X-API-Key", svcKey}, root: "users/svc"},
		{name: "API key as Bearer, denied", header: bearer(svcKey), root: "users/alice"},
	}
	// Values to read.
	for _, root := range []string{"users/alice", "users/svc"} {
		key := bearer(alice)
		if root == "users/svc" {
			key = []string{"X-API-Key", svcKey}
		}
		if resp, body := in.do(t, "POST", "/v1/topics/"+root+"/x?retain=true", []byte("v"), key...); resp.StatusCode != 200 {
			t.Fatalf("seeding %s: %d %s", root, resp.StatusCode, body)
		}
		eventually(t, "the seeded value", func() string {
			if resp, body := in.do(t, "GET", "/v1/topics/"+root+"/x", nil, key...); resp.StatusCode != 200 {
				return fmt.Sprintf("%d %s", resp.StatusCode, body)
			}
			return ""
		})
	}

	json := []string{"Content-Type", "application/json"}
	endpoints := []endpoint{
		{"POST /v1/topics/{topic}", rest("POST", "/v1/topics/ROOT/x", "on"), 200, 403},
		{"GET /v1/topics/{topic}", rest("GET", "/v1/topics/ROOT/x", ""), 200, 403},
		{"GET /v1/topics/{topic}?wait", rest("GET", "/v1/topics/ROOT/x?wait=1", "", "If-None-Match", `"0-0"`), 200, 403},
		{"DELETE /v1/topics/{topic}", rest("DELETE", "/v1/topics/ROOT/gone", ""), 200, 403},
		{"POST /v1/publish", rest("POST", "/v1/publish", `{"topic":"ROOT/x","payload":"on"}`, json...), 200, 403},
		{"POST /v1/publish/batch", rest("POST", "/v1/publish/batch", `[{"topic":"ROOT/x","payload":"on"}]`, json...), 200, 400},
		{"GET /v1/messages", rest("GET", "/v1/messages?filter=ROOT/%23", ""), 200, 403},
		{"GET /v1/stream", stream, 200, 403},
		{"GET /v1/ws", ws, http.StatusSwitchingProtocols, 403},
		{"POST /v1/tickets", rest("POST", "/v1/tickets", ""), 201, 201},
		{"GET /openapi.yaml", rest("GET", "/openapi.yaml", ""), 200, 200},
		{"GET /", rest("GET", "/", ""), 200, 200},
		{"GET /client.js", rest("GET", "/client.js", ""), 200, 200},
	}
	if slices.Contains(apitest.New(t, mqttbridge.OpenAPI).Routes(), [2]string{"POST", "/v1/request/{topic}"}) {
		endpoints = append(endpoints, endpoint{"POST /v1/request/{topic}", rest("POST", "/v1/request/ROOT/rpc/ping?timeout=0.2", "x"), 0, 403})
	}
	for _, e := range endpoints {
		for _, c := range creds {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				root := c.root
				if root == "" {
					root = "users/alice"
				}
				got := e.call(t, in, root, c.header)
				var want int
				switch {
				case public(strings.TrimPrefix(e.name, "GET ")):
					want = http.StatusOK
				case c.root == "":
					want = http.StatusUnauthorized
				case strings.HasSuffix(c.name, "denied"):
					want = e.denied
				default:
					want = e.allowed
				}
				if want == 0 { // request/response: past authentication and authorization, whatever the device does
					if got == http.StatusUnauthorized || got == http.StatusForbidden {
						t.Errorf("status %d, want past authentication and authorization", got)
					}
					return
				}
				if got != want {
					t.Errorf("status %d, want %d", got, want)
				}
			})
		}
	}

	// Every operation of the spec, and an unknown path, refuses a caller
	// without credentials; health and readiness do not.
	for _, r := range in.api.Routes() {
		method, path := r[0], r[1]
		p := strings.NewReplacer("{topic}", "users/alice/x", "{name}", "hook", "{id}", "1-0").Replace(path)
		want := http.StatusUnauthorized
		if path == "/healthz" || path == "/readyz" || public(path) {
			want = http.StatusOK
		}
		req, _ := http.NewRequest(strings.ToUpper(method), in.base+p, nil)
		resp, err := in.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s %s without credentials: %d, want %d", method, path, resp.StatusCode, want)
		}
	}
	resp, err := in.client.Get(in.base + "/v2/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown path without credentials: %d, want 401", resp.StatusCode)
	}

	// No credential ever reaches the log.
	for _, secret := range []string{alice, svcKey, testHMACKey, unsignedToken("alice")[:20]} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a credential %.12q…", secret)
		}
	}
}

// public reports whether path is served without credentials by default:
// the console's files and the spec (they hold no data).
func public(path string) bool {
	return slices.Contains(web.Paths(), path) || path == "/openapi.yaml"
}

func decodeInto(b []byte, v any) error { return jsonUnmarshal(string(b), v) }

// With API keys or JWTs the console opens on its sign-in page, served
// without credentials (it holds no data); auth.public_console: false puts
// it behind credentials, and without authentication there is no sign-in.
func TestConsoleSignInPage(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*config.Config)
		status int
		signIn bool
	}{
		{"auth on", withAuth, http.StatusOK, true},
		{"auth on, public_console false", func(c *config.Config) { withAuth(c); c.Auth.PublicConsole = false }, http.StatusUnauthorized, false},
		{"auth off", nil, http.StatusOK, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := startWith(t, c.change)
			in.waitReady(t)
			for _, path := range web.Paths() {
				resp, body := in.doBad(t, http.MethodGet, path, nil)
				if resp.StatusCode != c.status {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, c.status)
				}
				if path == "/" && strings.Contains(string(body), `data-auth="required"`) != c.signIn {
					t.Errorf("GET /: sign-in page %v, want %v", !c.signIn, c.signIn)
				}
			}
		})
	}
}
