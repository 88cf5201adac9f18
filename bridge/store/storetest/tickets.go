package storetest

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// RunTickets runs the conformance suite of bridge.Tickets. newTickets
// returns a new, empty ticket store for one subtest and arranges its
// cleanup. Two subtests wait about 300 ms for tickets to expire.
func RunTickets(t *testing.T, newTickets func(t *testing.T) bridge.Tickets) {
	tests := []struct {
		name string
		fn   func(*testing.T, bridge.Tickets)
	}{
		{"RoundTrip", testTicketRoundTrip},
		{"Unknown", testTicketUnknown},
		{"OnceUnderConcurrency", testTicketOnce},
		{"Expiry", testTicketExpiry},
		{"PerIdentityBound", testTicketBound},
		{"BoundFreedByTakeAndExpiry", testTicketBoundFreed},
		{"BoundUnderConcurrency", testTicketBoundConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newTickets(t))
		})
	}
}

func newHash() [32]byte {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return sha256.Sum256(b[:])
}

func issue(t *testing.T, ts bridge.Tickets, id bridge.Identity, ttl time.Duration, limit int) [32]byte {
	t.Helper()
	h := newHash()
	if err := ts.Issue(t.Context(), h, id, ttl, limit); err != nil {
		t.Fatalf("Issue for %s: %v", id.Key(), err)
	}
	return h
}

func requireNoTicket(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("%s: error = %v, want bridge.ErrNotFound", what, err)
	}
}

func requireTooMany(t *testing.T, what string, err error, ttl time.Duration) {
	t.Helper()
	var e *bridge.Error
	if !errors.As(err, &e) || e.Code != bridge.ECodeRateLimited {
		t.Fatalf("%s: error = %v, want an *bridge.Error with code rate_limited", what, err)
	}
	if e.RetryAfter <= 0 || e.RetryAfter > ttl {
		t.Fatalf("%s: RetryAfter = %v, want in (0, %v]", what, e.RetryAfter, ttl)
	}
}

var alice = bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}

func testTicketRoundTrip(t *testing.T, ts bridge.Tickets) {
	exp := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	id := bridge.Identity{Name: "bob", Kind: bridge.KindJWT, Issuer: "https://idp.example/", ClientID: "tab-1",
		Rules: &bridge.Rules{Publish: []string{"a/%u"}, Subscribe: []string{"a/#", "b/+"}, Request: []string{"r/%c"}}, Expires: exp}
	h := issue(t, ts, id, time.Minute, 10)
	got, err := ts.Take(t.Context(), h)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	if got.Name != id.Name || got.Kind != id.Kind || got.Issuer != id.Issuer || got.ClientID != id.ClientID || !got.Expires.Equal(exp) {
		t.Errorf("Take = %+v, want %+v", got, id)
	}
	if got.Rules == nil || !slices.Equal(got.Rules.Publish, id.Rules.Publish) || !slices.Equal(got.Rules.Subscribe, id.Rules.Subscribe) ||
		!slices.Equal(got.Rules.Request, id.Rules.Request) {
		t.Errorf("Take: rules %+v, want %+v", got.Rules, id.Rules)
	}
	_, err = ts.Take(t.Context(), h)
	requireNoTicket(t, "second Take", err)

	// Without rules or expiry.
	h = issue(t, ts, alice, time.Minute, 10)
	got, err = ts.Take(t.Context(), h)
	if err != nil || got.Key() != alice.Key() || got.Rules != nil || !got.Expires.IsZero() {
		t.Fatalf("Take = %+v, %v; want %+v", got, err, alice)
	}
}

func testTicketUnknown(t *testing.T, ts bridge.Tickets) {
	_, err := ts.Take(t.Context(), newHash())
	requireNoTicket(t, "Take of an unknown ticket", err)
}

// N goroutines take the same ticket at once: exactly one gets it.
func testTicketOnce(t *testing.T, ts bridge.Tickets) {
	const tickets, takers = 10, 16
	for range tickets {
		h := issue(t, ts, alice, time.Minute, 100)
		var wins, misses atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range takers {
			wg.Go(func() {
				<-start
				id, err := ts.Take(t.Context(), h)
				switch {
				case err == nil && id.Key() == alice.Key():
					wins.Add(1)
				case errors.Is(err, bridge.ErrNotFound):
					misses.Add(1)
				default:
					t.Errorf("Take: %+v, %v", id, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || misses.Load() != takers-1 {
			t.Fatalf("%d takers: %d got the ticket, %d did not; want exactly 1", takers, wins.Load(), misses.Load())
		}
	}
}

func testTicketExpiry(t *testing.T, ts bridge.Tickets) {
	short := issue(t, ts, alice, 200*time.Millisecond, 10)
	long := issue(t, ts, alice, time.Minute, 10)
	time.Sleep(300 * time.Millisecond)
	_, err := ts.Take(t.Context(), short)
	requireNoTicket(t, "Take of an expired ticket", err)
	if _, err := ts.Take(t.Context(), long); err != nil {
		t.Fatalf("Take of a live ticket: %v", err)
	}
}

// An identity at its bound is refused; others, a namesake of another kind
// included, are not.
func testTicketBound(t *testing.T, ts bridge.Tickets) {
	const limit = 3
	for range limit {
		issue(t, ts, alice, time.Minute, limit)
	}
	err := ts.Issue(t.Context(), newHash(), alice, time.Minute, limit)
	requireTooMany(t, "Issue over the bound", err, time.Minute)
	bob := bridge.Identity{Name: "bob", Kind: bridge.KindAPIKey}
	jwtAlice := bridge.Identity{Name: "alice", Kind: bridge.KindJWT}
	otherIssuer := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey, Issuer: "x"}
	for _, other := range []bridge.Identity{bob, jwtAlice, otherIssuer} {
		for range limit {
			h := issue(t, ts, other, time.Minute, limit)
			if got, err := ts.Take(t.Context(), h); err != nil || got.Key() != other.Key() {
				t.Fatalf("Take for %s: %+v, %v", other.Key(), got, err)
			}
		}
	}
	// alice is still at her bound.
	err = ts.Issue(t.Context(), newHash(), alice, time.Minute, limit)
	requireTooMany(t, "Issue over the bound, again", err, time.Minute)
}

// A redeemed or expired ticket no longer counts.
func testTicketBoundFreed(t *testing.T, ts bridge.Tickets) {
	const limit = 2
	first := issue(t, ts, alice, time.Minute, limit)
	issue(t, ts, alice, 200*time.Millisecond, limit)
	requireTooMany(t, "Issue over the bound", ts.Issue(t.Context(), newHash(), alice, time.Minute, limit), time.Minute)
	if _, err := ts.Take(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	issue(t, ts, alice, time.Minute, limit) // in first's place
	requireTooMany(t, "Issue over the bound after a Take", ts.Issue(t.Context(), newHash(), alice, time.Minute, limit), time.Minute)
	time.Sleep(300 * time.Millisecond)
	issue(t, ts, alice, time.Minute, limit) // in the expired one's place
}

// Concurrent issues for one identity never exceed its bound.
func testTicketBoundConcurrent(t *testing.T, ts bridge.Tickets) {
	const limit, tries = 5, 40
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range tries {
		wg.Go(func() {
			<-start
			err := ts.Issue(t.Context(), newHash(), alice, time.Minute, limit)
			var e *bridge.Error
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &e) && e.Code == bridge.ECodeRateLimited:
				refused.Add(1)
			default:
				t.Errorf("Issue: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != limit || refused.Load() != tries-limit {
		t.Fatalf("%d concurrent issues with a bound of %d: %d issued, %d refused", tries, limit, ok.Load(), refused.Load())
	}
}
