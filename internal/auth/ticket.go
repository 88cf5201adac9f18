package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// TicketPrefix starts every ticket.
const TicketPrefix = "mbt_"

// tickets are one-time credentials kept in memory, by their SHA-256.
type tickets struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]ticket
}

type ticket struct {
	id      bridge.Identity
	expires time.Time
}

func newTickets(ttl time.Duration, max int, now func() time.Time) *tickets {
	return &tickets{ttl: ttl, max: max, now: now, m: map[[32]byte]ticket{}}
}

func (t *tickets) issue(id bridge.Identity) (string, time.Time, error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := TicketPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := t.now()
	exp := now.Add(t.ttl)
	if !id.Expires.IsZero() && id.Expires.Before(exp) {
		exp = id.Expires
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		for k, v := range t.m {
			if !now.Before(v.expires) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= t.max {
			return "", time.Time{}, &bridge.Error{Code: bridge.ECodeRateLimited, RetryAfter: t.ttl, Message: "too many tickets outstanding; try again later"}
		}
	}
	t.m[sha256.Sum256([]byte(tok))] = ticket{id: id, expires: exp}
	return tok, exp, nil
}

// redeem returns the ticket's identity once; a used, unknown or expired
// ticket is unauthorized.
func (t *tickets) redeem(tok string) (bridge.Identity, error) {
	k := sha256.Sum256([]byte(tok))
	t.mu.Lock()
	tk, ok := t.m[k]
	delete(t.m, k)
	t.mu.Unlock()
	if !ok || !t.now().Before(tk.expires) {
		return bridge.Identity{}, unauthorized("the ticket is unknown, used or expired; get a new one with POST /v1/tickets")
	}
	return tk.id, nil
}
