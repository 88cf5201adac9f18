package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
)

var (
	_ bridge.Leases      = (*Store)(nil)
	_ bridge.FencedStore = (*Store)(nil)
	_ bridge.Tailer      = (*Store)(nil)
	_ bridge.Backlogger  = (*Store)(nil)
	_ bridge.BatchStore  = (*Store)(nil)
)

// leaseKey holds a lease's token, with the lease's TTL.
func (s *Store) leaseKey(name string) string { return s.tag + "lease:" + name }

// Acquire takes the lease with SET NX PX. The token starts with a number
// that grows with every grant of that lease ({P}fence:<name>), so tokens of
// successive holders are ordered, followed by random bytes.
func (s *Store) Acquire(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return "", false, err
	}
	defer cancel()
	n, err := s.client.Incr(ctx, s.tag+"fence:"+name).Result()
	if err != nil {
		return "", false, unavailable(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := strconv.FormatInt(n, 10) + "-" + hex.EncodeToString(b[:])
	ok, err := s.client.SetNX(ctx, s.leaseKey(name), token, ttl).Result()
	if err != nil {
		return "", false, unavailable(err)
	}
	if !ok {
		return "", false, nil
	}
	return token, true, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Renew extends the lease if token holds it.
func (s *Store) Renew(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	n, err := renewScript.Run(ctx, s.client, []string{s.leaseKey(name)}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}

// Release deletes the lease if token holds it.
func (s *Store) Release(ctx context.Context, name, token string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := releaseScript.Run(ctx, s.client, []string{s.leaseKey(name)}, token).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// PutFenced is Put, refused with bridge.ErrFenced unless token holds the
// lease name, checked in the same script that writes.
func (s *Store) PutFenced(ctx context.Context, msg bridge.Message, name, token string) (bridge.Message, error) {
	out, err := s.PutBatch(ctx, []bridge.Message{msg}, name, token)
	if err != nil {
		return bridge.Message{}, err
	}
	return out[0], nil
}

// tailBlock is how long one XREAD waits for new entries.
const tailBlock = time.Second

// Tail reads the history stream with XREAD BLOCK from after, calling fn
// with each batch, until ctx ends. A failed read is retried after a short
// pause from the last id delivered, so nothing is skipped while the
// entries are still in the stream.
func (s *Store) Tail(ctx context.Context, after string, fn func([]bridge.Message)) error {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, tailBlock+s.timeout)
		res, err := s.client.XRead(rctx, &redis.XReadArgs{
			Streams: []string{s.history, after},
			Count:   512,
			Block:   tailBlock,
		}).Result()
		cancel()
		switch {
		case errors.Is(err, redis.Nil):
			continue // nothing new within the block
		case err != nil:
			if ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(pause*2, 2*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
		for _, st := range res {
			msgs := make([]bridge.Message, 0, len(st.Messages))
			for _, e := range st.Messages {
				m, err := decodeXMessage(e)
				if err != nil {
					continue
				}
				msgs = append(msgs, m)
				after = e.ID
			}
			if len(msgs) > 0 {
				fn(msgs)
			}
		}
	}
	return ctx.Err()
}

// decodeXMessage turns an entry read with XREAD into a message.
func decodeXMessage(e redis.XMessage) (bridge.Message, error) {
	kv := make([]any, 0, 2*len(entryFields))
	for _, name := range entryFields {
		kv = append(kv, name, e.Values[name])
	}
	return decodeEntry([]any{e.ID, kv})
}

// backlogScript counts the history entries after ARGV[1] (exclusive; ""
// for all), up to ARGV[2], reading them in small chunks so that large
// payloads never pile up in the script's memory, and returns the count and
// the received_at of the first of them ("" when none).
//
// KEYS: 1 history stream.
var backlogScript = redis.NewScript(`
local limit = tonumber(ARGV[2])
local from = ARGV[1] == '' and '-' or '(' .. ARGV[1]
local n, first = 0, ''
while n < limit do
  local r = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', math.min(16, limit - n))
  if #r == 0 then break end
  if n == 0 then
    local f = r[1][2]
    for i = 1, #f - 1, 2 do
      if f[i] == 'received_at' then first = f[i + 1] end
    end
  end
  n = n + #r
  from = '(' .. r[#r][1]
end
return {n, first}
`)

// Backlog counts the messages recorded after the id after, up to limit,
// and returns the received_at of the oldest of them.
func (s *Store) Backlog(ctx context.Context, after string, limit int) (int, time.Time, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer cancel()
	res, err := backlogScript.Run(ctx, s.client, []string{s.history}, after, limit).Slice()
	if err != nil {
		return 0, time.Time{}, unavailable(err)
	}
	if len(res) != 2 {
		return 0, time.Time{}, bridge.Errorf(bridge.ECodeInternal, "backlog script: unexpected answer %v", res)
	}
	n, _ := res[0].(int64)
	first, _ := res[1].(string)
	var oldest time.Time
	if ms, err := strconv.ParseInt(first, 10, 64); err == nil && n > 0 {
		oldest = time.UnixMilli(ms)
	}
	return int(n), oldest, nil
}
