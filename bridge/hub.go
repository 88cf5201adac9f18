package bridge

import (
	"cmp"
	"slices"
	"sync"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// hub matches each ingested message against the filters of every local feed
// and hands it to the feeds whose filters match, once per feed.
type hub struct {
	mu    sync.RWMutex
	trie  *topic.Trie[*Feed]
	feeds map[*Feed]int // every feed in trie → its number of filters
	pool  sync.Pool     // *[]*Feed scratch slices for publish
}

func newHub() *hub { return &hub{trie: topic.NewTrie[*Feed](), feeds: map[*Feed]int{}} }

func (h *hub) add(filter string, f *Feed) {
	h.mu.Lock()
	n := h.trie.Len()
	h.trie.Add(filter, f)
	if h.trie.Len() > n {
		h.feeds[f]++
	}
	h.mu.Unlock()
}

func (h *hub) remove(filter string, f *Feed) {
	h.mu.Lock()
	if h.trie.Remove(filter, f) {
		if h.feeds[f]--; h.feeds[f] <= 0 {
			delete(h.feeds, f)
		}
	}
	h.mu.Unlock()
}

// publishGap delivers the marker of a hole in the history tail to every
// feed with a subscription: the lost messages' topics are unknown.
func (h *hub) publishGap(ev *Event) {
	ev.at = mono()
	h.mu.RLock()
	feeds := make([]*Feed, 0, len(h.feeds))
	for f := range h.feeds {
		feeds = append(feeds, f)
	}
	h.mu.RUnlock()
	for _, f := range feeds {
		f.deliver(ev)
	}
}

// publish delivers ev to every feed with a matching filter. It never waits
// for a consumer: a feed whose queue is full fails on its own.
func (h *hub) publish(ev *Event) {
	ev.at = mono()
	p, _ := h.pool.Get().(*[]*Feed)
	if p == nil {
		p = new([]*Feed)
	}
	feeds := (*p)[:0]
	multi := false
	h.mu.RLock()
	h.trie.Match(ev.Topic, func(_ string, f *Feed) {
		feeds = append(feeds, f)
		multi = multi || f.multi.Load()
	})
	h.mu.RUnlock()
	if multi {
		// A feed with overlapping filters matched more than once: deliver
		// once.
		slices.SortFunc(feeds, func(a, b *Feed) int { return cmp.Compare(a.seq, b.seq) })
		feeds = slices.Compact(feeds)
	}
	for _, f := range feeds {
		f.deliver(ev)
	}
	clear(feeds)
	*p = feeds[:0]
	h.pool.Put(p)
}

func (h *hub) len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.trie.Len()
}

// publishAlarm delivers an alarm transition to every feed that takes
// alarms and has a filter matching the alarm's topic, once per feed.
func (h *hub) publishAlarm(ev *AlarmEvent) {
	var feeds []*Feed
	h.mu.RLock()
	h.trie.Match(ev.Topic, func(_ string, f *Feed) {
		if f.cfg.Alarms {
			feeds = append(feeds, f)
		}
	})
	h.mu.RUnlock()
	slices.SortFunc(feeds, func(a, b *Feed) int { return cmp.Compare(a.seq, b.seq) })
	for _, f := range slices.Compact(feeds) {
		f.deliverAlarm(ev)
	}
}
