package bridge

import (
	"context"
	"fmt"
	"time"
)

// Tickets keeps one-time tickets: short-lived credentials a browser trades
// its API key or JWT for (POST /v1/tickets) to open a WebSocket or an SSE
// stream with ?access_token=. A ticket is known only by its SHA-256, and
// opens one connection, at any instance that shares the store.
// Implementations: memory (one instance) and Redis (the fleet); both pass
// storetest.RunTickets.
type Tickets interface {
	// Issue stores id under hash for ttl, unless id.Key() already has limit
	// tickets outstanding (issued, not taken, not expired): then it returns
	// TooManyTickets, whatever other identities hold.
	Issue(ctx context.Context, hash [32]byte, id Identity, ttl time.Duration, limit int) error
	// Take returns the identity stored under hash and removes it, so that
	// of any number of concurrent callers (at any instance) exactly one
	// gets it; ErrNotFound when there is none: unknown, taken or expired.
	Take(ctx context.Context, hash [32]byte) (Identity, error)
}

// TooManyTickets is the refusal of Tickets.Issue: the identity holds limit
// tickets already; retryAfter is when its oldest one expires.
func TooManyTickets(limit int, retryAfter time.Duration) *Error {
	return &Error{Code: ECodeRateLimited, RetryAfter: retryAfter,
		Message: fmt.Sprintf("this identity already holds %d unused tickets, the most it may; use them, or retry in %s", limit, retryAfter.Round(time.Millisecond))}
}
