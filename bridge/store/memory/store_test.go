package memory

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bridge.Store {
		s := New()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestIDClockGoesBack: ids keep increasing when the clock stands still or
// goes back, and the sequence restarts when a new millisecond comes.
func TestIDClockGoesBack(t *testing.T) {
	s := New()
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
	s := New()
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
