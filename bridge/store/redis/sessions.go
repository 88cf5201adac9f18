package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
)

var _ bridge.Sessions = (*Sessions)(nil)

// Sessions keeps WebSocket sessions in Redis, one JSON value per session
// under {P}session:<id> with the session's TTL, so that a client resumes
// on any instance of the fleet.
type Sessions struct{ s *Store }

// Sessions returns the session store that shares this Store's client and
// key prefix.
func (s *Store) Sessions() *Sessions { return &Sessions{s} }

func (ss *Sessions) key(id string) string { return ss.s.tag + "session:" + id }

type storedSession struct {
	Subs    map[string]byte  `json:"subs"`
	Pending []bridge.Message `json:"pending,omitempty"`
}

// Save stores the session for ttl.
func (ss *Sessions) Save(ctx context.Context, s bridge.Session, ttl time.Duration) error {
	b, err := json.Marshal(storedSession{Subs: s.Subscriptions, Pending: s.Pending})
	if err != nil {
		return err
	}
	ctx, cancel, err := ss.s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := ss.s.client.Set(ctx, ss.key(s.ID), b, ttl).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Take returns the session and deletes it (GETDEL), so that one connection
// resumes it.
func (ss *Sessions) Take(ctx context.Context, id string) (bridge.Session, error) {
	ctx, cancel, err := ss.s.begin(ctx)
	if err != nil {
		return bridge.Session{}, err
	}
	defer cancel()
	b, err := ss.s.client.GetDel(ctx, ss.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return bridge.Session{}, bridge.ErrNotFound
	}
	if err != nil {
		return bridge.Session{}, unavailable(err)
	}
	var st storedSession
	if err := json.Unmarshal(b, &st); err != nil {
		return bridge.Session{}, bridge.ErrNotFound
	}
	return bridge.Session{ID: id, Subscriptions: st.Subs, Pending: st.Pending}, nil
}
