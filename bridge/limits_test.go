package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
)

func newLimited(t *testing.T, cfg bridge.Config) (*bridge.Bridge, *recorder) {
	t.Helper()
	store, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = store
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	up := &recorder{}
	if err := b.AddRoute(bridge.Route{Filters: []string{"#"}, Upstream: up}); err != nil {
		t.Fatal(err)
	}
	return b, up
}

// countLimiter refuses every publish after the first n.
type countLimiter struct{ n int }

func (l *countLimiter) Allow(_ bridge.Identity, a bridge.Action) error {
	if a != bridge.ActionPublish {
		return fmt.Errorf("limiter asked about %s", a)
	}
	if l.n == 0 {
		return &bridge.Error{Code: bridge.ECodeRateLimited, Message: "slow down", RetryAfter: time.Second}
	}
	l.n--
	return nil
}

// Publish and Delete take from the limiter after every other check, so a
// refused or invalid publish costs nothing; CheckPublish takes nothing.
func TestPublishIsRateLimited(t *testing.T) {
	lim := &countLimiter{n: 2}
	b, up := newLimited(t, bridge.Config{Limiter: lim})
	ctx := context.Background()
	id := bridge.Identity{Name: "alice"}
	if _, err := b.Publish(ctx, id, bridge.Message{Topic: "a/+"}); bridge.ErrorCode(err) != bridge.ECodeInvalidTopic {
		t.Fatalf("invalid topic: %v", err)
	}
	for range 3 {
		if err := b.CheckPublish(ctx, id, bridge.Message{Topic: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Publish(ctx, id, bridge.Message{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(ctx, id, "a"); err != nil {
		t.Fatal(err)
	}
	_, err := b.Publish(ctx, id, bridge.Message{Topic: "a"})
	if bridge.ErrorCode(err) != bridge.ECodeRateLimited || err.(*bridge.Error).RetryAfter != time.Second {
		t.Fatalf("third publish: %v, want rate_limited with RetryAfter", err)
	}
	if len(up.sent) != 2 {
		t.Fatalf("the broker got %d messages, want 2", len(up.sent))
	}
}

func TestTopicLimits(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Limits: bridge.Limits{MaxTopicLength: 10, MaxTopicLevels: 3}})
	ctx := context.Background()
	for _, c := range []struct {
		topic string
		ok    bool
	}{
		{"a/b/c", true},
		{"a/b/c/d", false},
		{"0123456789", true},
		{"0123456789a", false},
	} {
		_, err := b.Publish(ctx, bridge.Identity{}, bridge.Message{Topic: c.topic})
		if (err == nil) != c.ok || err != nil && bridge.ErrorCode(err) != bridge.ECodeInvalidTopic {
			t.Errorf("publish %q: %v, want ok %v", c.topic, err, c.ok)
		}
		err = b.CheckSubscribe(ctx, bridge.Identity{}, c.topic)
		if (err == nil) != c.ok {
			t.Errorf("subscribe %q: %v, want ok %v", c.topic, err, c.ok)
		}
		_, _, err = b.List(ctx, bridge.Identity{}, c.topic, "", 10)
		if (err == nil) != c.ok {
			t.Errorf("list %q: %v, want ok %v", c.topic, err, c.ok)
		}
	}
	if err := b.CheckSubscribe(ctx, bridge.Identity{}, "+/+/+/#"); bridge.ErrorCode(err) != bridge.ECodeInvalidTopic {
		t.Errorf("a filter of 4 levels: %v", err)
	}
}

func TestSubscriptionsPerFeed(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Limits: bridge.Limits{SubscriptionsPerFeed: 2}})
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{})
	defer f.Close()
	ctx := context.Background()
	if err := f.Subscribe(ctx, []string{"a", "b", "a"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Subscribe(ctx, []string{"b"}, bridge.SubscribeOptions{QoS: 1}); err != nil {
		t.Fatalf("changing the QoS of a held filter: %v", err)
	}
	if err := f.Subscribe(ctx, []string{"c"}, bridge.SubscribeOptions{}); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
		t.Fatalf("a third filter: %v, want invalid_request", err)
	}
	f.Unsubscribe([]string{"a"})
	if err := f.Subscribe(ctx, []string{"c"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
}

func TestConnectionsPerIdentity(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Limits: bridge.Limits{ConnectionsPerIdentity: 2}})
	alice := bridge.Identity{Name: "alice"}
	r1, err1 := b.Connect(alice)
	r2, err2 := b.Connect(alice)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := b.Connect(alice); bridge.ErrorCode(err) != bridge.ECodeRateLimited {
		t.Fatalf("a third connection: %v, want rate_limited", err)
	}
	if _, err := b.Connect(bridge.Identity{Name: "bob"}); err != nil {
		t.Fatalf("bob: %v", err)
	}
	for range 5 {
		if _, err := b.Connect(bridge.Identity{}); err != nil {
			t.Fatalf("anonymous callers are not counted: %v", err)
		}
	}
	r1()
	r1() // twice is once
	r3, err := b.Connect(alice)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := b.Connect(alice); err == nil {
		t.Fatal("a double release freed two slots")
	}
	r2()
	r3()
}

// A JWT subject or a certificate named like an API key has connections of
// its own: the key's slots are not taken.
func TestConnectionsPerIdentityKinds(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Limits: bridge.Limits{ConnectionsPerIdentity: 1}})
	for _, id := range []bridge.Identity{
		{Name: "alice", Kind: bridge.KindAPIKey},
		{Name: "alice", Kind: bridge.KindJWT},
		{Name: "alice", Kind: bridge.KindCert},
		{Name: "alice", Kind: bridge.KindJWT, Issuer: "https://other.example/"},
	} {
		if _, err := b.Connect(id); err != nil {
			t.Errorf("%+v's first connection: %v", id, err)
		}
		if _, err := b.Connect(id); bridge.ErrorCode(err) != bridge.ECodeRateLimited {
			t.Errorf("%+v's second connection: %v, want rate_limited", id, err)
		}
	}
}

// GET /v1/messages of a filter the identity may read only in part lists
// exactly the topics it may read, page after page.
func TestListOnlyAllowedTopics(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Authorizer: acl.ACL{}})
	for i := range 30 {
		b.Ingest(bridge.Message{Topic: fmt.Sprintf("dev/%02d/t", i), Payload: []byte("v")})
	}
	b.Ingest(bridge.Message{Topic: "other/x", Payload: []byte("v")})
	ctx := context.Background()
	alice := bridge.Identity{Name: "alice", Rules: &bridge.Rules{Subscribe: []string{"dev/01/#", "dev/+/t/x"}}}
	alice.Rules.Subscribe = append(alice.Rules.Subscribe, "dev/05/t", "dev/17/t", "dev/29/t")

	var got []string
	after := ""
	for range 10 {
		msgs, next, err := b.List(ctx, alice, "dev/#", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 2 {
			t.Fatalf("a page of %d, limit 2", len(msgs))
		}
		for _, m := range msgs {
			got = append(got, m.Topic)
		}
		if next == "" {
			break
		}
		after = next
	}
	if want := []string{"dev/01/t", "dev/05/t", "dev/17/t", "dev/29/t"}; !slices.Equal(got, want) {
		t.Errorf("listed %q, want %q", got, want)
	}
	// A filter the rules allow whole lists everything.
	msgs, _, err := b.List(ctx, alice, "dev/01/+", "", 10)
	if err != nil || len(msgs) != 1 {
		t.Errorf("dev/01/+: %v %v", msgs, err)
	}
	// A filter that reaches nothing allowed is refused.
	if _, _, err := b.List(ctx, alice, "other/#", "", 10); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Errorf("other/#: %v, want forbidden", err)
	}
}
