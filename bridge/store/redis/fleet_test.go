package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// commandCounter is a go-redis hook that counts the commands sent, by name.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.n[cmd.Name()]++
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (c *commandCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// startTail tails s from after into a channel of message ids and gaps
// ("gap <after> <next> <lost> <exact>").
func startTail(t *testing.T, s *Store, after string) <-chan string {
	t.Helper()
	out := make(chan string, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = s.Tail(ctx, after, func(msgs []bridge.Message) {
			for _, m := range msgs {
				out <- m.ID
			}
		}, func(g bridge.Gap) { out <- fmt.Sprintf("gap %s %s %d %v", g.After, g.Next, g.Lost, g.Exact) })
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return out
}

func expectTail(t *testing.T, tail <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-tail:
			if got != w {
				t.Fatalf("the tail reported %s, want %s", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the tail reported nothing, want %s", w)
		}
	}
}

// A tail that has caught up reads each batch with one XREAD, without a
// script.
func TestTailOneReadPerBatch(t *testing.T) {
	s := newTestStore(t, Config{})
	counter := &commandCounter{n: map[string]int{}}
	s.client.AddHook(counter)
	ctx := t.Context()
	put := func() string {
		m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	tail := startTail(t, s, put())
	expectTail(t, tail, put()) // the tail learns where it is
	counter.take()
	const batches = 20
	for range batches {
		expectTail(t, tail, put())
	}
	n := counter.take()
	if n["evalsha"]+n["eval"] != batches { // the puts
		t.Errorf("%d scripts run for %d puts and their reads, want %d: the tail ran scripts", n["evalsha"]+n["eval"], batches, batches)
	}
	if n["xread"] < batches {
		t.Errorf("%d XREADs for %d batches", n["xread"], batches)
	}
}

// A history written before entries were numbered (an upgrade), or whose
// counter started again, is read without a gap.
func TestTailUnnumberedEntries(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := t.Context()
	oldEntry := func() string {
		id, err := s.client.XAdd(ctx, &redis.XAddArgs{Stream: s.history, Values: []any{
			"topic", "t", "payload", "old", "qos", "0", "retain", "0", "props", "", "received_at", "1"}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	put := func() string {
		m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("new")})
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	start := oldEntry()
	tail := startTail(t, s, start)
	expectTail(t, tail, oldEntry(), put(), put())
	expectTail(t, tail, oldEntry(), put()) // an older instance writes in between
	if err := s.client.Del(ctx, s.seq).Err(); err != nil {
		t.Fatal(err)
	}
	expectTail(t, tail, put(), put(), put()) // the counter starts again
	select {
	case got := <-tail:
		t.Fatalf("then the tail reported %s, want nothing", got)
	case <-time.After(100 * time.Millisecond):
	}
}
