package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// On an open WebSocket every subscribe and every publish frame is checked
// against the identity's rules, and a resumed session brings back only
// what the identity may read.
func TestAuthWebSocketFrames(t *testing.T) {
	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	c, status := in.dialAuth(t, "", bearer(token(t, "alice", nil))...)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("handshake %d", status)
	}
	if f := c.read(); f["type"] != "welcome" {
		t.Fatalf("first frame %v", f)
	}
	for _, tc := range []struct {
		frame, ref, typ, code string
	}{
		{`{"type":"subscribe","id":"1","filters":["users/alice/#"]}`, "1", "ok", ""},
		{`{"type":"subscribe","id":"2","filters":["users/+/x"]}`, "2", "error", "forbidden"},
		{`{"type":"subscribe","id":"3","filters":["users/alice/a","users/bob/a"]}`, "3", "error", "forbidden"},
		{`{"type":"subscribe","id":"4","filters":["#"]}`, "4", "error", "forbidden"},
		{`{"type":"publish","id":"5","topic":"users/alice/cmd","payload":"on"}`, "5", "ok", ""},
		{`{"type":"publish","id":"6","topic":"users/bob/cmd","payload":"on"}`, "6", "error", "forbidden"},
	} {
		f := c.request(tc.frame, tc.ref)
		if f["type"] != tc.typ || tc.code != "" && f["code"] != tc.code {
			t.Errorf("%s: got %v, want %s %s", tc.frame, f, tc.typ, tc.code)
		}
	}
	// A session id is no credential: bob resuming alice's session gets
	// neither her subscriptions nor her unacknowledged messages.
	a, welcome := in.wsConnectAuth(t, "", bearer(token(t, "alice", nil))...)
	session := welcome["session"].(string)
	if f := a.request(`{"type":"subscribe","id":"s","filters":["users/alice/#"],"qos":1}`, "s"); f["type"] != "ok" {
		t.Fatalf("subscribe: %v", f)
	}
	if resp, body := in.do(t, "POST", "/v1/topics/users/alice/secret", []byte("s3cret"), bearer(token(t, "alice", nil))...); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if f := a.read(); f["type"] != "message" || f["ack"] != true {
		t.Fatalf("alice got %v, want a message to acknowledge", f)
	}
	a.ws.Close()
	eventually(t, "alice's session saved", func() string { // when the connection ends
		s, err := in.Bridge.Resume(t.Context(), session)
		if err != nil {
			return err.Error()
		}
		if err := in.Bridge.Checkpoint(t.Context(), s, time.Minute); err != nil {
			return err.Error()
		}
		return ""
	})
	bob, _ := in.wsConnectAuth(t, "session="+session, bearer(token(t, "bob", nil))...)
	sawError := false
	for {
		f, err := bob.tryRead(time.Second)
		if err != nil {
			break
		}
		if f["type"] == "message" {
			t.Fatalf("bob got alice's message %v", f)
		}
		sawError = sawError || f["type"] == "error" && f["code"] == "forbidden"
	}
	if !sawError {
		t.Error("restoring alice's subscriptions for bob gave no forbidden error")
	}
	if resp, _ := in.do(t, "POST", "/v1/topics/users/alice/secret", []byte("again"), bearer(token(t, "alice", nil))...); resp.StatusCode != 200 {
		t.Fatal("publish")
	}
	if f, err := bob.tryRead(time.Second); err == nil {
		t.Fatalf("bob got %v after alice's publish", f)
	}
}

// wsConnectAuth opens /v1/ws with credentials and reads the welcome.
func (in *instance) wsConnectAuth(tb testing.TB, query string, header ...string) (*wsClient, map[string]any) {
	tb.Helper()
	c, status := in.dialAuth(tb, query, header...)
	if c == nil {
		tb.Fatalf("dial /v1/ws?%s: %d", query, status)
	}
	w := c.read()
	if w["type"] != "welcome" {
		tb.Fatalf("first frame %v", w)
	}
	return c, w
}

// A WebSocket and an SSE stream end when their credentials expire: close
// 1008 "token expired", and an error event with code unauthorized.
func TestAuthExpiryEndsStreams(t *testing.T) {
	testenv.Long(t, "waiting for tokens to expire")
	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	short := func() string {
		return token(t, "alice", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(2 * time.Second).Unix() })
	}
	c, _ := in.wsConnectAuth(t, "filter="+url.QueryEscape("users/alice/#"), bearer(short())...)
	start := time.Now()
	var err error
	for err == nil {
		_, err = c.tryRead(10 * time.Second)
	}
	var ce *websocket.CloseError
	if !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "token expired" {
		t.Fatalf("WebSocket ended with %v, want close 1008 token expired", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %s", d)
	}

	status, events := in.openStream(t, "filter="+url.QueryEscape("users/alice/#"), bearer(short())...)
	if status != 200 {
		t.Fatalf("stream: %d", status)
	}
	ev := nextEvent(t, events)
	if ev.event != "error" || !strings.Contains(ev.data, `"code":"unauthorized"`) || !strings.Contains(ev.data, "token expired") {
		t.Fatalf("event %+v, want an error event unauthorized: token expired", ev)
	}
	if _, open := <-events; open {
		t.Error("the stream went on after the error event")
	}
	// A long-lived credential keeps the stream open meanwhile.
	c2, _ := in.wsConnectAuth(t, "", []string{"X-API-Key", svcKey}...)
	if _, err := c2.tryRead(3 * time.Second); err == nil || strings.Contains(err.Error(), "close") {
		t.Errorf("the API key connection: %v, want a read timeout", err)
	}
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

// Browsers open streams with ?access_token=: a ticket works once, only on
// /v1/ws and /v1/stream; a JWT or API key in the query works there too, and
// nowhere else.
func TestAuthTicketsAndAccessToken(t *testing.T) {
	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	ticket := func() string {
		resp, body := in.do(t, "POST", "/v1/tickets", nil, bearer(token(t, "alice", nil))...)
		if resp.StatusCode != 201 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("ticket: %d %s", resp.StatusCode, body)
		}
		tk := decode[httpapi.Ticket](t, body)
		if tk.ExpiresIn < 1 || tk.ExpiresIn > 30 {
			t.Errorf("expires_in %d", tk.ExpiresIn)
		}
		return tk.Ticket
	}
	q := func(tok string) string {
		return "filter=" + url.QueryEscape("users/alice/#") + "&access_token=" + url.QueryEscape(tok)
	}

	tk := ticket()
	if _, status := in.dialAuth(t, q(tk)); status != http.StatusSwitchingProtocols {
		t.Fatalf("ws with a ticket: %d", status)
	}
	if _, status := in.dialAuth(t, q(tk)); status != http.StatusUnauthorized {
		t.Fatalf("ws with a used ticket: %d, want 401", status)
	}
	tk = ticket()
	if status, _ := in.openStream(t, q(tk)); status != 200 {
		t.Fatalf("stream with a ticket: %d", status)
	}
	if status, _ := in.openStream(t, q(tk)); status != 401 {
		t.Fatalf("stream with a used ticket: %d, want 401", status)
	}
	// A ticket is for streams only.
	tk = ticket()
	if resp, _ := in.doBad(t, "GET", "/v1/messages?filter=users/alice/%23", nil, bearer(tk)...); resp.StatusCode != 401 {
		t.Errorf("a ticket as Bearer on REST: %d, want 401", resp.StatusCode)
	}
	if status, _ := in.openStream(t, q(tk)); status != 200 {
		t.Errorf("the ticket refused on REST still opens a stream: %d", status)
	}
	// JWTs and API keys in the query, on streams only.
	if _, status := in.dialAuth(t, q(token(t, "alice", nil))); status != http.StatusSwitchingProtocols {
		t.Errorf("ws with a JWT in the query: %d", status)
	}
	if status, _ := in.openStream(t, "filter=users/svc/%23&access_token="+svcKey); status != 200 {
		t.Errorf("stream with an API key in the query: %d", status)
	}
	for _, p := range []string{"/v1/messages?filter=users/alice/%23&access_token=", "/v1/topics/users/alice/x?access_token="} {
		if resp, _ := in.doBad(t, "GET", p+url.QueryEscape(token(t, "alice", nil)), nil); resp.StatusCode != 401 {
			t.Errorf("GET %s…: %d, want 401", p, resp.StatusCode)
		}
	}
	// Without authentication configured there are no tickets.
	open := startLogged(t, nil, nil)
	if resp, body := open.do(t, "POST", "/v1/tickets", nil); resp.StatusCode != 404 || errorCode(body) != "not_found" {
		t.Errorf("tickets without auth: %d %s", resp.StatusCode, body)
	}
}
