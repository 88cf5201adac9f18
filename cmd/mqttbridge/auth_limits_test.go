package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
)

// keysFor gives every name an API key "key-<name>" with userRules.
func keysFor(names ...string) func(*config.Config) {
	return func(c *config.Config) {
		withAuth(c)
		for _, n := range names {
			c.Auth.APIKeys = append(c.Auth.APIKeys, config.APIKey{Name: n, SHA256: auth.HashKey("key-" + n), Rules: userRules})
		}
	}
}

func key(name string) []string { return []string{"X-API-Key", "key-" + name} }

// The publish rate limit covers REST, batch items and WebSocket frames
// alike, per identity: over it, 429 with Retry-After (or an error frame
// rate_limited), and other identities are not affected.
func TestAuthRateLimit(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		keysFor("rest", "batch", "ws", "other")(c)
		c.Limits.PublishRate, c.Limits.PublishBurst = 0.1, 2 // a token every 10 s
	}, nil)
	in.waitReady(t)

	for i, want := range []int{200, 200, 429} {
		resp, body := in.do(t, "POST", "/v1/topics/users/rest/x", []byte("v"), key("rest")...)
		if resp.StatusCode != want {
			t.Fatalf("REST publish %d: %d %s, want %d", i, resp.StatusCode, body, want)
		}
		if want == 429 {
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
				t.Errorf("Retry-After %q, want 1 to 10 seconds", resp.Header.Get("Retry-After"))
			}
			if errorCode(body) != "rate_limited" {
				t.Errorf("body %s", body)
			}
		}
	}
	// Another identity still publishes.
	if resp, body := in.do(t, "POST", "/v1/topics/users/other/x", []byte("v"), key("other")...); resp.StatusCode != 200 {
		t.Fatalf("another identity: %d %s", resp.StatusCode, body)
	}

	batch := `[{"topic":"users/batch/a","payload":"1"},{"topic":"users/batch/b","payload":"2"},{"topic":"users/batch/c","payload":"3"}]`
	resp, body := in.do(t, "POST", "/v1/publish/batch", []byte(batch), append(key("batch"), "Content-Type", "application/json")...)
	var got struct{ Results []struct{ Status int } }
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	var statuses []int
	for _, r := range got.Results {
		statuses = append(statuses, r.Status)
	}
	if !slices.Equal(statuses, []int{200, 200, 429}) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("batch statuses %v, Retry-After %q; want [200 200 429] and a Retry-After", statuses, resp.Header.Get("Retry-After"))
	}

	c, _ := in.wsConnectAuth(t, "", key("ws")...)
	for i, want := range []string{"ok", "ok", "error"} {
		ref := fmt.Sprint("p", i)
		f := c.request(`{"type":"publish","id":"`+ref+`","topic":"users/ws/x","payload":"v"}`, ref)
		if f["type"] != want || want == "error" && f["code"] != "rate_limited" {
			t.Fatalf("WebSocket publish %d: %v, want %s", i, f, want)
		}
	}
}

// Long-lived connections are counted per identity across WebSocket and
// SSE; subscriptions per connection and topic levels are bounded.
func TestAuthConnectionAndSubscriptionLimits(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		keysFor("a", "b")(c)
		c.Limits.ConnectionsPerIdentity = 2
		c.Limits.SubscriptionsPerConnection = 3
		c.Limits.TopicLevels = 4
	}, nil)
	in.waitReady(t)
	first, _ := in.wsConnectAuth(t, "", key("a")...)
	status, _ := in.openStream(t, "filter=users/a/%23", key("a")...)
	if status != 200 {
		t.Fatalf("second connection (SSE): %d", status)
	}
	if _, status := in.dialAuth(t, "", key("a")...); status != http.StatusTooManyRequests {
		t.Fatalf("third connection: %d, want 429", status)
	}
	if status, _ := in.openStream(t, "filter=users/a/%23", key("a")...); status != http.StatusTooManyRequests {
		t.Fatalf("third connection (SSE): %d, want 429", status)
	}
	if _, status := in.dialAuth(t, "", key("b")...); status != http.StatusSwitchingProtocols {
		t.Fatalf("another identity: %d", status)
	}
	first.ws.Close()
	eventually(t, "a slot freed by a closed connection", func() string {
		c, status := in.dialAuth(t, "", key("a")...)
		if c == nil {
			return fmt.Sprint(status)
		}
		c.ws.Close()
		return ""
	})

	c, _ := in.wsConnectAuth(t, "", key("b")...)
	if f := c.request(`{"type":"subscribe","id":"1","filters":["users/b/1","users/b/2","users/b/3"]}`, "1"); f["type"] != "ok" {
		t.Fatalf("three subscriptions: %v", f)
	}
	if f := c.request(`{"type":"subscribe","id":"2","filters":["users/b/4"]}`, "2"); f["type"] != "error" || f["code"] != "invalid_request" {
		t.Fatalf("a fourth subscription: %v", f)
	}
	if resp, body := in.doBad(t, "POST", "/v1/topics/users/b/1/2/3", []byte("v"), key("b")...); resp.StatusCode != 400 || errorCode(body) != "invalid_topic" {
		t.Errorf("five levels: %d %s", resp.StatusCode, body)
	}
	if resp, body := in.do(t, "POST", "/v1/topics/users/b/1/2", []byte("v"), key("b")...); resp.StatusCode != 200 {
		t.Errorf("four levels: %d %s", resp.StatusCode, body)
	}
}

// GET /v1/messages with a filter the identity may read only in part lists
// only its topics; $-topics need a rule that names them.
func TestAuthListFilters(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		withAuth(c)
		c.Auth.APIKeys = append(c.Auth.APIKeys, config.APIKey{Name: "admin", SHA256: auth.HashKey("key-admin"),
			Rules: config.Rules{Publish: []string{"#"}, Subscribe: []string{"#"}}})
	}, nil)
	in.waitReady(t)
	for _, tp := range []string{"users/alice/a", "users/alice/b", "users/bob/a", "plant/1"} {
		if resp, body := in.do(t, "POST", "/v1/topics/"+tp+"?retain=true", []byte("v"), key("admin")...); resp.StatusCode != 200 {
			t.Fatalf("seed %s: %d %s", tp, resp.StatusCode, body)
		}
	}
	list := func(filter string, header []string) (int, []string) {
		resp, body := in.do(t, "GET", "/v1/messages?filter="+url.QueryEscape(filter), nil, header...)
		var page struct{ Messages []struct{ Topic string } }
		_ = json.Unmarshal(body, &page)
		var topics []string
		for _, m := range page.Messages {
			topics = append(topics, m.Topic)
		}
		return resp.StatusCode, topics
	}
	eventually(t, "the seeded values", func() string {
		if _, all := list("#", key("admin")); len(all) != 4 {
			return fmt.Sprint(all)
		}
		return ""
	})
	alice := bearer(token(t, "alice", nil))
	if status, topics := list("#", alice); status != 200 || !slices.Equal(topics, []string{"users/alice/a", "users/alice/b"}) {
		t.Errorf("alice lists # as %d %q", status, topics)
	}
	if status, topics := list("users/+/a", alice); status != 200 || !slices.Equal(topics, []string{"users/alice/a"}) {
		t.Errorf("alice lists users/+/a as %d %q", status, topics)
	}
	if status, _ := list("plant/#", alice); status != 403 {
		t.Errorf("alice lists plant/#: %d, want 403", status)
	}
	// Rule # does not reach $-topics.
	if resp, body := in.doBad(t, "POST", "/v1/topics/$SYS/x", []byte("v"), key("admin")...); resp.StatusCode != 403 {
		t.Errorf("publishing to $SYS/x with rule #: %d %s, want 403", resp.StatusCode, body)
	}
}
