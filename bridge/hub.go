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
	mu   sync.RWMutex
	trie *topic.Trie[*Feed]
	pool sync.Pool // *[]*Feed scratch slices for publish
}

func newHub() *hub { return &hub{trie: topic.NewTrie[*Feed]()} }

func (h *hub) add(filter string, f *Feed) {
	h.mu.Lock()
	h.trie.Add(filter, f)
	h.mu.Unlock()
}

func (h *hub) remove(filter string, f *Feed) {
	h.mu.Lock()
	h.trie.Remove(filter, f)
	h.mu.Unlock()
}

// publish delivers ev to every feed with a matching filter. It never waits
// for a consumer: a feed whose queue is full fails on its own.
func (h *hub) publish(ev *Event) {
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
