package redisstore

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

func TestTicketsConformance(t *testing.T) {
	storetest.RunTickets(t, func(t *testing.T) bridge.Tickets {
		return newTestStore(t, Config{}).Tickets()
	})
}

// TestTicketsUnavailable: while Redis is down, issuing and redeeming fail
// with store_unavailable (a 503), not "unknown ticket".
func TestTicketsUnavailable(t *testing.T) {
	c, err := NewClient("redis://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(c, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ts := s.Tickets()
	requireUnavailable(t, "Issue", ts.Issue(t.Context(), [32]byte{1}, bridge.Identity{Name: "a", Kind: bridge.KindAPIKey}, time.Minute, 10))
	_, err = ts.Take(t.Context(), [32]byte{1})
	requireUnavailable(t, "Take", err)
}

// TestTicketKeys: the ticket is stored under the hex SHA-256 it was issued
// with, never as itself, with its TTL; the identity's set expires with it.
func TestTicketKeys(t *testing.T) {
	s := newTestStore(t, Config{})
	tk := "mbt_secret"
	h := sha256.Sum256([]byte(tk))
	id := bridge.Identity{Name: "alice", Kind: bridge.KindJWT, Issuer: "https://idp/"}
	if err := s.Tickets().Issue(t.Context(), h, id, 30*time.Second, 10); err != nil {
		t.Fatal(err)
	}
	keys, err := keysUnder(t.Context(), s.client, strings.TrimSuffix(strings.TrimPrefix(s.tag, "{"), "}"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{s.tag + "ticket:" + hex.EncodeToString(h[:]), s.tag + "tickets:" + id.Key()}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	for _, k := range keys {
		if ttl := s.client.PTTL(t.Context(), k).Val(); ttl <= 0 || ttl > 30*time.Second {
			t.Errorf("%s: TTL %v, want in (0, 30s]", k, ttl)
		}
	}
	v := s.client.Get(t.Context(), want[0]).Val()
	if strings.Contains(v, tk) || !strings.Contains(v, `"name":"alice"`) || !strings.Contains(v, `"kind":"jwt"`) {
		t.Errorf("stored value %s", v)
	}
}
