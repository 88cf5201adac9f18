package memory

import (
	"context"
	"strconv"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

var (
	_ bridge.Leases      = (*Store)(nil)
	_ bridge.FencedStore = (*Store)(nil)
)

type lease struct {
	token   string
	expires time.Time
}

// holds reports whether token holds the lease name at now; s.mu is held.
func (s *Store) holds(name, token string, now time.Time) bool {
	l, ok := s.leases[name]
	return ok && l.token == token && now.Before(l.expires)
}

// Acquire takes the lease name for ttl when it is free or expired.
func (s *Store) Acquire(_ context.Context, name string, ttl time.Duration) (string, bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", false, storeutil.ErrClosed
	}
	if l, ok := s.leases[name]; ok && now.Before(l.expires) {
		return "", false, nil
	}
	if s.leases == nil {
		s.leases = map[string]lease{}
	}
	s.fence++
	token := strconv.FormatUint(s.fence, 10)
	s.leases[name] = lease{token: token, expires: now.Add(ttl)}
	return token, true, nil
}

// Renew extends the lease if token holds it.
func (s *Store) Renew(_ context.Context, name, token string, ttl time.Duration) (bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, storeutil.ErrClosed
	}
	if !s.holds(name, token, now) {
		return false, nil
	}
	s.leases[name] = lease{token: token, expires: now.Add(ttl)}
	return true, nil
}

// Release frees the lease if token holds it.
func (s *Store) Release(_ context.Context, name, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[name]; ok && l.token == token {
		delete(s.leases, name)
	}
	return nil
}

// PutFenced is Put, refused with bridge.ErrFenced unless token holds the
// lease name.
func (s *Store) PutFenced(_ context.Context, msg bridge.Message, name, token string) (bridge.Message, error) {
	return s.put(msg, name, token)
}
