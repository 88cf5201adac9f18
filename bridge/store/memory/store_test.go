package memory

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, w storetest.Window) bridge.Store {
		s, err := New(Config{HistorySize: w.Size, HistoryAge: w.Age})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestIDClockGoesBack: ids keep increasing when the clock stands still or
// goes back, and the sequence restarts when a new millisecond comes.
func TestIDClockGoesBack(t *testing.T) {
	s := newStore(t, Config{})
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { return clock }
	steps := []struct {
		clock int64 // ms
		want  string
	}{
		{1_700_000_000_000, "1700000000000-0"},
		{1_700_000_000_000, "1700000000000-1"},
		{1_699_999_999_000, "1700000000000-2"}, // back one second
		{1_700_000_000_001, "1700000000001-0"},
		{1_700_000_000_005, "1700000000005-0"},
		{1_700_000_000_005, "1700000000005-1"},
	}
	for i, st := range steps {
		clock = time.UnixMilli(st.clock)
		m, err := s.Put(t.Context(), bridge.Message{Topic: "t", Payload: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != st.want {
			t.Fatalf("step %d: id %s, want %s", i, m.ID, st.want)
		}
	}
}

// TestExpiredRemoved: expired messages are removed from the map and the
// index when Get or List meets them, not only hidden.
func TestExpiredRemoved(t *testing.T) {
	s := newStore(t, Config{})
	clock := time.Now()
	s.now = func() time.Time { return clock }
	one := uint32(1)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := s.Put(t.Context(), bridge.Message{Topic: name, Payload: []byte("v"),
			Properties: bridge.Properties{MessageExpiry: &one}}); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(time.Second)
	if _, err := s.Get(t.Context(), "a"); err != bridge.ErrNotFound {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if len(s.msgs) != 2 || len(s.topics) != 2 {
		t.Fatalf("after Get: %d messages, %d index entries; want 2", len(s.msgs), len(s.topics))
	}
	if msgs, _, err := s.List(t.Context(), "#", "", 10); err != nil || len(msgs) != 0 {
		t.Fatalf("List = %d, %v", len(msgs), err)
	}
	if len(s.msgs) != 0 || len(s.topics) != 0 {
		t.Fatalf("after List: %d messages, %d index entries; want 0", len(s.msgs), len(s.topics))
	}
}

func TestNewConfig(t *testing.T) {
	for _, cfg := range []Config{{HistorySize: -1}, {HistoryAge: -time.Second}, {HistoryAge: time.Microsecond}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s := newStore(t, Config{})
	if s.histMax != 10000 || s.histAge != time.Hour {
		t.Fatalf("defaults: %d messages, %v; want 10000, 1h", s.histMax, s.histAge)
	}
}

// TestHistoryRing: the ring keeps the newest entries in order through
// many wraps, and its buffer grows no larger than the window needs.
func TestHistoryRing(t *testing.T) {
	const size = 37
	s := newStore(t, Config{HistorySize: size})
	var all []string
	for i := range 500 {
		m, err := s.Put(t.Context(), bridge.Message{Topic: "t", Payload: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.ID)
		if n := min(i+1, size); s.hist.len() != n {
			t.Fatalf("after %d Puts the ring holds %d entries, want %d", i+1, s.hist.len(), n)
		}
	}
	if len(s.hist.buf) > size+1 {
		t.Fatalf("ring buffer of %d entries for a window of %d", len(s.hist.buf), size)
	}
	msgs, err := s.After(t.Context(), all[len(all)-size-1], 1000)
	if err != nil || len(msgs) != size {
		t.Fatalf("After = %d messages, %v; want %d", len(msgs), err, size)
	}
	for i, m := range msgs {
		if want := all[len(all)-size+i]; m.ID != want || m.Payload[0] != byte(len(all)-size+i) {
			t.Fatalf("message %d = %s %v, want %s", i, m.ID, m.Payload, want)
		}
	}
	// Dropped entries release their messages.
	for i := range s.hist.buf {
		if e := &s.hist.buf[i]; e.id == (storeutil.ID{}) && e.msg.Payload != nil {
			t.Fatalf("a free slot still holds a payload")
		}
	}
}

// TestHistoryAgeClock: the age counts from the newest id, so a clock that
// goes back trims nothing early, and only a Put trims.
func TestHistoryAgeClock(t *testing.T) {
	s := newStore(t, Config{HistoryAge: 10 * time.Second})
	start := time.UnixMilli(1_700_000_000_000)
	clock := start
	s.now = func() time.Time { return clock }
	putAt := func(at time.Duration) string {
		t.Helper()
		clock = start.Add(at)
		m, err := s.Put(t.Context(), bridge.Message{Topic: "t", Payload: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	history := func(from string) []string {
		t.Helper()
		msgs, err := s.After(t.Context(), from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		return ids
	}
	a := putAt(0)
	b := putAt(5 * time.Second)
	clock = start.Add(time.Hour) // no Put: nothing is trimmed
	if got := history("0-0"); !slices.Equal(got, []string{a, b}) {
		t.Fatalf("history = %q, want [%s %s]", got, a, b)
	}
	c := putAt(10*time.Second + time.Millisecond) // a is 10.001 s older
	if _, err := s.After(t.Context(), "0-0", 10); !errors.Is(err, bridge.ErrGap) {
		t.Fatalf("After(0-0) = %v, want a gap", err)
	}
	if s.trimmed.String() != a {
		t.Fatalf("trimmed = %s, want %s", s.trimmed, a)
	}
	d := putAt(-time.Hour) // the clock went back: d keeps c's millisecond
	if got, want := history(a), []string{b, c, d}; d != "1700000010001-1" || !slices.Equal(got, want) {
		t.Fatalf("history after a Put with the clock back = %q, want %q", got, want)
	}
	e := putAt(15*time.Second + 2*time.Millisecond) // b is 10.002 s older
	if got, want := history(b), []string{c, d, e}; !slices.Equal(got, want) {
		t.Fatalf("history = %q, want %q", got, want)
	}
	if _, err := s.After(t.Context(), a, 10); !errors.Is(err, bridge.ErrGap) {
		t.Fatalf("After(%s) = %v, want a gap", a, err)
	}
}

func TestTicketsConformance(t *testing.T) {
	storetest.RunTickets(t, func(*testing.T) bridge.Tickets { return NewTickets() })
}
