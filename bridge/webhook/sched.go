package webhook

import (
	"context"
	"sync"
	"time"
)

// sched runs the deliveries of one lease holding: one queue per topic,
// whose messages go one at a time, in order; at most Concurrency topics at
// once.
type sched struct {
	w   *worker
	ctx context.Context // ends when the holding ends: no new attempts then

	mu      sync.Mutex
	queues  map[string][]item // waiting, per topic
	active  map[string]bool   // a delivery of the topic is under way
	ready   []string          // topics with waiting items and none under way
	running int
	held    int             // items waiting or under way
	ids     map[string]bool // message ids held (history items)
	replays map[string]bool // replay ids held
	room    chan struct{}   // signalled when an item finishes

	wg sync.WaitGroup
}

func newSched(w *worker, ctx context.Context) *sched {
	return &sched{
		w: w, ctx: ctx,
		queues: map[string][]item{}, active: map[string]bool{},
		ids: map[string]bool{}, replays: map[string]bool{},
		room: make(chan struct{}, 1),
	}
}

func (s *sched) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func (s *sched) holds(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}

func (s *sched) holdsReplay(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replays[id]
}

// add queues an item behind the others of its topic.
func (s *sched) add(it item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it.replayID != "" {
		s.replays[it.replayID] = true
	} else {
		s.ids[it.msg.ID] = true
	}
	t := it.msg.Topic
	s.queues[t] = append(s.queues[t], it)
	s.held++
	if !s.active[t] && len(s.queues[t]) == 1 {
		s.ready = append(s.ready, t)
	}
	s.pumpLocked()
}

// pumpLocked starts deliveries while there is room.
func (s *sched) pumpLocked() {
	for s.running < s.w.cfg.Concurrency && len(s.ready) > 0 && s.ctx.Err() == nil {
		t := s.ready[0]
		s.ready = s.ready[1:]
		it := s.queues[t][0]
		if len(s.queues[t]) == 1 {
			delete(s.queues, t)
		} else {
			s.queues[t] = s.queues[t][1:]
		}
		s.active[t] = true
		s.running++
		s.wg.Add(1)
		go s.run(it)
	}
}

func (s *sched) run(it item) {
	defer s.wg.Done()
	s.w.send(s.ctx, it)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := it.msg.Topic
	delete(s.active, t)
	if it.replayID != "" {
		delete(s.replays, it.replayID)
	} else {
		delete(s.ids, it.msg.ID)
	}
	s.running--
	s.held--
	if len(s.queues[t]) > 0 {
		s.ready = append(s.ready, t)
	}
	s.pumpLocked()
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// waitRoom waits until an item finishes, at most d.
func (s *sched) waitRoom(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.room:
	case <-t.C:
	case <-ctx.Done():
	}
}
