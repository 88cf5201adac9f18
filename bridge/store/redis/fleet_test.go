package redisstore

import (
	"cmp"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Backlog counts what was recorded after an id, up to the limit, and names
// the oldest of it; it reads past large payloads.
func TestBacklog(t *testing.T) {
	s := newTestStore(t, Config{HistorySize: 100})
	ctx := t.Context()
	if n, oldest, err := s.Backlog(ctx, "", 10); err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("empty history: %d %v %v, want 0, zero time", n, oldest, err)
	}
	base := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
	var ids []string
	for i := range 40 {
		m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: make([]byte, 64<<10), ReceivedAt: base.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	for _, c := range []struct {
		after        string
		limit, n     int
		oldestOffset int
	}{
		{"", 100, 40, 0},
		{"0-0", 100, 40, 0},
		{ids[9], 100, 30, 10},
		{ids[9], 25, 25, 10},
		{ids[38], 100, 1, 39},
		{ids[39], 100, 0, -1},
	} {
		n, oldest, err := s.Backlog(ctx, c.after, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		want := time.Time{}
		if c.oldestOffset >= 0 {
			want = base.Add(time.Duration(c.oldestOffset) * time.Second)
		}
		if n != c.n || !oldest.Equal(want) {
			t.Errorf("Backlog(%q, %d) = %d, %v; want %d, %v", c.after, c.limit, n, oldest, c.n, want)
		}
	}
}

// PutBatch records a batch as Puts one after the other would, trims once
// to the window, and records nothing when the lease is not held.
func TestPutBatch(t *testing.T) {
	s := newTestStore(t, Config{HistorySize: 3})
	ctx := t.Context()
	batch := []bridge.Message{
		{Topic: "a", Payload: []byte("1"), Retain: true},
		{Topic: "b", Payload: []byte("2")},
		{Topic: "a", Payload: []byte("3"), QoS: 1},
		{Topic: "b", Retain: true}, // deletes b's last value
		{Topic: "c", Payload: []byte("5")},
	}
	out, err := s.PutBatch(ctx, batch, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(batch) {
		t.Fatalf("%d messages back, want %d", len(out), len(batch))
	}
	for i := 1; i < len(out); i++ {
		if compareIDs(out[i-1].ID, out[i].ID) >= 0 {
			t.Fatalf("ids not increasing: %s then %s", out[i-1].ID, out[i].ID)
		}
	}
	if m, err := s.Get(ctx, "a"); err != nil || string(m.Payload) != "3" || m.ID != out[2].ID {
		t.Errorf("Get a = %+v, %v; want the third message", m, err)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, bridge.ErrNotFound) {
		t.Errorf("Get b = %v, want not found (deleted in the batch)", err)
	}
	info, err := s.client.XInfoStream(ctx, s.history).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info.Length != 3 || info.MaxDeletedEntryID != out[1].ID || info.FirstEntry.ID != out[2].ID {
		t.Errorf("XINFO STREAM: length %d, max-deleted %s, first %s; want 3, %s, %s",
			info.Length, info.MaxDeletedEntryID, info.FirstEntry.ID, out[1].ID, out[2].ID)
	}

	token, ok, err := s.Acquire(ctx, "ingest:x", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire: %v %v", ok, err)
	}
	if _, err := s.PutBatch(ctx, []bridge.Message{{Topic: "d", Payload: []byte("x")}}, "ingest:x", "not-"+token); !errors.Is(err, bridge.ErrFenced) {
		t.Fatalf("PutBatch with a stale token = %v, want ErrFenced", err)
	}
	if last, err := s.LastID(ctx); err != nil || last != out[4].ID {
		t.Errorf("LastID after a fenced batch = %s, %v; want %s (nothing recorded)", last, err, out[4].ID)
	}
	if _, err := s.PutBatch(ctx, []bridge.Message{{Topic: "d", Payload: []byte("x")}}, "ingest:x", token); err != nil {
		t.Errorf("PutBatch holding the lease: %v", err)
	}
}

// compareIDs orders stream ids "<ms>-<seq>".
func compareIDs(a, b string) int {
	pa, pb := strings.SplitN(a, "-", 2), strings.SplitN(b, "-", 2)
	for i := range 2 {
		x, _ := strconv.ParseUint(pa[i], 10, 64)
		y, _ := strconv.ParseUint(pb[i], 10, 64)
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}
