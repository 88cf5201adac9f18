package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	// HistorySize is how many messages the history stream keeps, at most.
	// Default 10000.
	HistorySize int
	// HistoryAge is how long the history keeps a message, counted from its
	// id's millisecond (Redis' clock); at least 1ms. Default 1h.
	HistoryAge time.Duration
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
	histMax string // HistorySize, for the put script
	histAge string // HistoryAge in ms, for the put script
	tag     string // "{" + KeyPrefix + "}"
	index   string // the topic index key
	history string // the history stream key
	seq     string // the history's sequence counter key
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
	size, age, err := storeutil.HistoryWindow(cfg.HistorySize, cfg.HistoryAge)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	tag := "{" + cfg.KeyPrefix + "}"
	return &Store{
		client:  client,
		timeout: cfg.Timeout,
		histMax: strconv.Itoa(size),
		histAge: strconv.FormatInt(age.Milliseconds(), 10),
		tag:     tag,
		index:   tag + "topics",
		history: tag + "history",
		seq:     tag + "history:seq",
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

// putScript appends messages to the history stream, which assigns their
// ids, writes (or deletes) each one's last value and index entry, in order,
// and trims the history to its window once, all in one step. A batch of
// messages costs one call, one Lua invocation and one trim.
//
// Trimming is exact: the script finds the newest entry to drop (the
// oldest beyond the size, or the newest whose millisecond is older than
// the newest id's by more than the age), drops every entry up to it with
// XTRIM MINID, and records it as the stream's max-deleted-entry-id with
// XSETID, which trimming alone leaves unchanged (only XDEL sets it; checked
// with Redis 7.0, and redis/redis#11188, which proposed otherwise, was
// closed unmerged).
//
// Every entry gets, in its field n, its sequence number: the counter
// {P}history:seq grows by the batch's size (INCRBY), and the batch's
// entries take the numbers after the counter's old value, in order. A tail
// that reads an entry whose n is not one more than the last one it read
// knows that the entries between them were trimmed, and how many.
//
// KEYS: 1 history stream, 2 topic index, 3 the ingest lease whose holder
// alone may write (any key when ARGV[1] is not "1"), 4 the sequence
// counter, 5.. the last value hash of each message.
// ARGV: 1 "1" to check the lease, 2 the lease token, 3 history size,
// 4 history age (ms), then 8 per message: topic, "1" to delete, payload,
// qos, retain, props, received_at (ms), expires_at (ms, "" for never).
// Returns the ids, in order.
var putScript = redis.NewScript(`
if ARGV[1] == '1' and redis.call('GET', KEYS[3]) ~= ARGV[2] then
  return redis.error_reply('FENCED the ingest lease is held by another instance')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids, count = {}, (#ARGV - 4) / 8
local seq = redis.call('INCRBY', KEYS[4], count) - count
for i = 0, count - 1 do
  local a, key = 4 + 8 * i, KEYS[5 + i]
  local id = redis.call('XADD', KEYS[1], '*', 'topic', ARGV[a + 1], 'payload', ARGV[a + 3],
    'qos', ARGV[a + 4], 'retain', ARGV[a + 5], 'props', ARGV[a + 6], 'received_at', ARGV[a + 7],
    'n', string.format('%.0f', seq + i + 1))
  ids[i + 1] = id
  redis.call('DEL', key)
  if ARGV[a + 2] == '1' or (ARGV[a + 8] ~= '' and tonumber(ARGV[a + 8]) <= now) then
    redis.call('ZREM', KEYS[2], ARGV[a + 1])
  else
    redis.call('HSET', key, 'id', id, 'payload', ARGV[a + 3], 'qos', ARGV[a + 4],
      'retain', ARGV[a + 5], 'props', ARGV[a + 6], 'received_at', ARGV[a + 7])
    if ARGV[a + 8] ~= '' then
      redis.call('PEXPIREAT', key, ARGV[a + 8])
    end
    redis.call('ZADD', KEYS[2], 0, ARGV[a + 1])
  end
end

local function parse(s)
  local dash = string.find(s, '-', 1, true)
  return tonumber(string.sub(s, 1, dash - 1)), tonumber(string.sub(s, dash + 1))
end
local drop -- the newest entry to trim, if any
local size = tonumber(ARGV[3])
local over = redis.call('XLEN', KEYS[1]) - size
if over > size then -- HistorySize was lowered: read the shorter end
  local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', size + 1)
  drop = r[#r][1]
elseif over > 0 then
  local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', over)
  drop = r[#r][1]
end
-- Entries of a millisecond below minms are too old. Look for one only when
-- the oldest entry that stays is: XREVRANGE that finds nothing is slow.
local minms = parse(ids[#ids]) - tonumber(ARGV[4])
if minms > 0 then
  local r = redis.call('XRANGE', KEYS[1], drop and '(' .. drop or '-', '+', 'COUNT', 1)
  if r[1] and parse(r[1][1]) < minms then
    drop = redis.call('XREVRANGE', KEYS[1], string.format('(%.0f-0', minms), '-', 'COUNT', 1)[1][1]
  end
end
if drop then
  local dms, dseq = parse(drop)
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', dms, dseq + 1))
  redis.call('XSETID', KEYS[1], ids[#ids], 'MAXDELETEDID', drop)
end
return ids
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
	out, err := s.PutBatch(ctx, []bridge.Message{msg}, "", "")
	if err != nil {
		return bridge.Message{}, err
	}
	return out[0], nil
}

// PutBatch records msgs, in order, in one atomic step, as Put would one
// after the other, and returns them with their ids. With lease not "", it
// records nothing and returns bridge.ErrFenced unless token holds the
// lease.
func (s *Store) PutBatch(ctx context.Context, msgs []bridge.Message, lease, token string) ([]bridge.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	now := time.Now()
	out := make([]bridge.Message, len(msgs))
	keys := make([]string, 4, 4+len(msgs))
	keys[0], keys[1], keys[2], keys[3] = s.history, s.index, s.index, s.seq
	args := make([]any, 4, 4+8*len(msgs))
	args[0], args[1], args[2], args[3] = "0", token, s.histMax, s.histAge
	if lease != "" {
		keys[2], args[0] = s.leaseKey(lease), "1"
	}
	for i, msg := range msgs {
		m, err := storeutil.PreparePut(msg, now)
		if err != nil {
			return nil, err
		}
		props, err := encodeProps(m.Properties)
		if err != nil {
			return nil, err
		}
		del, expiresAt := "0", ""
		if m.IsDelete() {
			del = "1"
		}
		if at, ok := m.ExpiresAt(); ok {
			expiresAt = strconv.FormatInt(at.UnixMilli(), 10)
		}
		out[i] = m
		keys = append(keys, s.valueKey(m.Topic))
		args = append(args, m.Topic, del, m.Payload, strconv.Itoa(int(m.QoS)), boolField(m.Retain), props,
			strconv.FormatInt(m.ReceivedAt.UnixMilli(), 10), expiresAt)
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ids, err := putScript.Run(ctx, s.client, keys, args...).StringSlice()
	if err != nil {
		if strings.HasPrefix(err.Error(), "FENCED") {
			return nil, bridge.ErrFenced
		}
		return nil, unavailable(err)
	}
	if len(ids) != len(out) {
		return nil, bridge.Errorf(bridge.ECodeInternal, "the put script returned %d ids for %d messages", len(ids), len(out))
	}
	for i := range out {
		out[i].ID = ids[i]
	}
	return out, nil
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

// afterScript reads a page of the history and, in the same step, the
// newest id trimmed from it, so that a trim cannot slip in between.
//
// KEYS: 1 history stream. ARGV: 1 the first id to read, 2 the most entries
// to read. Returns {max-deleted-entry-id, entries}.
var afterScript = redis.NewScript(`#!lua flags=no-writes
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'0-0', {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local trimmed
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then
    trimmed = info[i + 1]
  end
end
return {trimmed, redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}
`)

// lastIDScript returns the history stream's last-generated-id, "0-0" when
// there is no stream.
//
// KEYS: 1 history stream.
var lastIDScript = redis.NewScript(`#!lua flags=no-writes
if redis.call('EXISTS', KEYS[1]) == 0 then
  return '0-0'
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    return info[i + 1]
  end
end
`)

// After returns up to limit (1..1000) unexpired messages of the history
// with an id above after, oldest first, or an error with code gap when
// after is older than the newest id trimmed from the history.
//
// It reads the stream in batches, starting with limit entries and doubling
// up to 1000, until it has limit unexpired messages or reaches the end;
// every batch checks the trim mark again, so a trim between two batches
// is a gap, not a hole.
func (s *Store) After(ctx context.Context, after string, limit int) ([]bridge.Message, error) {
	from, err := storeutil.CheckAfter(after, limit)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var (
		pos   = from // the last id read
		msgs  []bridge.Message
		now   = time.Now()
		batch = limit
	)
	for {
		start, ok := pos.Succ()
		if !ok { // no id can follow the largest one
			return msgs, nil
		}
		res, err := afterScript.Run(ctx, s.client, []string{s.history}, start.String(), batch).Slice()
		if err != nil {
			return nil, unavailable(err)
		}
		trimmed, entries, err := decodeAfter(res)
		if err != nil {
			return nil, err
		}
		if pos.Less(trimmed) {
			return nil, storeutil.Gap(from, trimmed)
		}
		for _, raw := range entries {
			m, err := decodeEntry(raw)
			if err != nil {
				return nil, err
			}
			if pos, err = storeutil.ParseID(m.ID); err != nil {
				return nil, corruptEntry(m.ID, "bad id")
			}
			if m.Expired(now) {
				continue
			}
			msgs = append(msgs, m)
			if len(msgs) == limit {
				return msgs, nil
			}
		}
		if len(entries) < batch {
			return msgs, nil
		}
		batch = min(2*batch, storeutil.MaxLimit)
	}
}

// decodeAfter splits the answer of afterScript.
func decodeAfter(res []any) (trimmed storeutil.ID, entries []any, err error) {
	if len(res) == 2 {
		mark, isString := res[0].(string)
		entries, isList := res[1].([]any)
		if isString && isList {
			if trimmed, err = storeutil.ParseID(mark); err == nil {
				return trimmed, entries, nil
			}
		}
	}
	return storeutil.ID{}, nil, bridge.Errorf(bridge.ECodeInternal, "unexpected answer from Redis reading the history")
}

// LastID returns the newest id the history stream assigned, "0-0" when
// none.
func (s *Store) LastID(ctx context.Context) (string, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	id, err := lastIDScript.Run(ctx, s.client, []string{s.history}).Text()
	if err != nil {
		return "", unavailable(err)
	}
	return id, nil
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
