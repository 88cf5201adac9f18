package redisstore

import (
	"context"
	"crypto/rand"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
)

var _ bridge.SharedSecrets = (*Store)(nil)

// secretLen is the length of a shared secret, in bytes.
const secretLen = 32

// SharedSecret returns the secret {P}secret:<name>, storing 32 random
// bytes there first when it does not exist (SET NX GET: one step, so
// every instance of a fleet gets the bytes of the first one). The key has
// no TTL.
func (s *Store) SharedSecret(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	fresh := make([]byte, secretLen)
	_, _ = rand.Read(fresh) // crypto/rand.Read never fails
	old, err := s.client.SetArgs(ctx, s.tag+"secret:"+name, fresh, redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return fresh, nil // this call stored it
	case err != nil:
		return nil, unavailable(err)
	case len(old) != secretLen:
		return nil, &bridge.Error{Code: bridge.ECodeInternal, Message: "the shared secret " + name + " in Redis is not 32 bytes long"}
	}
	return []byte(old), nil
}
