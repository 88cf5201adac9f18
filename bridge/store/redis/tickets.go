package redisstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
)

var _ bridge.Tickets = (*Tickets)(nil)

// Tickets keeps one-time tickets in Redis, so that a ticket issued by one
// instance of the fleet is redeemed at any, exactly once: {P}ticket:<hex
// SHA-256 of the ticket> holds the identity (JSON) with the ticket's TTL,
// and {P}tickets:<identity key> is a sorted set of that identity's
// outstanding ticket hashes scored by their expiry (Redis' clock, ms),
// which bounds them per identity across the fleet.
type Tickets struct{ s *Store }

// Tickets returns the ticket store that shares this Store's client and key
// prefix.
func (s *Store) Tickets() *Tickets { return &Tickets{s} }

func (ts *Tickets) key(hash [32]byte) string {
	return ts.s.tag + "ticket:" + hex.EncodeToString(hash[:])
}

// outstandingKey may hold any byte of the identity's key: only the first
// {...} of a key is its hash tag.
func (ts *Tickets) outstandingKey(id bridge.Identity) string { return ts.s.tag + "tickets:" + id.Key() }

// storedIdentity is the JSON of a ticket's identity.
type storedIdentity struct {
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Issuer   string        `json:"issuer,omitempty"`
	ClientID string        `json:"client_id,omitempty"`
	Rules    *bridge.Rules `json:"rules,omitempty"`
	Expires  time.Time     `json:"expires,omitzero"`
}

// issueScript drops the identity's expired tickets from its set, refuses
// when limit remain, and else stores the ticket and adds it to the set, whose
// own TTL follows its newest ticket.
//
// KEYS: 1 the ticket, 2 the identity's set. ARGV: 1 the identity (JSON),
// 2 TTL (ms), 3 limit, 4 the ticket's hash (hex).
// Returns -1 when stored, else the ms until the oldest ticket expires.
var issueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) - now)
end
local exp = now + tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], exp, ARGV[4])
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], newest[2])
return -1
`)

// Issue stores id under hash for ttl (at least 1 ms), at most limit per
// identity across every instance sharing the key prefix.
func (ts *Tickets) Issue(ctx context.Context, hash [32]byte, id bridge.Identity, ttl time.Duration, limit int) error {
	b, err := json.Marshal(storedIdentity{Name: id.Name, Kind: id.Kind, Issuer: id.Issuer, ClientID: id.ClientID, Rules: id.Rules, Expires: id.Expires})
	if err != nil {
		return err
	}
	ctx, cancel, err := ts.s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	ms := max(1, ttl.Milliseconds())
	wait, err := issueScript.Run(ctx, ts.s.client, []string{ts.key(hash), ts.outstandingKey(id)},
		b, strconv.FormatInt(ms, 10), strconv.Itoa(limit), hex.EncodeToString(hash[:])).Int64()
	if err != nil {
		return unavailable(err)
	}
	if wait >= 0 {
		return bridge.TooManyTickets(limit, time.Duration(wait)*time.Millisecond)
	}
	return nil
}

// Take returns the ticket's identity and deletes the ticket in one step
// (GETDEL), so that one caller gets it. It then removes the ticket from
// its identity's set; should that fail, the set counts it until it
// expires.
func (ts *Tickets) Take(ctx context.Context, hash [32]byte) (bridge.Identity, error) {
	ctx, cancel, err := ts.s.begin(ctx)
	if err != nil {
		return bridge.Identity{}, err
	}
	defer cancel()
	b, err := ts.s.client.GetDel(ctx, ts.key(hash)).Bytes()
	if errors.Is(err, redis.Nil) {
		return bridge.Identity{}, bridge.ErrNotFound
	}
	if err != nil {
		return bridge.Identity{}, unavailable(err)
	}
	var st storedIdentity
	if err := json.Unmarshal(b, &st); err != nil || st.Name == "" {
		return bridge.Identity{}, bridge.ErrNotFound
	}
	id := bridge.Identity{Name: st.Name, Kind: st.Kind, Issuer: st.Issuer, ClientID: st.ClientID, Rules: st.Rules, Expires: st.Expires}
	_ = ts.s.client.ZRem(ctx, ts.outstandingKey(id), hex.EncodeToString(hash[:])).Err()
	return id, nil
}
