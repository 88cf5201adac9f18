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
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
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

// tailBlock is how long one XREAD waits for new entries; tailPage is the
// most entries one read of the tail returns.
const (
	tailBlock = time.Second
	tailPage  = 512
)

// tailScript reads the tail's next page: the entries after ARGV[1], and in
// the same step, when ARGV[1] is no longer in the stream (it was trimmed,
// or it is "0-0") or ARGV[3] is "1", the stream's max-deleted-entry-id,
// entries-added and length. Trimming drops the oldest entries, so while
// ARGV[1] is still there nothing after it was trimmed, and the stream info
// is needed only when it is not.
//
// KEYS: 1 history stream. ARGV: 1 the last id the tail read, 2 the most
// entries to return, 3 "1" to return the stream info anyway.
// Returns {entries} or {entries, {max-deleted-entry-id, entries-added,
// length}}.
var tailScript = redis.NewScript(`#!lua flags=no-writes
local limit = tonumber(ARGV[2])
local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', limit + 1)
local kept = r[1] ~= nil and r[1][1] == ARGV[1]
if kept then
  table.remove(r, 1)
elseif #r > limit then
  table.remove(r)
end
if kept and ARGV[3] ~= '1' then
  return {r}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {r, {'0-0', 0, 0}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local f = {}
for i = 1, #info, 2 do
  f[info[i]] = info[i + 1]
end
return {r, {f['max-deleted-entry-id'], f['entries-added'], f['length']}}
`)

// tailState is where a tail is: the last id it read; how many entries the
// stream had added up to it (entries-added then), -1 while unknown; and its
// sequence number (seqField), 0 while unknown.
type tailState struct {
	pos   storeutil.ID
	added int64
	seq   int64
}

// Tail reads the history stream from after, calling fn with each batch,
// until ctx ends. A failed read is retried after a short pause from the
// last id read.
//
// While the tail knows the sequence number of the last entry it read, one
// XREAD BLOCK both waits for and reads the next batch (tailNext): the
// entries the put script numbers follow each other, so an entry whose
// number is not the next one follows a hole, whose size is exact. Until it
// knows (after start, after an entry without a number: a stream written
// before entries were numbered), it waits with XREAD BLOCK and reads with
// tailScript (tailRead), which checks in the same step that the last id
// read is still in the stream; when it was trimmed and the stream's
// max-deleted-entry-id is newer, the entries between it and the oldest one
// left are lost. That count comes from the stream's entries-added, which
// numbers every entry ever added: the tail learns the number of its
// position the first time it reads up to the end of the stream
// (entries-added then), and adds what it reads. It is exact, unless the
// tail fell that far behind before it ever caught up: then it is at least
// 1. Either way Tail calls gap and continues from the oldest entry left.
func (s *Store) Tail(ctx context.Context, after string, fn func([]bridge.Message), gap func(bridge.Gap)) error {
	pos, err := storeutil.ParseID(after)
	if err != nil {
		return err
	}
	t := tailState{pos: pos, added: -1}
	pause := 100 * time.Millisecond
	wait := false // the tail has read everything: wait for more
	for ctx.Err() == nil {
		var err error
		switch {
		case t.seq > 0:
			wait = false // when tailNext stops early, tailRead goes on at once
			err = s.tailNext(ctx, &t, fn, gap)
		case wait:
			err = s.tailWait(ctx, t.pos)
			if err == nil {
				wait, err = s.tailRead(ctx, &t, fn, gap)
			}
		default:
			wait, err = s.tailRead(ctx, &t, fn, gap)
		}
		if errors.Is(err, redis.Nil) {
			continue // nothing new within the block
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wait = false
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			pause = min(pause*2, 2*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
	}
	return ctx.Err()
}

// tailWait waits up to tailBlock for an entry after pos; redis.Nil when
// none came.
func (s *Store) tailWait(ctx context.Context, pos storeutil.ID) error {
	_, err := s.xread(ctx, pos, 1)
	return err
}

// xread reads up to count entries after pos, waiting up to tailBlock for
// the first; redis.Nil when none came.
func (s *Store) xread(ctx context.Context, pos storeutil.ID, count int64) ([]redis.XStream, error) {
	ctx, cancel := context.WithTimeout(ctx, tailBlock+s.timeout)
	defer cancel()
	res, err := s.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{s.history, pos.String()},
		Count:   count,
		Block:   tailBlock,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		err = unavailable(err)
	}
	return res, err
}

// tailNext reads the next batch after t.pos with one XREAD BLOCK, and hands
// its messages to fn. An entry whose sequence number is more than one after
// t.seq follows a hole: tailNext reports the gap, exact, before it. At an
// entry without a number, or one not after t.seq (the counter started
// again), it stops, hands over what it read before and sets t.seq to 0:
// tailRead goes on from there. redis.Nil when nothing came within
// tailBlock.
func (s *Store) tailNext(ctx context.Context, t *tailState, fn func([]bridge.Message), gap func(bridge.Gap)) error {
	res, err := s.xread(ctx, t.pos, tailPage)
	if err != nil {
		return err
	}
	var msgs []bridge.Message
	defer func() {
		if len(msgs) > 0 {
			fn(msgs)
		}
	}()
	for _, st := range res {
		for _, e := range st.Messages {
			n := parseSeq(e.Values[seqField])
			if n <= t.seq {
				t.seq = 0
				return nil
			}
			pos, err := storeutil.ParseID(e.ID)
			if err != nil {
				return corruptEntry(e.ID, "bad id")
			}
			if lost := n - t.seq - 1; lost > 0 {
				if len(msgs) > 0 {
					fn(msgs)
					msgs = nil
				}
				gap(bridge.Gap{After: t.pos.String(), Next: e.ID, Lost: lost, Exact: true})
			}
			if t.added >= 0 {
				t.added += n - t.seq
			}
			t.pos, t.seq = pos, n
			if m, err := decodeXMessage(e); err == nil {
				msgs = append(msgs, m) // else skipped, but read
			}
		}
	}
	return nil
}

// tailRead reads the next page after t.pos with tailScript, reports a gap
// before it, and hands its messages to fn; t.seq becomes the sequence
// number of the last entry read (0 when it has none). done is true when the
// page reached the end of the stream.
func (s *Store) tailRead(ctx context.Context, t *tailState, fn func([]bridge.Message), gap func(bridge.Gap)) (done bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	info := "0"
	if t.added < 0 {
		info = "1"
	}
	res, err := tailScript.Run(ctx, s.client, []string{s.history}, t.pos.String(), tailPage, info).Slice()
	if err != nil {
		return false, unavailable(err)
	}
	entries, st, err := decodeTail(res)
	if err != nil {
		return false, err
	}
	done = len(entries) < tailPage
	if len(entries) == 0 {
		if st != nil && t.added < 0 && !t.pos.Less(st.trimmed) {
			t.added = st.added
		}
		return done, nil
	}
	from, first := t.pos, ""
	msgs := make([]bridge.Message, 0, len(entries))
	for _, raw := range entries {
		m, err := decodeEntry(raw)
		if err == nil {
			msgs = append(msgs, m)
		} else {
			m.ID = entryID(raw) // skipped, but read
		}
		pos, err := storeutil.ParseID(m.ID)
		if err != nil {
			return false, corruptEntry(m.ID, "bad id")
		}
		if first == "" {
			first = m.ID
		}
		t.pos, t.seq = pos, entrySeq(raw)
	}
	switch {
	case st != nil && !st.trimmed.Less(from):
		// Every entry up to from is gone (or none was ever trimmed, and
		// from is "0-0"), so the first one read is the stream's first,
		// number added-length+1; those between from and it are lost.
		if from.Less(st.trimmed) {
			g := bridge.Gap{After: from.String(), Next: first, Lost: 1}
			if n := st.added - st.length - t.added; t.added >= 0 && n > 0 {
				g.Lost, g.Exact = n, true
			}
			gap(g)
		}
		t.added = st.added - st.length + int64(len(entries))
	case st != nil && done:
		t.added = st.added // read up to the stream's last entry
	case t.added >= 0:
		t.added += int64(len(entries))
	}
	if len(msgs) > 0 {
		fn(msgs)
	}
	return done, nil
}

// tailInfo is the stream info tailScript returns.
type tailInfo struct {
	trimmed       storeutil.ID // max-deleted-entry-id
	added, length int64
}

// decodeTail splits the answer of tailScript; info is nil when the script
// did not read it.
func decodeTail(res []any) (entries []any, info *tailInfo, err error) {
	bad := bridge.Errorf(bridge.ECodeInternal, "unexpected answer from Redis tailing the history")
	if len(res) < 1 || len(res) > 2 {
		return nil, nil, bad
	}
	entries, ok := res[0].([]any)
	if !ok {
		return nil, nil, bad
	}
	if len(res) == 1 {
		return entries, nil, nil
	}
	f, ok := res[1].([]any)
	if !ok || len(f) != 3 {
		return nil, nil, bad
	}
	mark, _ := f[0].(string)
	info = &tailInfo{}
	info.added, ok = f[1].(int64)
	info.length, _ = f[2].(int64)
	if info.trimmed, err = storeutil.ParseID(mark); err != nil || !ok {
		return nil, nil, bad
	}
	return entries, info, nil
}

// entryID is the id of a raw entry that did not decode; "" when it has
// none.
func entryID(raw any) string {
	if e, ok := raw.([]any); ok && len(e) == 2 {
		id, _ := e[0].(string)
		return id
	}
	return ""
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
