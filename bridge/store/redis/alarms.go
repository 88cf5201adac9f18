package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

// The alarms (bridge.AlarmStore):
//
//	{P}alarm:<id>         string, the alarm as JSON; a closed one expires
//	                      after bridge.ClosedAlarmRetention.
//	{P}alarms:open        sorted set, all scores 0, members the SortKey of
//	                      each open alarm's id: newest first with
//	                      ZREVRANGEBYLEX.
//	{P}alarmtopic:<topic> string, the id of the topic's open alarm.
//	{P}alarms:applied     string, the SortKey of the newest message applied.
//	{P}alarms:events      stream, every alarm written (field alarm, the
//	                      JSON), about the newest alarmEvents: TailAlarms
//	                      reads it.
//
// UpdateAlarm is an optimistic transaction: WATCH the keys it read, then
// MULTI/EXEC the writes, again from the start when another writer came
// first.

var (
	_ bridge.AlarmStore  = (*Store)(nil)
	_ bridge.AlarmTailer = (*Store)(nil)
)

// alarmEvents is about how many transitions {P}alarms:events keeps: a tail
// that falls further behind misses some (a client that resumes gets the
// open alarms anyway).
const alarmEvents = 10000

func (s *Store) alarmKey(id string) string        { return s.tag + "alarm:" + id }
func (s *Store) alarmTopicKey(name string) string { return s.tag + "alarmtopic:" + name }
func (s *Store) alarmsOpenKey() string            { return s.tag + "alarms:open" }
func (s *Store) alarmsAppliedKey() string         { return s.tag + "alarms:applied" }
func (s *Store) alarmEventsKey() string           { return s.tag + "alarms:events" }

func decodeAlarm(raw string) (bridge.Alarm, error) {
	var a bridge.Alarm
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return bridge.Alarm{}, bridge.Errorf(bridge.ECodeInternal, "redisstore: a stored alarm is corrupt: %v", err)
	}
	return a, nil
}

// Alarm returns the alarm with this id.
func (s *Store) Alarm(ctx context.Context, id string) (bridge.Alarm, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return bridge.Alarm{}, err
	}
	defer cancel()
	raw, err := s.client.Get(ctx, s.alarmKey(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return bridge.Alarm{}, bridge.Errorf(bridge.ECodeNotFound, "there is no alarm %q", id)
	case err != nil:
		return bridge.Alarm{}, unavailable(err)
	}
	return decodeAlarm(raw)
}

// OpenAlarms returns open alarms older than before, newest first.
func (s *Store) OpenAlarms(ctx context.Context, before string, limit int) ([]bridge.Alarm, error) {
	if err := storeutil.CheckLimit(limit); err != nil {
		return nil, err
	}
	max := "+"
	if before != "" {
		if _, err := storeutil.ParseID(before); err != nil {
			return nil, err
		}
		max = "(" + storeutil.SortKey(before)
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	keys, err := s.client.ZRevRangeByLex(ctx, s.alarmsOpenKey(), &redis.ZRangeBy{Max: max, Min: "-", Count: int64(limit)}).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	if len(keys) == 0 {
		return []bridge.Alarm{}, nil
	}
	akeys := make([]string, len(keys))
	for i, k := range keys {
		id, err := storeutil.FromSortKey(k)
		if err != nil {
			return nil, bridge.Errorf(bridge.ECodeInternal, "redisstore: %v", err)
		}
		akeys[i] = s.alarmKey(id)
	}
	vals, err := s.client.MGet(ctx, akeys...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]bridge.Alarm, 0, len(vals))
	for _, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue // closed and expired since the ZREVRANGEBYLEX: not open any more
		}
		a, err := decodeAlarm(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// maxTxTries bounds the optimistic retries of one UpdateAlarm.
const maxTxTries = 100

// UpdateAlarm reads, transforms and writes an alarm in one transaction.
func (s *Store) UpdateAlarm(ctx context.Context, key bridge.AlarmKey, fn func(*bridge.Alarm) (*bridge.Alarm, error)) (bridge.Alarm, bool, error) {
	if err := storeutil.CheckAlarmKey(key); err != nil {
		return bridge.Alarm{}, false, err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return bridge.Alarm{}, false, err
	}
	defer cancel()
	var (
		out   bridge.Alarm
		wrote bool
		fnErr error
	)
	txf := func(tx *redis.Tx) error {
		out, wrote, fnErr = bridge.Alarm{}, false, nil
		if key.Applied != "" {
			applied, err := tx.Get(ctx, s.alarmsAppliedKey()).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if applied != "" && storeutil.SortKey(key.Applied) <= applied {
				return nil
			}
		}
		id := key.ID
		if id == "" {
			v, err := tx.Get(ctx, s.alarmTopicKey(key.Topic)).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			id = v
			if id != "" {
				if err := tx.Watch(ctx, s.alarmKey(id)).Err(); err != nil {
					return err
				}
			}
		}
		var cur *bridge.Alarm
		if id != "" {
			raw, err := tx.Get(ctx, s.alarmKey(id)).Result()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return err
			default:
				a, err := decodeAlarm(raw)
				if err != nil {
					return err
				}
				if key.ID != "" || a.Open() {
					cur = &a
				}
			}
		}
		wasOpen := cur != nil && cur.Open()
		next, err := fn(cur)
		if err != nil {
			fnErr = err
			return nil
		}
		var enc []byte
		if next != nil {
			if next.Open() && (cur == nil || cur.ID != next.ID || !wasOpen) {
				n, err := tx.ZCard(ctx, s.alarmsOpenKey()).Result()
				if err != nil {
					return err
				}
				if n >= bridge.MaxOpenAlarms {
					fnErr = storeutil.ErrTooManyAlarms
					return nil
				}
			}
			if enc, err = json.Marshal(next); err != nil {
				return bridge.Errorf(bridge.ECodeInternal, "redisstore: encoding an alarm: %v", err)
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if key.Applied != "" {
				p.Set(ctx, s.alarmsAppliedKey(), storeutil.SortKey(key.Applied), 0)
			}
			if next == nil {
				return nil
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.alarmEventsKey(), MaxLen: alarmEvents, Approx: true, Values: []string{"alarm", string(enc)}})
			if next.Open() {
				p.Set(ctx, s.alarmKey(next.ID), enc, 0)
				p.ZAdd(ctx, s.alarmsOpenKey(), redis.Z{Member: storeutil.SortKey(next.ID)})
				p.Set(ctx, s.alarmTopicKey(next.Topic), next.ID, 0)
				return nil
			}
			p.Set(ctx, s.alarmKey(next.ID), enc, bridge.ClosedAlarmRetention)
			p.ZRem(ctx, s.alarmsOpenKey(), storeutil.SortKey(next.ID))
			if wasOpen {
				p.Del(ctx, s.alarmTopicKey(next.Topic))
			}
			return nil
		})
		if err == nil && next != nil {
			out, wrote = *next, true
		}
		return err
	}
	watch := []string{s.alarmsAppliedKey()}
	if key.ID != "" {
		watch = []string{s.alarmKey(key.ID)}
	} else {
		watch = append(watch, s.alarmTopicKey(key.Topic))
	}
	for range maxTxTries {
		err := s.client.Watch(ctx, txf, watch...)
		switch {
		case errors.Is(err, redis.TxFailedErr):
			continue
		case err != nil:
			var be *bridge.Error
			if errors.As(err, &be) {
				return bridge.Alarm{}, false, err
			}
			return bridge.Alarm{}, false, unavailable(err)
		case fnErr != nil:
			return bridge.Alarm{}, false, fnErr
		}
		return out, wrote, nil
	}
	return bridge.Alarm{}, false, unavailable(errors.New("too many concurrent updates of one alarm"))
}

// AlarmsApplied is the newest message applied.
func (s *Store) AlarmsApplied(ctx context.Context) (string, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	v, err := s.client.Get(ctx, s.alarmsAppliedKey()).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		return "", unavailable(err)
	}
	id, err := storeutil.FromSortKey(v)
	if err != nil {
		return "", bridge.Errorf(bridge.ECodeInternal, "redisstore: %v", err)
	}
	return id, nil
}

// setAppliedScript sets KEYS[1] to ARGV[1] unless it holds a greater
// string (sort keys compare as ids do).
var setAppliedScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or ARGV[1] > cur then
	redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`)

// SetAlarmsApplied moves the applied position forward to id.
func (s *Store) SetAlarmsApplied(ctx context.Context, id string) error {
	if _, err := storeutil.ParseID(id); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := setAppliedScript.Run(ctx, s.client, []string{s.alarmsAppliedKey()}, storeutil.SortKey(id)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// TailAlarms reads {P}alarms:events from its end, calling fn with each
// batch, until ctx ends; a failed read is retried after a short pause from
// the last entry read.
func (s *Store) TailAlarms(ctx context.Context, fn func([]bridge.Alarm)) error {
	last := "" // the last entry read; "" until the end of the stream is known
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.tailAlarms(ctx, &last, fn)
		if err == nil || errors.Is(err, redis.Nil) {
			pause = 100 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(pause*2, 2*time.Second)
	}
	return ctx.Err()
}

// tailAlarms reads one batch after *last (finding the end of the stream
// first), waiting up to tailBlock for one.
func (s *Store) tailAlarms(ctx context.Context, last *string, fn func([]bridge.Alarm)) error {
	if s.closed.Load() {
		return storeutil.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, tailBlock+s.timeout)
	defer cancel()
	if *last == "" {
		es, err := s.client.XRevRangeN(ctx, s.alarmEventsKey(), "+", "-", 1).Result()
		if err != nil {
			return err
		}
		*last = "0-0"
		if len(es) > 0 {
			*last = es[0].ID
		}
	}
	res, err := s.client.XRead(ctx, &redis.XReadArgs{Streams: []string{s.alarmEventsKey(), *last}, Count: 100, Block: tailBlock}).Result()
	if err != nil {
		return err
	}
	var out []bridge.Alarm
	for _, st := range res {
		for _, e := range st.Messages {
			*last = e.ID
			raw, _ := e.Values["alarm"].(string)
			if a, err := decodeAlarm(raw); err == nil {
				out = append(out, a)
			}
		}
	}
	if len(out) > 0 {
		fn(out)
	}
	return nil
}
