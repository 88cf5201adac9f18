package memory

import (
	"context"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Sessions keeps WebSocket sessions in this process until their TTL.
type Sessions struct {
	mu   sync.Mutex
	m    map[string]sessionEntry
	now  func() time.Time
	puts int
}

type sessionEntry struct {
	s       bridge.Session
	expires time.Time
}

var _ bridge.Sessions = (*Sessions)(nil)

// NewSessions returns an empty session store.
func NewSessions() *Sessions {
	return &Sessions{m: map[string]sessionEntry{}, now: time.Now}
}

// Save stores s for ttl.
func (ss *Sessions) Save(_ context.Context, s bridge.Session, ttl time.Duration) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	ss.m[s.ID] = sessionEntry{s: cloneSession(s), expires: now.Add(ttl)}
	// Sweep expired sessions now and then, so abandoned ones do not pile up.
	if ss.puts++; ss.puts%256 == 0 {
		for id, e := range ss.m {
			if !now.Before(e.expires) {
				delete(ss.m, id)
			}
		}
	}
	return nil
}

// Take returns and removes the session.
func (ss *Sessions) Take(_ context.Context, id string) (bridge.Session, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	e, ok := ss.m[id]
	if !ok {
		return bridge.Session{}, bridge.ErrNotFound
	}
	delete(ss.m, id)
	if !ss.now().Before(e.expires) {
		return bridge.Session{}, bridge.ErrNotFound
	}
	return e.s, nil
}

func cloneSession(s bridge.Session) bridge.Session {
	subs := make(map[string]byte, len(s.Subscriptions))
	for k, v := range s.Subscriptions {
		subs[k] = v
	}
	s.Subscriptions = subs
	s.Pending = append([]bridge.Message(nil), s.Pending...)
	return s
}
