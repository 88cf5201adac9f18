package memory

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

// Groups is the in-memory bridge.Groups over a Store's history: the
// semantics of a Redis consumer group, for one process. It shares the
// Store's lock, so a group reads the history exactly as Put writes it.
type Groups struct {
	s      *Store
	groups map[string]*group // under s.mu
	lastDL storeutil.ID      // the newest dead-letter or replay id, under s.mu
}

var _ bridge.Groups = (*Groups)(nil)

type group struct {
	cursor  storeutil.ID // the newest message handed out
	pending []pendingEntry
	dead    []bridge.DeadLetter // ids increasing
	replay  []bridge.DeadLetter // ids increasing
}

// pendingEntry is a message handed out and not acknowledged; like Redis'
// pending entries list it holds the id only, and the message is read from
// the history again when it is claimed.
type pendingEntry struct {
	id       storeutil.ID
	consumer string
	at       time.Time // when it was handed out (or claimed)
}

// NewGroups returns the consumer groups of s; every call shares the same
// groups only if it shares the returned value, so make one per Store.
func NewGroups(s *Store) *Groups { return &Groups{s: s, groups: map[string]*group{}} }

// pollInterval is how often a blocked ReadGroup looks for new messages.
const pollInterval = 5 * time.Millisecond

// lock takes the store's lock and finds the group; the caller unlocks
// s.mu when err is nil.
func (g *Groups) lock(name string, create bool) (*group, error) {
	if err := storeutil.CheckGroupNames(name); err != nil {
		return nil, err
	}
	g.s.mu.Lock()
	if g.s.closed {
		g.s.mu.Unlock()
		return nil, storeutil.ErrClosed
	}
	gr := g.groups[name]
	if gr == nil && create {
		gr = &group{cursor: g.s.lastID}
		g.groups[name] = gr
	}
	if gr == nil {
		g.s.mu.Unlock()
		return nil, bridge.Errorf(bridge.ECodeInvalidRequest, "there is no group %q", name)
	}
	return gr, nil
}

// CreateGroup creates the group at the end of the history.
func (g *Groups) CreateGroup(_ context.Context, name string) error {
	if _, err := g.lock(name, true); err != nil {
		return err
	}
	g.s.mu.Unlock()
	return nil
}

// ReadGroup hands out the messages after the group's cursor.
func (g *Groups) ReadGroup(ctx context.Context, name, consumer string, count int, block time.Duration) ([]bridge.Message, bool, error) {
	if err := storeutil.CheckGroupNames(consumer); err != nil {
		return nil, false, err
	}
	if err := storeutil.CheckCount(count); err != nil {
		return nil, false, err
	}
	deadline := time.Now().Add(block)
	for {
		msgs, lost, err := g.read(name, consumer, count)
		if err != nil || len(msgs) > 0 || lost || !time.Now().Before(deadline) {
			return msgs, lost, err
		}
		t := time.NewTimer(min(pollInterval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		case <-t.C:
		}
	}
}

func (g *Groups) read(name, consumer string, count int) ([]bridge.Message, bool, error) {
	gr, err := g.lock(name, false)
	if err != nil {
		return nil, false, err
	}
	defer g.s.mu.Unlock()
	s := g.s
	lost := gr.cursor.Less(s.trimmed)
	n := s.hist.len()
	i := sort.Search(n, func(i int) bool { return gr.cursor.Less(s.hist.at(i).id) })
	now := s.now()
	var msgs []bridge.Message
	for ; i < n && len(msgs) < count; i++ {
		e := s.hist.at(i)
		msgs = append(msgs, storeutil.Clone(e.msg))
		gr.pending = append(gr.pending, pendingEntry{id: e.id, consumer: consumer, at: now})
		gr.cursor = e.id
	}
	if lost && len(msgs) == 0 {
		gr.cursor = s.trimmed // reported once
	}
	return msgs, lost, nil
}

// Claim takes over pending messages idle for at least minIdle.
func (g *Groups) Claim(_ context.Context, name, consumer string, minIdle time.Duration, count int) ([]bridge.Message, int, error) {
	if err := storeutil.CheckGroupNames(consumer); err != nil {
		return nil, 0, err
	}
	if err := storeutil.CheckCount(count); err != nil {
		return nil, 0, err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return nil, 0, err
	}
	defer g.s.mu.Unlock()
	s := g.s
	now := s.now()
	var (
		msgs []bridge.Message
		gone int
		keep = gr.pending[:0]
	)
	for _, p := range gr.pending {
		if len(msgs) < count && now.Sub(p.at) >= minIdle {
			m, ok := s.historyEntry(p.id)
			if !ok {
				gone++
				continue // left the history: removed
			}
			msgs = append(msgs, m)
			p.consumer, p.at = consumer, now
		}
		keep = append(keep, p)
	}
	clear(gr.pending[len(keep):])
	gr.pending = keep
	return msgs, gone, nil
}

// historyEntry finds a message of the history by id; s.mu is held.
func (s *Store) historyEntry(id storeutil.ID) (bridge.Message, bool) {
	n := s.hist.len()
	i := sort.Search(n, func(i int) bool { return !s.hist.at(i).id.Less(id) })
	if i < n && s.hist.at(i).id == id {
		return storeutil.Clone(s.hist.at(i).msg), true
	}
	return bridge.Message{}, false
}

// Pending counts the group's pending messages.
func (g *Groups) Pending(_ context.Context, name string) (int, error) {
	gr, err := g.lock(name, false)
	if err != nil {
		return 0, err
	}
	defer g.s.mu.Unlock()
	return len(gr.pending), nil
}

// Ack removes messages from the pending list.
func (g *Groups) Ack(_ context.Context, name string, ids ...string) error {
	parsed, err := parseIDs(ids)
	if err != nil {
		return err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return err
	}
	defer g.s.mu.Unlock()
	gr.ack(parsed)
	return nil
}

func (gr *group) ack(ids []storeutil.ID) {
	gr.pending = slices.DeleteFunc(gr.pending, func(p pendingEntry) bool { return slices.Contains(ids, p.id) })
}

func parseIDs(ids []string) ([]storeutil.ID, error) {
	out := make([]storeutil.ID, len(ids))
	for i, s := range ids {
		id, err := storeutil.ParseID(s)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

// nextDL assigns the next dead-letter or replay id; s.mu is held.
func (g *Groups) nextDL() string {
	g.lastDL = g.lastDL.Next(g.s.now().UnixMilli())
	return g.lastDL.String()
}

// DeadLetter records dl and acknowledges its message.
func (g *Groups) DeadLetter(_ context.Context, name string, dl bridge.DeadLetter, max int) (bridge.DeadLetter, error) {
	msgID, err := storeutil.ParseID(dl.Message.ID)
	if err != nil {
		return bridge.DeadLetter{}, err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return bridge.DeadLetter{}, err
	}
	defer g.s.mu.Unlock()
	gr.ack([]storeutil.ID{msgID})
	dl = cloneDL(dl)
	dl.ID = g.nextDL()
	gr.dead = appendBounded(gr.dead, dl, max)
	return cloneDL(dl), nil
}

func appendBounded(list []bridge.DeadLetter, dl bridge.DeadLetter, max int) []bridge.DeadLetter {
	list = append(list, dl)
	if max > 0 && len(list) > max {
		n := len(list) - max
		clear(list[:n])
		list = list[n:]
	}
	return list
}

func cloneDL(dl bridge.DeadLetter) bridge.DeadLetter {
	dl.Message = storeutil.Clone(dl.Message)
	dl.FailedAt = time.UnixMilli(dl.FailedAt.UnixMilli()) // as precise as Redis keeps it
	return dl
}

// DeadLetters returns a page of the dead-letter list.
func (g *Groups) DeadLetters(_ context.Context, name, after string, limit int) ([]bridge.DeadLetter, string, error) {
	if err := storeutil.CheckCount(limit); err != nil {
		return nil, "", err
	}
	var from storeutil.ID
	if after != "" {
		var err error
		if from, err = storeutil.ParseID(after); err != nil {
			return nil, "", err
		}
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return nil, "", err
	}
	defer g.s.mu.Unlock()
	var out []bridge.DeadLetter
	for i, dl := range gr.dead {
		id, _ := storeutil.ParseID(dl.ID)
		if !from.Less(id) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, cloneDL(gr.dead[i]))
	}
	return out, "", nil
}

// Replay moves dead letters to the replay queue.
func (g *Groups) Replay(_ context.Context, name string, ids []string) (int, error) {
	if _, err := parseIDs(ids); err != nil {
		return 0, err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return 0, err
	}
	defer g.s.mu.Unlock()
	n := 0
	gr.dead = slices.DeleteFunc(gr.dead, func(dl bridge.DeadLetter) bool {
		if len(ids) > 0 && !slices.Contains(ids, dl.ID) {
			return false
		}
		dl.ID = g.nextDL()
		gr.replay = append(gr.replay, dl)
		n++
		return true
	})
	return n, nil
}

// Replays returns the oldest entries of the replay queue.
func (g *Groups) Replays(_ context.Context, name string, count int) ([]bridge.DeadLetter, error) {
	if err := storeutil.CheckCount(count); err != nil {
		return nil, err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return nil, err
	}
	defer g.s.mu.Unlock()
	var out []bridge.DeadLetter
	for _, dl := range gr.replay[:min(count, len(gr.replay))] {
		out = append(out, cloneDL(dl))
	}
	return out, nil
}

// ReplayDone removes a replay entry, dead-lettering it again when failed.
func (g *Groups) ReplayDone(_ context.Context, name, id string, failed *bridge.DeadLetter, max int) error {
	if _, err := storeutil.ParseID(id); err != nil {
		return err
	}
	gr, err := g.lock(name, false)
	if err != nil {
		return err
	}
	defer g.s.mu.Unlock()
	gr.replay = slices.DeleteFunc(gr.replay, func(dl bridge.DeadLetter) bool { return dl.ID == id })
	if failed != nil {
		dl := cloneDL(*failed)
		dl.ID = g.nextDL()
		gr.dead = appendBounded(gr.dead, dl, max)
	}
	return nil
}
