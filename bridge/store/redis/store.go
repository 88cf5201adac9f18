package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// KeyPrefix starts every key, inside a Cluster hash tag: the keys are
	// "{" + KeyPrefix + "}" + suffix (see the package documentation). It
	// must not contain '{' or '}'. Default "mqttbridge:".
	KeyPrefix string
	// Timeout bounds each method call, all its round trips included.
	// Default 2 s.
	Timeout time.Duration
}

// Defaults for Config.
const (
	DefaultKeyPrefix = "mqttbridge:"
	DefaultTimeout   = 2 * time.Second
)

// List bounds its work: one call reads at most listScanFactor*limit +
// listScanExtra index entries, in batches of at least listMinBatch.
const (
	listScanFactor = 10
	listScanExtra  = 100
	listMinBatch   = 100
)

// Store is the Redis bridge.Store. It is safe for concurrent use, and any
// number of Stores (in any number of processes) with the same client
// configuration and KeyPrefix share one set of last values.
type Store struct {
	client  redis.UniversalClient
	timeout time.Duration
	tag     string // "{" + KeyPrefix + "}"
	index   string // the topic index key
	lastID  string // the last id key
	closed  atomic.Bool
}

var _ bridge.Store = (*Store)(nil)

// New returns a Store that keeps its data in Redis through client. It does
// not contact Redis, so it succeeds while Redis is down. The Store does not
// own the client: close the client after the Store.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil Redis client")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(cfg.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redisstore: KeyPrefix %q must not contain '{' or '}'", cfg.KeyPrefix)
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("redisstore: negative Timeout %v", cfg.Timeout)
	}
	tag := "{" + cfg.KeyPrefix + "}"
	return &Store{
		client:  client,
		timeout: cfg.Timeout,
		tag:     tag,
		index:   tag + "topics",
		lastID:  tag + "lastid",
	}, nil
}

// valueKey is the key of the hash holding the last value of a topic.
func (s *Store) valueKey(name string) string { return s.tag + "lv:" + name }

// errUnavailable is the *bridge.Error every Redis failure wraps.
var errUnavailable = &bridge.Error{Code: bridge.ECodeStoreUnavailable, Message: "Redis did not answer"}

// unavailable wraps a Redis error so that errors.As finds errUnavailable and
// errors.Is still finds the cause.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", errUnavailable, err)
}

// begin checks that the store is open and bounds the call with the timeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, storeutil.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// putScript assigns the id and writes (or deletes) the last value and its
// index entry in one step.
//
// KEYS: 1 last id, 2 topic index, 3 last value hash.
// ARGV: 1 topic, 2 "1" to delete, 3 payload, 4 qos, 5 retain, 6 props,
// 7 received_at (ms), 8 expires_at (ms, "" for never).
var putScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local last = redis.call('GET', KEYS[1])
if last then
  local dash = string.find(last, '-', 1, true)
  local lms = tonumber(string.sub(last, 1, dash - 1))
  if ms <= lms then
    ms = lms
    seq = tonumber(string.sub(last, dash + 1)) + 1
  end
end
local id = string.format('%.0f-%.0f', ms, seq)
redis.call('SET', KEYS[1], id)
redis.call('DEL', KEYS[3])
if ARGV[2] == '1' or (ARGV[8] ~= '' and tonumber(ARGV[8]) <= now) then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[3], 'id', id, 'payload', ARGV[3], 'qos', ARGV[4],
    'retain', ARGV[5], 'props', ARGV[6], 'received_at', ARGV[7])
  if ARGV[8] ~= '' then
    redis.call('PEXPIREAT', KEYS[3], ARGV[8])
  end
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
return id
`)

// pruneScript removes index entries whose last value is gone, checking
// each in the script so that a concurrent Put is never undone.
//
// KEYS: 1 topic index, 2.. last value hashes. ARGV: the topics of KEYS[2..].
var pruneScript = redis.NewScript(`
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return n
`)

// Put records msg and returns it with its ID. A retained message with an
// empty payload deletes the topic's last value; any other message replaces
// it. ReceivedAt is kept (at millisecond precision) when set, else set to
// the local time now.
func (s *Store) Put(ctx context.Context, msg bridge.Message) (bridge.Message, error) {
	m, err := storeutil.PreparePut(msg, time.Now())
	if err != nil {
		return bridge.Message{}, err
	}
	props, err := encodeProps(m.Properties)
	if err != nil {
		return bridge.Message{}, err
	}
	del, expiresAt := "0", ""
	if m.IsDelete() {
		del = "1"
	}
	if at, ok := m.ExpiresAt(); ok {
		expiresAt = fmt.Sprint(at.UnixMilli())
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return bridge.Message{}, err
	}
	defer cancel()
	id, err := putScript.Run(ctx, s.client,
		[]string{s.lastID, s.index, s.valueKey(m.Topic)},
		m.Topic, del, m.Payload, fmt.Sprint(m.QoS), boolField(m.Retain), props,
		fmt.Sprint(m.ReceivedAt.UnixMilli()), expiresAt,
	).Text()
	if err != nil {
		return bridge.Message{}, unavailable(err)
	}
	m.ID = id
	return m, nil
}

// Get returns the unexpired last value of the topic name, or
// bridge.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (bridge.Message, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return bridge.Message{}, err
	}
	defer cancel()
	vals, err := s.client.HMGet(ctx, s.valueKey(name), valueFields...).Result()
	if errors.Is(err, redis.Nil) {
		return bridge.Message{}, bridge.ErrNotFound
	}
	if err != nil {
		return bridge.Message{}, unavailable(err)
	}
	m, ok, err := decodeValue(name, vals)
	if err != nil {
		return bridge.Message{}, err
	}
	if !ok || m.Expired(time.Now()) {
		return bridge.Message{}, bridge.ErrNotFound
	}
	return m, nil
}

// Delete removes the last value of the topic name, if there is one.
func (s *Store) Delete(ctx context.Context, name string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.valueKey(name))
		p.ZRem(ctx, s.index, name)
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// List returns the unexpired last values of the topics matching filter, in
// byte order of topic name, starting after the topic name after, at most
// limit (1..1000) of them.
//
// One call reads at most 10*limit+100 index entries, so a page may be short
// (even empty) while next is not "": keep calling with after = next until
// next is "". next is also non-empty after a full page when more topics may
// follow; the page after it may then be empty.
func (s *Store) List(ctx context.Context, filter, after string, limit int) ([]bridge.Message, string, error) {
	prefix, err := storeutil.CheckList(filter, limit)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, "", err
	}
	defer cancel()

	lo, hi := "-", "+"
	if prefix != "" {
		lo = "[" + prefix
	}
	if after != "" && after >= prefix {
		lo = "(" + after
	}
	if end, ok := storeutil.PrefixEnd(prefix); ok {
		hi = "(" + end
	}
	var (
		msgs   []bridge.Message
		gone   []string // index entries without a live hash
		now    = time.Now()
		budget = listScanFactor*limit + listScanExtra
	)
	defer func() { s.prune(ctx, gone) }()
	for budget > 0 {
		n := min(budget, max(limit-len(msgs), listMinBatch))
		names, err := s.client.ZRangeByLex(ctx, s.index, &redis.ZRangeBy{Min: lo, Max: hi, Count: int64(n)}).Result()
		if err != nil {
			return nil, "", unavailable(err)
		}
		budget -= len(names)
		more := len(names) == n // the range may hold more entries
		if len(names) == 0 {
			break
		}
		last := names[len(names)-1]
		lo = "(" + last

		cands := make([]string, 0, len(names))
		for _, name := range names {
			if topic.Match(filter, name) {
				cands = append(cands, name)
			}
		}
		for len(cands) > 0 {
			chunk := cands[:min(len(cands), limit-len(msgs))]
			cands = cands[len(chunk):]
			got, err := s.fetch(ctx, chunk)
			if err != nil {
				return nil, "", err
			}
			for i, m := range got {
				if m == nil || m.Expired(now) {
					gone = append(gone, chunk[i])
					continue
				}
				msgs = append(msgs, *m)
				if len(msgs) == limit {
					next := ""
					if chunk[i] != last || more {
						next = chunk[i]
					}
					return msgs, next, nil
				}
			}
		}
		if !more {
			return msgs, "", nil
		}
		if budget <= 0 {
			return msgs, last, nil
		}
	}
	return msgs, "", nil
}

// fetch reads the last values of names in one pipeline; an entry is nil
// where the hash is gone.
func (s *Store) fetch(ctx context.Context, names []string) ([]*bridge.Message, error) {
	cmds := make([]*redis.SliceCmd, len(names))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			cmds[i] = p.HMGet(ctx, s.valueKey(name), valueFields...)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]*bridge.Message, len(names))
	for i, cmd := range cmds {
		m, ok, err := decodeValue(names[i], cmd.Val())
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = &m
		}
	}
	return out, nil
}

// prune removes the index entries of names whose hash is really gone. It
// is best effort: a failure leaves them for the next List.
func (s *Store) prune(ctx context.Context, names []string) {
	if len(names) == 0 || ctx.Err() != nil {
		return
	}
	keys := make([]string, 0, len(names)+1)
	keys = append(keys, s.index)
	args := make([]any, len(names))
	for i, name := range names {
		keys = append(keys, s.valueKey(name))
		args[i] = name
	}
	_ = pruneScript.Run(ctx, s.client, keys, args...).Err()
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Close marks the Store closed: afterwards every method returns an error
// with code store_unavailable. It does not close the client, which the
// caller owns, and leaves the data in Redis. It is safe to call twice.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}
