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
