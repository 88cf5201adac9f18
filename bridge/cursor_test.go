package bridge_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
)

// decodings are every way a client might try to read a cursor.
func decodings(cursor string) []string {
	out := []string{cursor}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(cursor); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// A list whose scan passes topics the caller may not read returns cursors
// that reveal none of them, pages through every allowed topic exactly
// once, and reads a bounded number of last values per call (a page may be
// empty, with a cursor). A cursor is good only for its identity and
// filter; a tampered one is invalid_cursor.
func TestListCursorsAreOpaque(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{Authorizer: acl.ACL{}})
	for i := range 1100 { // more than one call's scan budget, sorted before alice
		b.Ingest(bridge.Message{Topic: fmt.Sprintf("users/aaron/private/%04d", i), Payload: []byte("secret")})
	}
	for _, tp := range []string{"users/alice/a", "users/alice/b", "users/alice/c", "users/bob/private/x", "users/zed/private/y"} {
		b.Ingest(bridge.Message{Topic: tp, Payload: []byte("v")})
	}
	ctx := context.Background()
	alice := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"users/alice/#"}}}

	var got, cursors []string
	cursor, empty := "", 0
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("the list did not end")
		}
		msgs, next, err := b.List(ctx, alice, "users/#", cursor, 2)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(msgs) > 2 {
			t.Fatalf("page %d holds %d messages, limit 2", page, len(msgs))
		}
		if len(msgs) == 0 && next != "" {
			empty++
		}
		for _, m := range msgs {
			got = append(got, m.Topic)
		}
		if next == "" {
			break
		}
		for _, d := range decodings(next) {
			if strings.Contains(d, "users/") || strings.Contains(d, "private") || strings.Contains(d, "alice") {
				t.Fatalf("cursor %q reads as %q", next, d)
			}
		}
		cursors = append(cursors, next)
		cursor = next
	}
	if want := []string{"users/alice/a", "users/alice/b", "users/alice/c"}; !slices.Equal(got, want) {
		t.Errorf("listed %q, want %q", got, want)
	}
	if empty == 0 {
		t.Error("no page stopped at the scan budget: one call read more than 1000 forbidden last values")
	}

	// The same position sealed twice reads differently.
	_, again, err := b.List(ctx, alice, "users/#", "", 2)
	if err != nil || again == "" || again == cursors[0] {
		t.Errorf("the first cursor again: %q (%v), before %q", again, err, cursors[0])
	}
	bob := bridge.Identity{Name: "bob", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"users/#"}}}
	aliceJWT := alice
	aliceJWT.Kind = bridge.KindJWT
	raw, _ := base64.RawURLEncoding.DecodeString(cursors[0])
	raw[len(raw)-1] ^= 1
	for name, c := range map[string]struct {
		id             bridge.Identity
		filter, cursor string
	}{
		"another identity":              {bob, "users/#", cursors[0]},
		"another kind of the same name": {aliceJWT, "users/#", cursors[0]},
		"another filter":                {alice, "users/+/+/+", cursors[0]},
		"tampered":                      {alice, "users/#", base64.RawURLEncoding.EncodeToString(raw)},
		"a topic name in base64":        {alice, "users/#", base64.RawURLEncoding.EncodeToString([]byte("users/alice/a"))},
		"not base64":                    {alice, "users/#", "!"},
	} {
		if _, _, err := b.List(ctx, c.id, c.filter, c.cursor, 2); bridge.ErrorCode(err) != bridge.ECodeInvalidCursor {
			t.Errorf("%s: %v, want invalid_cursor", name, err)
		}
	}

	// A filter allowed whole gets sealed cursors too.
	admin := bridge.Identity{Name: "admin", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"#"}}}
	msgs, next, err := b.List(ctx, admin, "users/+/+", "", 2)
	if err != nil || len(msgs) != 2 || next == "" {
		t.Fatalf("admin: %d messages, next %q, %v", len(msgs), next, err)
	}
	for _, d := range decodings(next) {
		if strings.Contains(d, "users/") {
			t.Fatalf("cursor %q reads as %q", next, d)
		}
	}
	if msgs, _, err := b.List(ctx, admin, "users/+/+", next, 2); err != nil || len(msgs) != 1 || msgs[0].Topic != "users/alice/c" {
		t.Fatalf("admin's second page: %v %v", msgs, err)
	}
}

// The response topic of a publish is one the caller may publish to: the
// device answers there on the caller's behalf. A refused one reaches
// nothing.
func TestResponseTopicIsAuthorized(t *testing.T) {
	b, up := newLimited(t, bridge.Config{Authorizer: acl.ACL{}})
	ctx := context.Background()
	alice := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Publish: []string{"users/alice/#"}}}
	msg := func(rt string) bridge.Message {
		return bridge.Message{Topic: "users/alice/cmd", Payload: []byte("x"), Properties: bridge.Properties{ResponseTopic: rt}}
	}
	if _, err := b.Publish(ctx, alice, msg("users/bob/inbox")); bridge.ErrorCode(err) != bridge.ECodeForbidden || !strings.Contains(err.Error(), "response topic") {
		t.Errorf("publish with another identity's response topic: %v, want forbidden", err)
	}
	if err := b.CheckPublish(ctx, alice, msg("users/bob/inbox")); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Errorf("CheckPublish: %v, want forbidden", err)
	}
	if _, err := b.Publish(ctx, alice, msg("users/alice/+")); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
		t.Errorf("a wildcard response topic: %v, want invalid_request", err)
	}
	if len(up.sent) != 0 {
		t.Fatalf("the broker got %d messages", len(up.sent))
	}
	if _, err := b.Publish(ctx, alice, msg("users/alice/inbox")); err != nil {
		t.Fatalf("a response topic of its own: %v", err)
	}
	if len(up.sent) != 1 || up.sent[0].Properties.ResponseTopic != "users/alice/inbox" {
		t.Fatalf("the broker got %v", up.sent)
	}
}

// readLimiter refuses every read (ActionSubscribe) and counts them.
type readLimiter struct{ reads int }

func (l *readLimiter) Allow(_ bridge.Identity, a bridge.Action) error {
	if a != bridge.ActionSubscribe {
		return nil
	}
	l.reads++
	return &bridge.Error{Code: bridge.ECodeRateLimited, Message: "read less"}
}

// Reads take from the identity's read budget: a last value, a list page
// (whether the filter is allowed whole or in part) and a connection.
func TestReadsAreRateLimited(t *testing.T) {
	lim := &readLimiter{}
	b, _ := newLimited(t, bridge.Config{Authorizer: acl.ACL{}, Limiter: lim})
	b.Ingest(bridge.Message{Topic: "users/alice/a", Payload: []byte("v")})
	ctx := context.Background()
	alice := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"users/alice/#"}}}
	_, errLast := b.Last(ctx, alice, "users/alice/a")
	_, _, errList := b.List(ctx, alice, "users/alice/#", "", 10)
	_, _, errPart := b.List(ctx, alice, "users/#", "", 10)
	_, errConn := b.Connect(alice)
	for name, err := range map[string]error{"last": errLast, "list": errList, "list in part": errPart, "connect": errConn} {
		if bridge.ErrorCode(err) != bridge.ECodeRateLimited {
			t.Errorf("%s: %v, want rate_limited", name, err)
		}
	}
	if lim.reads != 4 {
		t.Errorf("%d reads taken, want 4", lim.reads)
	}
	// A refused read takes nothing.
	if _, err := b.Last(ctx, alice, "users/bob/a"); bridge.ErrorCode(err) != bridge.ECodeForbidden || lim.reads != 4 {
		t.Errorf("a forbidden read: %v, %d reads taken", err, lim.reads)
	}
}

// Cursors made by concurrent first calls are all good: the bridge makes
// one key, not one per call.
func TestListCursorsConcurrentFirstCalls(t *testing.T) {
	b, _ := newLimited(t, bridge.Config{})
	for i := range 3 {
		b.Ingest(bridge.Message{Topic: fmt.Sprintf("a/%d", i), Payload: []byte("v")})
	}
	ctx := context.Background()
	cursors := make([]string, 16)
	var wg sync.WaitGroup
	for i := range cursors {
		wg.Go(func() {
			_, next, err := b.List(ctx, bridge.Identity{}, "a/+", "", 1)
			if err != nil {
				t.Error(err)
			}
			cursors[i] = next
		})
	}
	wg.Wait()
	for i, c := range cursors {
		if msgs, _, err := b.List(ctx, bridge.Identity{}, "a/+", c, 1); err != nil || len(msgs) != 1 || msgs[0].Topic != "a/1" {
			t.Errorf("cursor %d: %v %v", i, msgs, err)
		}
	}
}
