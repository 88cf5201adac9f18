package main

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// issueTicket asks in for a ticket with the header pairs; it returns the
// status, the ticket on 201, and the body.
func (in *instance) issueTicket(t *testing.T, header ...string) (*http.Response, string, []byte) {
	t.Helper()
	resp, body := in.do(t, "POST", "/v1/tickets", nil, header...)
	if resp.StatusCode != http.StatusCreated {
		return resp, "", body
	}
	return resp, decode[httpapi.Ticket](t, body).Ticket, body
}

func (in *instance) mustTicket(t *testing.T, header ...string) string {
	t.Helper()
	resp, tk, body := in.issueTicket(t, header...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/tickets at %s: %d %s", in.base, resp.StatusCode, body)
	}
	return tk
}

// requireRefused checks a 429 rate_limited with Retry-After and a message
// that says why.
func requireRefused(t *testing.T, what string, resp *http.Response, body []byte, why string) {
	t.Helper()
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || errorCode(body) != "rate_limited" || err != nil || secs < 1 || !strings.Contains(string(body), why) {
		t.Fatalf("%s: %d Retry-After %q %s; want 429 rate_limited with Retry-After, saying %q", what, resp.StatusCode, resp.Header.Get("Retry-After"), body, why)
	}
}

// Two instances on one Redis: a ticket from either opens /v1/ws and
// /v1/stream at the other, exactly once, and the per-identity bound counts
// the tickets of both.
func TestTicketsFleetWide(t *testing.T) {
	testenv.Long(t, "two instances on one Redis")
	prefix := testenv.Prefix(t)
	args := []string{"--mqtt-url", testenv.MosquittoURL(t), "--redis-url", testenv.RedisURL(t),
		"--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	rules := config.Rules{Subscribe: []string{prefix + "/u/%u/#"}, Publish: []string{prefix + "/u/%u/#"}}
	change := func(c *config.Config) {
		withAuth(c)
		c.Auth.APIKeys[0].Rules, c.Auth.JWT.Rules = rules, rules
		c.Auth.TicketsPerIdentity = 5
	}
	a := startWith(t, change, append(args, "--instance-id", "a")...)
	b := startWith(t, change, append(args, "--instance-id", "b")...)
	a.waitReady(t)
	b.waitReady(t)
	alice := bearer(token(t, "alice", nil))
	q := func(tk string) string {
		return "filter=" + url.QueryEscape(prefix+"/u/alice/#") + "&access_token=" + url.QueryEscape(tk)
	}

	tk := a.mustTicket(t, alice...)
	if _, status := b.dialAuth(t, q(tk)); status != http.StatusSwitchingProtocols {
		t.Fatalf("ws at b with a ticket from a: %d, want 101", status)
	}
	if _, status := a.dialAuth(t, q(tk)); status != http.StatusUnauthorized {
		t.Fatalf("ws at a with the ticket b redeemed: %d, want 401", status)
	}
	tk = b.mustTicket(t, alice...)
	if status, _ := a.openStream(t, q(tk)); status != http.StatusOK {
		t.Fatalf("stream at a with a ticket from b: %d, want 200", status)
	}
	if status, _ := b.openStream(t, q(tk)); status != http.StatusUnauthorized {
		t.Fatalf("stream at b with the ticket a redeemed: %d, want 401", status)
	}

	// The bound (5) counts alice's unused tickets at both instances.
	for i := range 5 {
		[]*instance{a, b}[i%2].mustTicket(t, alice...)
	}
	for _, in := range []*instance{a, b} {
		resp, _, body := in.issueTicket(t, alice...)
		requireRefused(t, "a 6th unused ticket at "+in.base, resp, body, "unused tickets")
	}
	b.mustTicket(t, "X-API-Key", svcKey) // another identity is not affected
}

// From outside: one API key asking for tickets fast, or holding too many,
// gets 429 with Retry-After; another key, and a JWT subject with the same
// name, still get theirs.
func TestTicketLimitsPerIdentity(t *testing.T) {
	const otherKey = "mbk_other-test-key-0123456789"
	withTwoKeys := func(perIdentity int, rate float64, burst int) func(*config.Config) {
		return func(c *config.Config) {
			withAuth(c)
			c.Auth.APIKeys = append(c.Auth.APIKeys, config.APIKey{Name: "other", SHA256: auth.HashKey(otherKey), Rules: userRules})
			c.Auth.TicketsPerIdentity, c.Auth.TicketRate, c.Auth.TicketBurst = perIdentity, rate, burst
		}
	}
	svc, other, jwtSvc := []string{"X-API-Key", svcKey}, []string{"X-API-Key", otherKey}, bearer(token(t, "svc", nil))

	t.Run("rate", func(t *testing.T) {
		in := startLogged(t, withTwoKeys(100, 1, 5), nil)
		var resp *http.Response
		var body []byte
		for i := 0; ; i++ {
			if resp, _, body = in.issueTicket(t, svc...); resp.StatusCode != http.StatusCreated {
				break
			}
			if i == 50 {
				t.Fatal("50 tickets at 1 per second, burst 5, were all issued")
			}
		}
		requireRefused(t, "over the rate", resp, body, "tickets per second")
		in.mustTicket(t, other...)
		in.mustTicket(t, jwtSvc...)
	})
	t.Run("outstanding", func(t *testing.T) {
		in := startLogged(t, withTwoKeys(3, 1000, 1000), nil)
		var first string
		for i := range 3 {
			tk := in.mustTicket(t, svc...)
			if i == 0 {
				first = tk
			}
		}
		resp, _, body := in.issueTicket(t, svc...)
		requireRefused(t, "a 4th unused ticket", resp, body, "unused tickets")
		in.mustTicket(t, other...)
		in.mustTicket(t, jwtSvc...)
		// A used ticket no longer counts.
		if status, _ := in.openStream(t, "filter=users/svc/%23&access_token="+first); status != http.StatusOK {
			t.Fatalf("stream with a ticket: %d", status)
		}
		in.mustTicket(t, svc...)
	})
}

// While Redis is down, tickets are neither issued nor redeemed, and say so
// with 503 store_unavailable (not 401: the ticket may still be good).
func TestTicketsRedisDown(t *testing.T) {
	rds, redisURL := testenv.StartRedis(t, false)
	in := startWith(t, withAuth, "--redis-url", redisURL, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	alice := bearer(token(t, "alice", nil))
	tk := in.mustTicket(t, alice...)
	rds.Stop()

	resp, _, body := in.issueTicket(t, alice...)
	if resp.StatusCode != http.StatusServiceUnavailable || errorCode(body) != "store_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /v1/tickets while Redis is down: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	q := "filter=users/alice/%23&access_token=" + url.QueryEscape(tk)
	if _, status := in.dialAuth(t, q); status != http.StatusServiceUnavailable {
		t.Errorf("ws with a ticket while Redis is down: %d, want 503", status)
	}
	if status, _ := in.openStream(t, q); status != http.StatusServiceUnavailable {
		t.Errorf("stream with a ticket while Redis is down: %d, want 503", status)
	}
}
