package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

// Groups is the Redis bridge.Groups: a consumer group named after the
// group on the history stream {P}history (XREADGROUP, XACK, XAUTOCLAIM),
// and per group two more streams: {P}group:<group>:dead, the dead-letter
// list, and {P}group:<group>:replay, the replay queue. Their entries have
// the fields of a history entry (the message) plus msg_id, attempts,
// error and failed_at (Unix ms). Every instance of a fleet that shares the
// store shares the groups.
type Groups struct{ s *Store }

var _ bridge.Groups = (*Groups)(nil)

// NewGroups returns the consumer groups of s.
func NewGroups(s *Store) *Groups { return &Groups{s: s} }

func (g *Groups) deadKey(group string) string   { return g.s.tag + "group:" + group + ":dead" }
func (g *Groups) replayKey(group string) string { return g.s.tag + "group:" + group + ":replay" }

// groupError maps Redis' NOGROUP to an invalid request, anything else to
// unavailable.
func groupError(group string, err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "there is no group %q", group)
	}
	return unavailable(err)
}

// CreateGroup runs XGROUP CREATE ... $ MKSTREAM; an existing group
// (BUSYGROUP) is left as it is.
func (g *Groups) CreateGroup(ctx context.Context, group string) error {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = g.s.client.XGroupCreateMkStream(ctx, g.s.history, group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return unavailable(err)
	}
	return nil
}

// readGroupScript reads new entries for a consumer without blocking, and
// says whether entries the group had not read were trimmed: its
// last-delivered-id is older than the stream's max-deleted-entry-id. When
// nothing is left to read it moves the group past the trimmed entries, so
// that the loss is reported once.
//
// KEYS: 1 history stream. ARGV: 1 group, 2 consumer, 3 count. Returns
// {lost (0/1), entries}.
var readGroupScript = redis.NewScript(`
local function parse(s)
  local dash = string.find(s, '-', 1, true)
  return tonumber(string.sub(s, 1, dash - 1)), tonumber(string.sub(s, dash + 1))
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOGROUP no such group')
end
local delivered
for _, gr in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #gr, 2 do
    if gr[i] == 'name' then name = gr[i + 1] end
    if gr[i] == 'last-delivered-id' then last = gr[i + 1] end
  end
  if name == ARGV[1] then delivered = last end
end
if not delivered then
  return redis.error_reply('NOGROUP no such group')
end
local trimmed = '0-0'
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then trimmed = info[i + 1] end
end
local lost = less(delivered, trimmed)
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
local entries = {}
if r and r[1] then entries = r[1][2] end
if lost and #entries == 0 then
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], trimmed)
end
return {lost and 1 or 0, entries}
`)

// ReadGroup reads with the script above and, when it finds nothing and
// block > 0, waits with XREADGROUP BLOCK.
func (g *Groups) ReadGroup(ctx context.Context, group, consumer string, count int, block time.Duration) ([]bridge.Message, bool, error) {
	if err := storeutil.CheckGroupNames(group, consumer); err != nil {
		return nil, false, err
	}
	if err := storeutil.CheckCount(count); err != nil {
		return nil, false, err
	}
	msgs, lost, err := g.readNow(ctx, group, consumer, count)
	if err != nil || len(msgs) > 0 || lost || block <= 0 {
		return msgs, lost, err
	}
	if g.s.closed.Load() {
		return nil, false, storeutil.ErrClosed
	}
	bctx, cancel := context.WithTimeout(ctx, block+g.s.timeout)
	defer cancel()
	res, err := g.s.client.XReadGroup(bctx, &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{g.s.history, ">"},
		Count: int64(count), Block: block,
	}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, groupError(group, err)
	}
	for _, st := range res {
		for _, e := range st.Messages {
			m, err := decodeXMessage(e)
			if err != nil {
				return nil, false, err
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, false, nil
}

func (g *Groups) readNow(ctx context.Context, group, consumer string, count int) ([]bridge.Message, bool, error) {
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer cancel()
	res, err := readGroupScript.Run(ctx, g.s.client, []string{g.s.history}, group, consumer, count).Slice()
	if err != nil {
		return nil, false, groupError(group, err)
	}
	if len(res) != 2 {
		return nil, false, bridge.Errorf(bridge.ECodeInternal, "unexpected answer from Redis reading group %q", group)
	}
	lost, _ := res[0].(int64)
	entries, _ := res[1].([]any)
	msgs, err := decodeEntries(entries)
	return msgs, lost == 1, err
}

func decodeEntries(entries []any) ([]bridge.Message, error) {
	msgs := make([]bridge.Message, 0, len(entries))
	for _, raw := range entries {
		m, err := decodeEntry(raw)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// Claim runs XAUTOCLAIM from the start of the pending list until it has
// count messages or has scanned the whole list.
func (g *Groups) Claim(ctx context.Context, group, consumer string, minIdle time.Duration, count int) ([]bridge.Message, int, error) {
	if err := storeutil.CheckGroupNames(group, consumer); err != nil {
		return nil, 0, err
	}
	if err := storeutil.CheckCount(count); err != nil {
		return nil, 0, err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	var (
		msgs  []bridge.Message
		gone  int
		start = "0-0"
	)
	for {
		res, err := g.s.client.Do(ctx, "XAUTOCLAIM", g.s.history, group, consumer,
			minIdle.Milliseconds(), start, "COUNT", count-len(msgs)).Slice()
		if err != nil {
			return nil, 0, groupError(group, err)
		}
		if len(res) < 2 {
			return nil, 0, bridge.Errorf(bridge.ECodeInternal, "unexpected answer from Redis to XAUTOCLAIM")
		}
		next, _ := res[0].(string)
		entries, _ := res[1].([]any)
		got, err := decodeEntries(entries)
		if err != nil {
			return nil, 0, err
		}
		msgs = append(msgs, got...)
		if len(res) > 2 {
			deleted, _ := res[2].([]any)
			gone += len(deleted)
		}
		if next == "0-0" || next == "" || len(msgs) >= count {
			return msgs, gone, nil
		}
		start = next
	}
}

// Pending is the count of XPENDING's summary.
func (g *Groups) Pending(ctx context.Context, group string) (int, error) {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return 0, err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	p, err := g.s.client.XPending(ctx, g.s.history, group).Result()
	if err != nil {
		return 0, groupError(group, err)
	}
	return int(p.Count), nil
}

// Ack runs XACK.
func (g *Groups) Ack(ctx context.Context, group string, ids ...string) error {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return err
	}
	if err := checkIDs(ids); err != nil || len(ids) == 0 {
		return err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := g.s.client.XAck(ctx, g.s.history, group, ids...).Err(); err != nil {
		return groupError(group, err)
	}
	return nil
}

func checkIDs(ids []string) error {
	for _, id := range ids {
		if _, err := storeutil.ParseID(id); err != nil {
			return err
		}
	}
	return nil
}

// deadFields are the fields of a dead-letter or replay entry, in order.
var deadFields = []string{"msg_id", "topic", "payload", "qos", "retain", "props", "received_at", "attempts", "error", "failed_at"}

func deadArgs(dl bridge.DeadLetter) ([]any, error) {
	props, err := encodeProps(dl.Message.Properties)
	if err != nil {
		return nil, err
	}
	m := dl.Message
	return []any{"msg_id", m.ID, "topic", m.Topic, "payload", m.Payload, "qos", strconv.Itoa(int(m.QoS)),
		"retain", boolField(m.Retain), "props", props, "received_at", strconv.FormatInt(m.ReceivedAt.UnixMilli(), 10),
		"attempts", strconv.Itoa(dl.Attempts), "error", dl.Error, "failed_at", strconv.FormatInt(dl.FailedAt.UnixMilli(), 10)}, nil
}

func decodeDead(id string, values map[string]any) (bridge.DeadLetter, error) {
	f := make([]string, len(deadFields))
	for i, name := range deadFields {
		s, ok := values[name].(string)
		if !ok {
			return bridge.DeadLetter{}, bridge.Errorf(bridge.ECodeInternal, "corrupt dead letter %s in Redis: no field %s", id, name)
		}
		f[i] = s
	}
	// The message fields, in valueFields order: id, payload, qos, retain,
	// props, received_at.
	m, err := decodeFields(f[1], []string{f[0], f[2], f[3], f[4], f[5], f[6]})
	if err != nil {
		return bridge.DeadLetter{}, err
	}
	attempts, err1 := strconv.Atoi(f[7])
	failed, err2 := strconv.ParseInt(f[9], 10, 64)
	if err1 != nil || err2 != nil {
		return bridge.DeadLetter{}, bridge.Errorf(bridge.ECodeInternal, "corrupt dead letter %s in Redis", id)
	}
	return bridge.DeadLetter{ID: id, Message: m, Attempts: attempts, Error: f[8], FailedAt: time.UnixMilli(failed)}, nil
}

// deadLetterScript acknowledges the message and appends the dead letter.
//
// KEYS: 1 history, 2 dead list. ARGV: 1 group, 2 message id, 3 max
// entries, 4.. the fields and values.
var deadLetterScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', unpack(ARGV, 4))
`)

// DeadLetter runs the script above.
func (g *Groups) DeadLetter(ctx context.Context, group string, dl bridge.DeadLetter, max int) (bridge.DeadLetter, error) {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return bridge.DeadLetter{}, err
	}
	if _, err := storeutil.ParseID(dl.Message.ID); err != nil {
		return bridge.DeadLetter{}, err
	}
	fields, err := deadArgs(dl)
	if err != nil {
		return bridge.DeadLetter{}, err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return bridge.DeadLetter{}, err
	}
	defer cancel()
	args := append([]any{group, dl.Message.ID, maxEntries(max)}, fields...)
	id, err := deadLetterScript.Run(ctx, g.s.client, []string{g.s.history, g.deadKey(group)}, args...).Text()
	if err != nil {
		return bridge.DeadLetter{}, groupError(group, err)
	}
	dl.ID = id
	dl.Message.ReceivedAt = time.UnixMilli(dl.Message.ReceivedAt.UnixMilli())
	dl.FailedAt = time.UnixMilli(dl.FailedAt.UnixMilli())
	return dl, nil
}

func maxEntries(max int) int {
	if max <= 0 {
		return 1 << 30
	}
	return max
}

// DeadLetters reads a page with XRANGE.
func (g *Groups) DeadLetters(ctx context.Context, group, after string, limit int) ([]bridge.DeadLetter, string, error) {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return nil, "", err
	}
	if err := storeutil.CheckCount(limit); err != nil {
		return nil, "", err
	}
	from := "-"
	if after != "" {
		if _, err := storeutil.ParseID(after); err != nil {
			return nil, "", err
		}
		from = "(" + after
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return nil, "", err
	}
	defer cancel()
	res, err := g.s.client.XRangeN(ctx, g.deadKey(group), from, "+", int64(limit)+1).Result()
	if err != nil {
		return nil, "", unavailable(err)
	}
	next := ""
	if len(res) > limit {
		res = res[:limit]
		next = res[limit-1].ID
	}
	out := make([]bridge.DeadLetter, 0, len(res))
	for _, e := range res {
		dl, err := decodeDead(e.ID, e.Values)
		if err != nil {
			return nil, "", err
		}
		out = append(out, dl)
	}
	return out, next, nil
}

// replayScript moves dead letters (the ids in ARGV, or all) to the replay
// queue.
//
// KEYS: 1 dead list, 2 replay queue. ARGV: the ids. Returns the count.
var replayScript = redis.NewScript(`
local entries = {}
if #ARGV == 0 then
  entries = redis.call('XRANGE', KEYS[1], '-', '+')
else
  for _, id in ipairs(ARGV) do
    local r = redis.call('XRANGE', KEYS[1], id, id)
    if r[1] then table.insert(entries, r[1]) end
  end
end
for _, e in ipairs(entries) do
  redis.call('XADD', KEYS[2], '*', unpack(e[2]))
  redis.call('XDEL', KEYS[1], e[1])
end
return #entries
`)

// Replay runs the script above.
func (g *Groups) Replay(ctx context.Context, group string, ids []string) (int, error) {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return 0, err
	}
	if err := checkIDs(ids); err != nil {
		return 0, err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	n, err := replayScript.Run(ctx, g.s.client, []string{g.deadKey(group), g.replayKey(group)}, args...).Int()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// Replays reads the oldest entries of the replay queue with XRANGE.
func (g *Groups) Replays(ctx context.Context, group string, count int) ([]bridge.DeadLetter, error) {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return nil, err
	}
	if err := storeutil.CheckCount(count); err != nil {
		return nil, err
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	res, err := g.s.client.XRangeN(ctx, g.replayKey(group), "-", "+", int64(count)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]bridge.DeadLetter, 0, len(res))
	for _, e := range res {
		dl, err := decodeDead(e.ID, e.Values)
		if err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// replayDoneScript removes a replay entry and, with fields given, appends
// a dead letter.
//
// KEYS: 1 replay queue, 2 dead list. ARGV: 1 the replay id, 2 max
// entries, 3.. the dead letter's fields and values (none: it succeeded).
var replayDoneScript = redis.NewScript(`
redis.call('XDEL', KEYS[1], ARGV[1])
if #ARGV > 2 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', unpack(ARGV, 3))
end
return 1
`)

// ReplayDone runs the script above.
func (g *Groups) ReplayDone(ctx context.Context, group, id string, failed *bridge.DeadLetter, max int) error {
	if err := storeutil.CheckGroupNames(group); err != nil {
		return err
	}
	if _, err := storeutil.ParseID(id); err != nil {
		return err
	}
	args := []any{id, maxEntries(max)}
	if failed != nil {
		fields, err := deadArgs(*failed)
		if err != nil {
			return err
		}
		args = append(args, fields...)
	}
	ctx, cancel, err := g.s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := replayDoneScript.Run(ctx, g.s.client, []string{g.replayKey(group), g.deadKey(group)}, args...).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}
