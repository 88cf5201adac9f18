package memory

import (
	"context"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Tickets keeps one-time tickets in this process until they expire: a
// ticket is redeemed only at the instance that issued it (a fleet uses the
// Redis store's tickets).
type Tickets struct {
	now func() time.Time

	mu     sync.Mutex
	m      map[[32]byte]ticketEntry
	byID   map[string]map[[32]byte]time.Time // identity key -> its tickets' expiry
	issues int
}

type ticketEntry struct {
	id      bridge.Identity
	key     string // id.Key()
	expires time.Time
}

var _ bridge.Tickets = (*Tickets)(nil)

// NewTickets returns an empty ticket store.
func NewTickets() *Tickets {
	return &Tickets{now: time.Now, m: map[[32]byte]ticketEntry{}, byID: map[string]map[[32]byte]time.Time{}}
}

// Issue stores id under hash for ttl, at most limit per identity.
func (ts *Tickets) Issue(_ context.Context, hash [32]byte, id bridge.Identity, ttl time.Duration, limit int) error {
	now := ts.now()
	key := id.Key()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	// Sweep every identity's expired tickets now and then, so that tickets
	// never redeemed do not pile up.
	if ts.issues++; ts.issues%256 == 0 {
		for k := range ts.byID {
			ts.sweepLocked(k, now)
		}
	}
	mine := ts.byID[key]
	if len(mine) >= limit {
		ts.sweepLocked(key, now)
		mine = ts.byID[key]
	}
	if len(mine) >= limit {
		oldest := now.Add(ttl)
		for _, exp := range mine {
			if exp.Before(oldest) {
				oldest = exp
			}
		}
		return bridge.TooManyTickets(limit, oldest.Sub(now))
	}
	if mine == nil {
		mine = map[[32]byte]time.Time{}
		ts.byID[key] = mine
	}
	exp := now.Add(ttl)
	mine[hash] = exp
	ts.m[hash] = ticketEntry{id: id, key: key, expires: exp}
	return nil
}

// sweepLocked removes the expired tickets of one identity.
func (ts *Tickets) sweepLocked(key string, now time.Time) {
	for h, exp := range ts.byID[key] {
		if !now.Before(exp) {
			ts.removeLocked(h, key)
		}
	}
}

func (ts *Tickets) removeLocked(hash [32]byte, key string) {
	delete(ts.m, hash)
	delete(ts.byID[key], hash)
	if len(ts.byID[key]) == 0 {
		delete(ts.byID, key)
	}
}

// Take returns and removes the ticket's identity.
func (ts *Tickets) Take(_ context.Context, hash [32]byte) (bridge.Identity, error) {
	now := ts.now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	e, ok := ts.m[hash]
	if !ok {
		return bridge.Identity{}, bridge.ErrNotFound
	}
	ts.removeLocked(hash, e.key)
	if !now.Before(e.expires) {
		return bridge.Identity{}, bridge.ErrNotFound
	}
	return e.id, nil
}
