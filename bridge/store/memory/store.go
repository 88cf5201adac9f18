package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// HistorySize is how many messages the history keeps, at most.
	// Default 10000.
	HistorySize int
	// HistoryAge is how long the history keeps a message, counted from
	// its id's millisecond; at least 1ms. Default 1h.
	HistoryAge time.Duration
}

// Store is the in-memory bridge.Store. Its zero value is not usable; call
// New.
type Store struct {
	now     func() time.Time // time.Now; replaced in tests
	histMax int
	histAge time.Duration

	mu      sync.Mutex
	msgs    map[string]bridge.Message // topic → last value, in PreparePut form
	topics  []string                  // the keys of msgs, sorted
	hist    ring                      // the history, ids increasing
	trimmed storeutil.ID              // the newest id dropped from hist
	lastID  storeutil.ID
	closed  bool
	leases  map[string]lease // ingest leases (leases.go)
	fence   uint64           // grows with every lease granted
	alarms  *alarms          // alarms.go, created on first use
}

var _ bridge.Store = (*Store)(nil)

// New returns an empty Store.
func New(cfg Config) (*Store, error) {
	size, age, err := storeutil.HistoryWindow(cfg.HistorySize, cfg.HistoryAge)
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return &Store{
		now:     time.Now,
		histMax: size,
		histAge: age,
		msgs:    make(map[string]bridge.Message),
	}, nil
}

// Put records msg and returns it with its ID. A retained message with an
// empty payload deletes the topic's last value; any other message replaces
// it. ReceivedAt is kept (at millisecond precision) when set, else set to
// now. The message joins the history under the same lock that assigns its
// id, and the history is trimmed to its window.
func (s *Store) Put(_ context.Context, msg bridge.Message) (bridge.Message, error) {
	return s.put(msg, "", "")
}

// put is Put, refused with bridge.ErrFenced unless token holds the lease
// (when lease is not "").
func (s *Store) put(msg bridge.Message, lease, token string) (bridge.Message, error) {
	now := s.now()
	m, err := storeutil.PreparePut(msg, now)
	if err != nil {
		return bridge.Message{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return bridge.Message{}, storeutil.ErrClosed
	}
	if lease != "" && !s.holds(lease, token, now) {
		return bridge.Message{}, bridge.ErrFenced
	}
	s.lastID = s.lastID.Next(now.UnixMilli())
	m.ID = s.lastID.String()
	if m.IsDelete() {
		s.remove(m.Topic)
	} else {
		s.set(m)
	}
	// m's slices are shared with the last value; neither changes them.
	s.hist.push(entry{id: s.lastID, msg: m}, s.histMax+1)
	s.trim()
	return storeutil.Clone(m), nil
}

// trim drops the oldest history entries beyond the size and those whose
// millisecond is older than the newest id's by more than the age, and
// remembers the newest one dropped.
func (s *Store) trim() {
	var minMS uint64 // ids below this millisecond are too old
	if age := uint64(s.histAge.Milliseconds()); s.lastID.MS > age {
		minMS = s.lastID.MS - age
	}
	for s.hist.len() > 0 {
		oldest := s.hist.at(0).id
		if s.hist.len() <= s.histMax && oldest.MS >= minMS {
			return
		}
		s.trimmed = oldest
		s.hist.pop()
	}
}

// After returns up to limit (1..1000) unexpired messages of the history
// with an id above after, oldest first, or an error with code gap when
// after is older than the newest id trimmed from the history.
func (s *Store) After(_ context.Context, after string, limit int) ([]bridge.Message, error) {
	pos, err := storeutil.CheckAfter(after, limit)
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storeutil.ErrClosed
	}
	if pos.Less(s.trimmed) {
		return nil, storeutil.Gap(pos, s.trimmed)
	}
	n := s.hist.len()
	i := sort.Search(n, func(i int) bool { return pos.Less(s.hist.at(i).id) })
	var msgs []bridge.Message
	for ; i < n && len(msgs) < limit; i++ {
		m := &s.hist.at(i).msg
		if m.Expired(now) {
			continue
		}
		msgs = append(msgs, storeutil.Clone(*m))
	}
	return msgs, nil
}

// LastID returns the newest id assigned, "0-0" when none.
func (s *Store) LastID(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", storeutil.ErrClosed
	}
	return s.lastID.String(), nil
}

// Get returns the unexpired last value of the topic name, or bridge.ErrNotFound.
func (s *Store) Get(_ context.Context, name string) (bridge.Message, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return bridge.Message{}, storeutil.ErrClosed
	}
	m, ok := s.msgs[name]
	if !ok {
		return bridge.Message{}, bridge.ErrNotFound
	}
	if m.Expired(now) {
		s.remove(name)
		return bridge.Message{}, bridge.ErrNotFound
	}
	return storeutil.Clone(m), nil
}

// Delete removes the last value of the topic name, if there is one.
func (s *Store) Delete(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storeutil.ErrClosed
	}
	s.remove(name)
	return nil
}

// List returns the unexpired last values of the topics matching filter, in
// byte order of topic name, starting after the topic name after, at most
// limit (1..1000) of them. next is the last topic returned when the page is
// full and further topics may match; the page after it may then be empty.
func (s *Store) List(_ context.Context, filter, after string, limit int) ([]bridge.Message, string, error) {
	prefix, err := storeutil.CheckList(filter, limit)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, "", storeutil.ErrClosed
	}
	var start int
	if after >= prefix {
		start, _ = slices.BinarySearch(s.topics, after)
		if start < len(s.topics) && s.topics[start] == after {
			start++
		}
	} else {
		start, _ = slices.BinarySearch(s.topics, prefix)
	}
	var (
		msgs    []bridge.Message
		next    string
		expired []string
	)
	for i := start; i < len(s.topics) && strings.HasPrefix(s.topics[i], prefix); i++ {
		name := s.topics[i]
		if !topic.Match(filter, name) {
			continue
		}
		m := s.msgs[name]
		if m.Expired(now) {
			expired = append(expired, name)
			continue
		}
		msgs = append(msgs, storeutil.Clone(m))
		if len(msgs) == limit {
			if i+1 < len(s.topics) && strings.HasPrefix(s.topics[i+1], prefix) {
				next = name
			}
			break
		}
	}
	for _, name := range expired {
		s.remove(name)
	}
	return msgs, next, nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storeutil.ErrClosed
	}
	return nil
}

// Close drops every stored message; afterwards every method returns an
// error with code store_unavailable. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.msgs = nil
	s.topics = nil
	s.hist = ring{}
	return nil
}

// set makes m the last value of its topic. Replacing a value is O(1); a new
// topic is inserted into the sorted index (binary search, then one copy).
func (s *Store) set(m bridge.Message) {
	if _, ok := s.msgs[m.Topic]; !ok {
		i, _ := slices.BinarySearch(s.topics, m.Topic)
		s.topics = slices.Insert(s.topics, i, m.Topic)
	}
	s.msgs[m.Topic] = m
}

// remove deletes the last value of the topic name, if any.
func (s *Store) remove(name string) {
	if _, ok := s.msgs[name]; !ok {
		return
	}
	delete(s.msgs, name)
	if i, ok := slices.BinarySearch(s.topics, name); ok {
		s.topics = slices.Delete(s.topics, i, i+1)
	}
}
