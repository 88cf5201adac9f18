package ratelimit

import (
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Publish: Rate{PerSecond: 2, Burst: 3}, Request: Rate{PerSecond: 1}})
	l.now = func() time.Time { return now }
	alice, bob := bridge.Identity{Name: "alice"}, bridge.Identity{Name: "bob"}
	for i := range 3 {
		if err := l.Allow(alice, bridge.ActionPublish); err != nil {
			t.Fatalf("publish %d within the burst: %v", i, err)
		}
	}
	err := l.Allow(alice, bridge.ActionPublish)
	var e *bridge.Error
	if err == nil || bridge.ErrorCode(err) != bridge.ECodeRateLimited {
		t.Fatalf("the 4th publish: %v, want rate_limited", err)
	}
	e = err.(*bridge.Error)
	if e.RetryAfter <= 0 || e.RetryAfter > time.Second {
		t.Errorf("RetryAfter %v, want (0, 500ms]", e.RetryAfter)
	}
	// Others are not affected: another identity, another action, anonymous.
	if err := l.Allow(bob, bridge.ActionPublish); err != nil {
		t.Errorf("bob: %v", err)
	}
	if err := l.Allow(alice, bridge.ActionRequest); err != nil {
		t.Errorf("alice's request: %v", err)
	}
	if err := l.Allow(alice, bridge.ActionSubscribe); err != nil {
		t.Errorf("reads are not limited without a Read rate: %v", err)
	}
	for range 10 {
		if err := l.Allow(bridge.Identity{}, bridge.ActionPublish); err != nil {
			t.Fatalf("anonymous: %v", err)
		}
	}
	// Refused attempts take no token: after RetryAfter one publish passes.
	now = now.Add(e.RetryAfter)
	if err := l.Allow(alice, bridge.ActionPublish); err != nil {
		t.Errorf("after RetryAfter: %v", err)
	}
	if err := l.Allow(alice, bridge.ActionRequest); err == nil {
		t.Error("a second request within a second of a 1/s limit was allowed")
	}
	// Idle buckets are dropped.
	now = now.Add(time.Hour)
	_ = l.Allow(bob, bridge.ActionPublish)
	if n := len(l.bkts); n != 1 {
		t.Errorf("%d buckets after an idle hour, want 1", n)
	}
}

// Reads (ActionSubscribe) have their own bucket per identity.
func TestReadLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Publish: Rate{PerSecond: 1}, Read: Rate{PerSecond: 1, Burst: 2}})
	l.now = func() time.Time { return now }
	alice, bob := bridge.Identity{Name: "alice"}, bridge.Identity{Name: "bob"}
	for i := range 2 {
		if err := l.Allow(alice, bridge.ActionSubscribe); err != nil {
			t.Fatalf("read %d within the burst: %v", i, err)
		}
	}
	err := l.Allow(alice, bridge.ActionSubscribe)
	if e, ok := err.(*bridge.Error); !ok || e.Code != bridge.ECodeRateLimited || e.RetryAfter <= 0 || !strings.Contains(e.Message, "reads") {
		t.Fatalf("the 3rd read: %v, want rate_limited about reads with a RetryAfter", err)
	}
	if err := l.Allow(bob, bridge.ActionSubscribe); err != nil {
		t.Errorf("bob's read: %v", err)
	}
	if err := l.Allow(alice, bridge.ActionPublish); err != nil {
		t.Errorf("alice's publish: %v", err)
	}
}

func TestNoLimit(t *testing.T) {
	l := New(Config{})
	for range 1000 {
		if err := l.Allow(bridge.Identity{Name: "a"}, bridge.ActionPublish); err != nil {
			t.Fatal(err)
		}
	}
}

// An API key, a JWT subject and a certificate of the same name, and JWTs
// of two issuers, have buckets of their own.
func TestLimiterKinds(t *testing.T) {
	l := New(Config{Publish: Rate{PerSecond: 1}})
	l.now = func() time.Time { return time.Unix(1000, 0) }
	for _, id := range []bridge.Identity{
		{Name: "alice", Kind: bridge.KindAPIKey},
		{Name: "alice", Kind: bridge.KindJWT},
		{Name: "alice", Kind: bridge.KindCert},
		{Name: "alice", Kind: bridge.KindJWT, Issuer: "https://other.example/"},
	} {
		if err := l.Allow(id, bridge.ActionPublish); err != nil {
			t.Errorf("%+v's first publish: %v", id, err)
		}
		if err := l.Allow(id, bridge.ActionPublish); err == nil {
			t.Errorf("%+v's second publish within a second passed", id)
		}
	}
}

// Tickets have buckets of their own, per identity key: an API key and a
// JWT subject of one name do not share one.
func TestTicketRate(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Publish: Rate{PerSecond: 100}, Ticket: Rate{PerSecond: 1, Burst: 2}})
	l.now = func() time.Time { return now }
	key, jwt := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}, bridge.Identity{Name: "alice", Kind: bridge.KindJWT}
	for i := range 2 {
		if err := l.AllowTicket(key); err != nil {
			t.Fatalf("ticket %d within the burst: %v", i, err)
		}
	}
	err := l.AllowTicket(key)
	if e, ok := err.(*bridge.Error); !ok || e.Code != bridge.ECodeRateLimited || e.RetryAfter <= 0 || !strings.Contains(e.Message, "tickets per second") {
		t.Fatalf("the 3rd ticket: %v", err)
	}
	if err := l.AllowTicket(jwt); err != nil {
		t.Errorf("the JWT subject alice: %v", err)
	}
	if err := l.Allow(key, bridge.ActionPublish); err != nil {
		t.Errorf("publishes are not tickets: %v", err)
	}
}
