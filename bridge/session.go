package bridge

import (
	"context"
	"time"
)

// Session is what a WebSocket client leaves behind when its connection
// ends, so that a new connection (to any instance, with a shared store) can
// take over: its subscriptions and its unacknowledged QoS 1 messages.
type Session struct {
	ID string
	// Subscriptions maps each filter to its QoS (0 or 1).
	Subscriptions map[string]byte
	// Pending are the QoS 1 deliveries not yet acknowledged, oldest first.
	Pending []Message
}

// Sessions keeps sessions between connections. Implementations: memory and
// Redis.
type Sessions interface {
	// Save stores s until ttl has passed, replacing a session of the same id.
	Save(ctx context.Context, s Session, ttl time.Duration) error
	// Take returns the session and removes it, so that only one connection
	// resumes it; ErrNotFound when there is none (or it expired).
	Take(ctx context.Context, id string) (Session, error)
}

// NoSessions keeps no session: every connection starts afresh.
type NoSessions struct{}

func (NoSessions) Save(context.Context, Session, time.Duration) error { return nil }
func (NoSessions) Take(context.Context, string) (Session, error)      { return Session{}, ErrNotFound }

// Resume takes over the session a WebSocket client left behind
// (Sessions.Take): only one connection resumes a session, on any instance
// that shares the store. ErrNotFound when there is none (or it expired).
func (b *Bridge) Resume(ctx context.Context, sessionID string) (Session, error) {
	return b.cfg.Sessions.Take(ctx, sessionID)
}

// Checkpoint keeps what a WebSocket client leaves behind for ttl, for a
// later connection to Resume, replacing an earlier checkpoint of the
// session.
func (b *Bridge) Checkpoint(ctx context.Context, s Session, ttl time.Duration) error {
	return b.cfg.Sessions.Save(ctx, s, ttl)
}
