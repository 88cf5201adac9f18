package memory

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

var _ bridge.AlarmStore = (*Store)(nil)

// alarms is the memory bridge.AlarmStore's state.
type alarms struct {
	mu      sync.Mutex
	byID    map[string]*bridge.Alarm
	open    map[string]bool   // ids of the open alarms
	topics  map[string]string // topic → id of its open alarm
	closed  []closedAlarm     // in the order they closed
	applied string
}

type closedAlarm struct {
	id string
	at time.Time
}

// alarmsLocked returns the alarm state, created on first use, locked.
func (s *Store) alarmsLocked() (*alarms, error) {
	s.mu.Lock()
	closed := s.closed
	if s.alarms == nil {
		s.alarms = &alarms{byID: map[string]*bridge.Alarm{}, open: map[string]bool{}, topics: map[string]string{}}
	}
	a := s.alarms
	s.mu.Unlock()
	if closed {
		return nil, storeutil.ErrClosed
	}
	a.mu.Lock()
	return a, nil
}

// Alarm returns the alarm with this id.
func (s *Store) Alarm(_ context.Context, id string) (bridge.Alarm, error) {
	al, err := s.alarmsLocked()
	if err != nil {
		return bridge.Alarm{}, err
	}
	defer al.mu.Unlock()
	al.expire(s.now())
	a, ok := al.byID[id]
	if !ok {
		return bridge.Alarm{}, bridge.Errorf(bridge.ECodeNotFound, "there is no alarm %q", id)
	}
	return a.Clone(), nil
}

// OpenAlarms returns open alarms older than before, newest first.
func (s *Store) OpenAlarms(_ context.Context, before string, limit int) ([]bridge.Alarm, error) {
	if err := storeutil.CheckLimit(limit); err != nil {
		return nil, err
	}
	if before != "" {
		if _, _, err := bridge.ParseID(before); err != nil {
			return nil, err
		}
	}
	al, err := s.alarmsLocked()
	if err != nil {
		return nil, err
	}
	defer al.mu.Unlock()
	ids := make([]string, 0, len(al.open))
	for id := range al.open {
		if before == "" || storeutil.CompareIDs(id, before) < 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return storeutil.CompareIDs(b, a) })
	out := make([]bridge.Alarm, 0, min(limit, len(ids)))
	for _, id := range ids[:min(limit, len(ids))] {
		out = append(out, al.byID[id].Clone())
	}
	return out, nil
}

// UpdateAlarm reads, transforms and writes an alarm under one lock.
func (s *Store) UpdateAlarm(_ context.Context, key bridge.AlarmKey, fn func(*bridge.Alarm) (*bridge.Alarm, error)) (bridge.Alarm, bool, error) {
	if err := storeutil.CheckAlarmKey(key); err != nil {
		return bridge.Alarm{}, false, err
	}
	al, err := s.alarmsLocked()
	if err != nil {
		return bridge.Alarm{}, false, err
	}
	defer al.mu.Unlock()
	now := s.now()
	al.expire(now)
	if key.Applied != "" && al.applied != "" && storeutil.CompareIDs(key.Applied, al.applied) <= 0 {
		return bridge.Alarm{}, false, nil
	}
	id := key.ID
	if id == "" {
		id = al.topics[key.Topic]
	}
	var cur *bridge.Alarm
	if a, ok := al.byID[id]; ok {
		c := a.Clone()
		cur = &c
	}
	next, err := fn(cur)
	if err != nil {
		return bridge.Alarm{}, false, err
	}
	if next != nil && next.Open() && !al.open[next.ID] && len(al.open) >= bridge.MaxOpenAlarms {
		return bridge.Alarm{}, false, storeutil.ErrTooManyAlarms
	}
	if key.Applied != "" {
		al.applied = key.Applied
	}
	if next == nil {
		return bridge.Alarm{}, false, nil
	}
	a := next.Clone()
	al.byID[a.ID] = &a
	if a.Open() {
		al.open[a.ID] = true
		al.topics[a.Topic] = a.ID
	} else if al.open[a.ID] {
		delete(al.open, a.ID)
		if al.topics[a.Topic] == a.ID {
			delete(al.topics, a.Topic)
		}
		al.closed = append(al.closed, closedAlarm{a.ID, now})
	}
	return a.Clone(), true, nil
}

// expire drops the alarms closed longer than the retention ago; al.mu is
// held.
func (al *alarms) expire(now time.Time) {
	n := 0
	for n < len(al.closed) && now.Sub(al.closed[n].at) > bridge.ClosedAlarmRetention {
		if a, ok := al.byID[al.closed[n].id]; ok && !a.Open() {
			delete(al.byID, al.closed[n].id)
		}
		n++
	}
	if n > 0 {
		al.closed = slices.Delete(al.closed, 0, n)
	}
}

// AlarmsApplied is the newest message applied.
func (s *Store) AlarmsApplied(context.Context) (string, error) {
	al, err := s.alarmsLocked()
	if err != nil {
		return "", err
	}
	defer al.mu.Unlock()
	return al.applied, nil
}

// SetAlarmsApplied moves the applied position forward to id.
func (s *Store) SetAlarmsApplied(_ context.Context, id string) error {
	if _, _, err := bridge.ParseID(id); err != nil {
		return err
	}
	al, err := s.alarmsLocked()
	if err != nil {
		return err
	}
	defer al.mu.Unlock()
	if al.applied == "" || storeutil.CompareIDs(id, al.applied) > 0 {
		al.applied = id
	}
	return nil
}
