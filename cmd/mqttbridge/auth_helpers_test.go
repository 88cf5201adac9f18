package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The credentials of the authentication tests.
const (
	testHMACKey = "an HMAC secret of at least 32 bytes, for tests"
	testIssuer  = "https://idp.test/"
	testAud     = "mqttbridge"
	svcKey      = "mbk_svc-test-key-0123456789"
)

var userRules = config.Rules{
	Publish:   []string{"users/%u/#"},
	Subscribe: []string{"users/%u/#"},
	Request:   []string{"users/%u/rpc/+"},
}

// withAuth turns on API keys (svc) and HS256 JWTs, both with userRules.
func withAuth(c *config.Config) {
	c.Auth.APIKeys = []config.APIKey{{Name: "svc", SHA256: auth.HashKey(svcKey), Rules: userRules}}
	c.Auth.JWT.Algorithms = []string{"HS256"}
	c.Auth.JWT.HMACKeys = []string{testHMACKey}
	c.Auth.JWT.Issuer = testIssuer
	c.Auth.JWT.Audience = testAud
	c.Auth.JWT.Rules = userRules
}

// startLogged is startWith with every log line (debug level up) kept in
// logs as well as in the test log.
func startLogged(tb testing.TB, change func(*config.Config), logs *testenv.SyncBuffer, args ...string) *instance {
	tb.Helper()
	cfg, err := config.Load(append([]string{"--http-addr", "127.0.0.1:0", "--embedded-mqtt-addr", "127.0.0.1:0"}, args...), func(string) string { return "" })
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	var w io.Writer = newTBWriter(tb)
	if logs != nil {
		w = io.MultiWriter(w, logs)
	}
	return runInstance(tb, cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// token signs claims (sub, iss, aud, exp an hour ahead, iat, changed by
// mod) with HS256 and testHMACKey.
func token(tb testing.TB, sub string, mod func(jwt.MapClaims)) string {
	tb.Helper()
	return tokenWith(tb, jwt.SigningMethodHS256, []byte(testHMACKey), sub, mod)
}

func tokenWith(tb testing.TB, method jwt.SigningMethod, key any, sub string, mod func(jwt.MapClaims)) string {
	tb.Helper()
	c := jwt.MapClaims{"sub": sub, "iss": testIssuer, "aud": testAud, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if mod != nil {
		mod(c)
	}
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// unsignedToken is a valid-looking token with "alg": "none".
func unsignedToken(sub string) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(map[string]any{"sub": sub, "iss": testIssuer, "aud": testAud, "exp": time.Now().Add(time.Hour).Unix()})
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// errorCode is the error.code of a JSON error body.
func errorCode(body []byte) string {
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// wsURL is the WebSocket URL of the instance with query.
func (in *instance) wsURL(query string) string {
	u := strings.Replace(in.base, "http", "ws", 1) + "/v1/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dialAuth opens /v1/ws with header pairs; it returns the connection (nil
// when refused) and the handshake status.
func (in *instance) dialAuth(tb testing.TB, query string, header ...string) (*wsClient, int) {
	tb.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	ws, resp, err := websocket.DefaultDialer.Dial(in.wsURL(query), h)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		if err != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				tb.Errorf("a 401 without WWW-Authenticate: %s", body)
			}
		}
	}
	if err != nil {
		return nil, status
	}
	tb.Cleanup(func() { ws.Close() })
	return &wsClient{tb: tb, ws: ws, in: in}, status
}

// openStream opens /v1/stream and returns the status and, on 200, a
// channel of its events; the stream ends with the test.
func (in *instance) openStream(tb testing.TB, query string, header ...string) (int, <-chan sseEvent) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.base+"/v1/stream?"+query, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	client := &http.Client{Transport: in.client.Transport}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		readSSE(resp.Body, ch)
	}()
	return resp.StatusCode, ch
}

// readSSE sends the events of an SSE body to out until it ends.
func readSSE(body io.Reader, out chan<- sseEvent) {
	sc := bufio.NewScanner(body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.event != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}
