package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

// TestMain fails the run when goroutines outlive the tests. It waits up to
// 3 s for them: after a failed dial, go-redis probes the server in a
// goroutine that sleeps 1 s between tries and notices Close only then.
func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // the tests provoke dial errors on purpose
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(3 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// testURL is the Redis the tests use: MQTTBRIDGE_TEST_REDIS_URL, or a local
// one.
func testURL() string {
	if u := os.Getenv("MQTTBRIDGE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// newTestClient returns a client for the test Redis, closed when the test
// ends. The test fails when Redis does not answer.
func newTestClient(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	raw := testURL()
	c, err := NewClient(raw)
	if err != nil {
		tb.Fatalf("MQTTBRIDGE_TEST_REDIS_URL: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(tb.Context(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		shown := raw
		if u, err := url.Parse(raw); err == nil {
			shown = u.Redacted()
		}
		tb.Fatalf("the test Redis at %s does not answer (%v): these tests need a real Redis; "+
			"start redis-server on 127.0.0.1:6379 or point MQTTBRIDGE_TEST_REDIS_URL at one", shown, err)
	}
	return c
}

// newTestPrefix returns a key prefix of its own for one test and deletes
// every key under it when the test ends.
func newTestPrefix(tb testing.TB, c redis.UniversalClient) string {
	tb.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "mqttbridge-test:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		// tb.Context is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := keysUnder(ctx, c, prefix)
		if err == nil && len(keys) > 0 {
			err = c.Unlink(ctx, keys...).Err()
		}
		if err != nil {
			tb.Errorf("deleting the test keys under %q: %v", prefix, err)
		}
	})
	return prefix
}

// keysUnder lists every key of the store with that prefix (SCAN).
func keysUnder(ctx context.Context, c redis.UniversalClient, prefix string) ([]string, error) {
	pattern := "{" + globEscape(prefix) + "}*"
	var all []string
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	return all, iter.Err()
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// newTestStore returns a Store on the test Redis with a prefix of its own;
// cfg.KeyPrefix is set.
func newTestStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	c := newTestClient(tb)
	cfg.KeyPrefix = newTestPrefix(tb, c)
	s, err := New(c, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, w storetest.Window) bridge.Store {
		return newTestStore(t, Config{HistorySize: w.Size, HistoryAge: w.Age})
	})
}

func TestTailConformance(t *testing.T) {
	storetest.RunTail(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Tailer) {
		s := newTestStore(t, Config{HistorySize: w.Size, HistoryAge: w.Age})
		return s, s
	})
}

func requireUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var e *bridge.Error
	if !errors.As(err, &e) || e.Code != bridge.ECodeStoreUnavailable {
		t.Fatalf("%s: error = %v, want an *bridge.Error with code store_unavailable", what, err)
	}
}

// callAll calls every Store method, checks that each fails with
// store_unavailable within max and wraps cause.
func callAll(t *testing.T, s *Store, max time.Duration, cause error) {
	t.Helper()
	ctx := t.Context()
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Put", func() error {
			_, err := s.Put(ctx, bridge.Message{Topic: "a", Payload: []byte("v")})
			return err
		}},
		{"Get", func() error { _, err := s.Get(ctx, "a"); return err }},
		{"List", func() error { _, _, err := s.List(ctx, "#", "", 10); return err }},
		{"Delete", func() error { return s.Delete(ctx, "a") }},
		{"After", func() error { _, err := s.After(ctx, "0-0", 10); return err }},
		{"LastID", func() error { _, err := s.LastID(ctx); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.fn()
		took := time.Since(start)
		requireUnavailable(t, c.name, err)
		if !errors.Is(err, cause) {
			t.Errorf("%s: error %v does not wrap %v", c.name, err, cause)
		}
		if took > max {
			t.Errorf("%s took %v, want at most %v", c.name, took, max)
		}
		t.Logf("%s: %v after %v", c.name, err, took.Round(time.Millisecond))
	}
}

// TestUnavailable: with nothing listening, every call fails with
// store_unavailable, and fast: well within the default 2 s Timeout.
func TestUnavailable(t *testing.T) {
	c, err := NewClient("redis://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(c, Config{})
	if err != nil {
		t.Fatal(err)
	}
	callAll(t, s, time.Second, syscall.ECONNREFUSED)
}

// TestTimeoutBoundsHang: a server that accepts connections but never
// answers (which a real Redis cannot be made to do without disturbing
// others) costs each call no more than the Timeout.
func TestTimeoutBoundsHang(t *testing.T) {
	addr := hangingServer(t)
	c, err := NewClient("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const timeout = 300 * time.Millisecond
	s, err := New(c, Config{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	callAll(t, s, timeout+250*time.Millisecond, context.DeadlineExceeded)
}

// TestSharedPrefix: two Stores (two clients, as two instances would have)
// on one prefix see the same last values and one sequence of ids.
func TestSharedPrefix(t *testing.T) {
	c1, c2 := newTestClient(t), newTestClient(t)
	prefix := newTestPrefix(t, c1)
	s1, err := New(c1, Config{KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(c2, Config{KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	m1, err := s1.Put(ctx, bridge.Message{Topic: "shared/a", Payload: []byte("from 1")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(ctx, "shared/a")
	if err != nil || got.ID != m1.ID || string(got.Payload) != "from 1" {
		t.Fatalf("s2.Get = %s %q, %v; want %s from s1", got.ID, got.Payload, err, m1.ID)
	}
	m2, err := s2.Put(ctx, bridge.Message{Topic: "shared/a", Payload: []byte("from 2")})
	if err != nil {
		t.Fatal(err)
	}
	if !idLess(t, m1.ID, m2.ID) {
		t.Fatalf("s2's id %s does not follow s1's %s", m2.ID, m1.ID)
	}
	if got, err := s1.Get(ctx, "shared/a"); err != nil || got.ID != m2.ID {
		t.Fatalf("s1.Get = %s, %v; want %s from s2", got.ID, err, m2.ID)
	}
	if _, err := s2.Put(ctx, bridge.Message{Topic: "shared/b", Payload: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := s1.List(ctx, "shared/#", "", 10)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("s1.List = %d messages, %v; want 2", len(msgs), err)
	}
	if err := s1.Delete(ctx, "shared/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, "shared/b"); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("s2.Get after s1.Delete: %v, want not found", err)
	}
	// Closing one Store leaves the other, and the shared client, working.
	_ = s1.Close()
	if err := s2.Ping(ctx); err != nil {
		t.Fatalf("s2.Ping after s1.Close: %v", err)
	}
	if err := c1.Ping(ctx).Err(); err != nil {
		t.Fatalf("the client after s1.Close: %v", err)
	}
}

func parseID(t *testing.T, id string) (ms, seq uint64) {
	t.Helper()
	a, b, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("bad id %q", id)
	}
	return ms, seq
}

func idLess(t *testing.T, a, b string) bool {
	t.Helper()
	am, as := parseID(t, a)
	bm, bs := parseID(t, b)
	return am < bm || am == bm && as < bs
}

// xaddEntry adds a valid history entry with an explicit id, as a Put of
// another (or an earlier) store would have.
func xaddEntry(t *testing.T, s *Store, id string) {
	t.Helper()
	err := s.client.XAdd(t.Context(), &redis.XAddArgs{Stream: s.history, ID: id, Values: []any{
		"topic", "t", "payload", "v", "qos", "0", "retain", "0", "props", "", "received_at", fmt.Sprint(time.Now().UnixMilli()),
	}}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

// TestIDClockGoesBack: when the history's last id is ahead of Redis'
// clock, XADD keeps its millisecond and increases the sequence; once the
// clock is ahead, the sequence restarts at 0.
func TestIDClockGoesBack(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := t.Context()
	first, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(10 * time.Minute).UnixMilli()
	xaddEntry(t, s, fmt.Sprintf("%d-7", future))
	var want []string
	for _, id := range []string{fmt.Sprintf("%d-8", future), fmt.Sprintf("%d-9", future)} {
		m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("v")})
		if err != nil || m.ID != id {
			t.Fatalf("Put id = %s, %v; want %s", m.ID, err, id)
		}
		want = append(want, m.ID)
	}
	want = append([]string{first.ID, fmt.Sprintf("%d-7", future)}, want...)
	if msgs, err := s.After(ctx, "0-0", 10); err != nil || !slices.Equal(msgIDs(msgs), want) {
		t.Fatalf("After(0-0) = %q, %v; want %q", msgIDs(msgs), err, want)
	}

	// A history that starts with an old id: the clock is ahead again, and
	// the old entry is beyond the age window of the new one.
	if err := s.client.Del(ctx, s.history).Err(); err != nil {
		t.Fatal(err)
	}
	xaddEntry(t, s, "1000-5")
	before := time.Now().Add(-time.Minute).UnixMilli()
	m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if ms, seq := parseID(t, m.ID); ms < uint64(before) || seq != 0 {
		t.Fatalf("id after an old last id = %s, want <now>-0", m.ID)
	}
	if last, err := s.LastID(ctx); err != nil || last != m.ID {
		t.Fatalf("LastID = %q, %v; want %s", last, err, m.ID)
	}
	if _, err := s.After(ctx, "1000-4", 10); !errors.Is(err, bridge.ErrGap) {
		t.Fatalf("After(1000-4) = %v, want a gap: 1000-5 is older than the age window", err)
	}
	if msgs, err := s.After(ctx, "1000-5", 10); err != nil || !slices.Equal(msgIDs(msgs), []string{m.ID}) {
		t.Fatalf("After(1000-5) = %q, %v; want [%s]", msgIDs(msgs), err, m.ID)
	}
}

func msgIDs(msgs []bridge.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// TestTrimMark: trimming records the newest id dropped as the stream's
// max-deleted-entry-id (which XTRIM alone leaves at 0-0), the stream keeps
// exactly the window, and an entry that is not what Put writes is an
// internal error, not a silent skip.
func TestTrimMark(t *testing.T) {
	s := newTestStore(t, Config{HistorySize: 3})
	ctx := t.Context()
	var all []string
	for i := range 5 {
		m, err := s.Put(ctx, bridge.Message{Topic: "t", Payload: []byte{byte('0' + i)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.ID)
	}
	info, err := s.client.XInfoStream(ctx, s.history).Result()
	if err != nil {
		t.Fatal(err)
	}
	if info.Length != 3 || info.MaxDeletedEntryID != all[1] || info.LastGeneratedID != all[4] || info.FirstEntry.ID != all[2] {
		t.Fatalf("XINFO STREAM: length %d, max-deleted %s, last-generated %s, first %s; want 3, %s, %s, %s",
			info.Length, info.MaxDeletedEntryID, info.LastGeneratedID, info.FirstEntry.ID, all[1], all[4], all[2])
	}
	if v := info.FirstEntry.Values; len(v) != 7 || v["topic"] != "t" || v["payload"] != "2" || v["n"] != "3" {
		t.Fatalf("first entry's fields = %q", v)
	}
	// A foreign entry in the window.
	if err := s.client.XAdd(ctx, &redis.XAddArgs{Stream: s.history, Values: []any{"x", "y"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.After(ctx, all[4], 10); bridge.ErrorCode(err) != bridge.ECodeInternal {
		t.Fatalf("After over a foreign entry = %v, want an internal error", err)
	}
}

// TestKeyLayout checks the layout the package documentation promises.
func TestKeyLayout(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := t.Context()
	sixty := uint32(60)
	m, err := s.Put(ctx, bridge.Message{
		Topic: "a/b", Payload: []byte("v\x00"), QoS: 1, Retain: true,
		Properties: bridge.Properties{MessageExpiry: &sixty, CorrelationData: []byte{0xff}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, bridge.Message{Topic: "c", Payload: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	keys, err := keysUnder(ctx, s.client, strings.Trim(s.tag, "{}"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{s.tag + "history", s.tag + "history:seq", s.tag + "lv:a/b", s.tag + "lv:c", s.tag + "topics"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	if n, err := s.client.Get(ctx, s.tag+"history:seq").Result(); err != nil || n != "2" {
		t.Fatalf("history:seq = %q, %v; want 2 (two entries numbered)", n, err)
	}
	h, err := s.client.HGetAll(ctx, s.tag+"lv:a/b").Result()
	if err != nil {
		t.Fatal(err)
	}
	wantHash := map[string]string{
		"id": m.ID, "payload": "v\x00", "qos": "1", "retain": "1",
		"props": `{"me":60,"cd":"/w=="}`, "received_at": fmt.Sprint(m.ReceivedAt.UnixMilli()),
	}
	if fmt.Sprint(h) != fmt.Sprint(wantHash) {
		t.Fatalf("hash = %q, want %q", h, wantHash)
	}
	at, err := s.client.PExpireTime(ctx, s.tag+"lv:a/b").Result()
	if wantAt := m.ReceivedAt.Add(time.Minute); err != nil || at != time.Duration(wantAt.UnixMilli())*time.Millisecond {
		t.Fatalf("PEXPIRETIME = %v, %v; want %d ms", at, err, wantAt.UnixMilli())
	}
	if ttl, err := s.client.PTTL(ctx, s.tag+"lv:c").Result(); err != nil || ttl != -1 {
		t.Fatalf("PTTL of a message without expiry = %v, %v; want none", ttl, err)
	}
	// A value without expiry replacing one with expiry loses the TTL.
	if _, err := s.Put(ctx, bridge.Message{Topic: "a/b", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := s.client.PTTL(ctx, s.tag+"lv:a/b").Result(); err != nil || ttl != -1 {
		t.Fatalf("PTTL after replacing = %v, %v; want none", ttl, err)
	}
	idx, err := s.client.ZRangeWithScores(ctx, s.index, 0, -1).Result()
	if err != nil || len(idx) != 2 || idx[0].Member != "a/b" || idx[1].Member != "c" || idx[0].Score != 0 || idx[1].Score != 0 {
		t.Fatalf("index = %v, %v", idx, err)
	}
	// The history entry: the hash's fields in a fixed order, the topic in
	// place of the id, then its sequence number.
	raw, err := s.client.Do(ctx, "XRANGE", s.history, "-", "+", "COUNT", 1).Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("XRANGE = %v, %v", raw, err)
	}
	entry := raw[0].([]any)
	wantEntry := []any{"topic", "a/b", "payload", "v\x00", "qos", "1", "retain", "1",
		"props", `{"me":60,"cd":"/w=="}`, "received_at", fmt.Sprint(m.ReceivedAt.UnixMilli()), "n", "1"}
	if entry[0] != m.ID || fmt.Sprintf("%q", entry[1]) != fmt.Sprintf("%q", wantEntry) {
		t.Fatalf("history entry = %q, want %s %q", entry, m.ID, wantEntry)
	}
}

// hashTag is the part of a key that Redis Cluster hashes.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestOneSlot: every key of a store has the same hash tag, whatever the
// topic, so the scripts work on Redis Cluster.
func TestOneSlot(t *testing.T) {
	c := redis.NewClient(&redis.Options{})
	defer c.Close()
	s, err := New(c, Config{KeyPrefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{s.index, s.history}
	for _, name := range []string{"a", "}", "{", "{x}", "a{b}c", "}{", "{}", " ", "日本"} {
		keys = append(keys, s.valueKey(name))
	}
	for _, k := range keys {
		if tag := hashTag(k); tag != "p:" {
			t.Errorf("key %q hashes %q, want %q", k, tag, "p:")
		}
	}
}

// TestPrune: an index entry whose hash is gone (expired) is skipped and
// removed by List.
func TestPrune(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := t.Context()
	for _, name := range []string{"x/1", "x/2", "x/3"} {
		if _, err := s.Put(ctx, bridge.Message{Topic: name, Payload: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.client.Del(ctx, s.valueKey("x/2")).Err(); err != nil {
		t.Fatal(err)
	}
	msgs, next, err := s.List(ctx, "#", "", 10)
	if err != nil || next != "" || len(msgs) != 2 || msgs[0].Topic != "x/1" || msgs[1].Topic != "x/3" {
		t.Fatalf("List = %d messages, next %q, %v; want x/1, x/3", len(msgs), next, err)
	}
	members, err := s.client.ZRange(ctx, s.index, 0, -1).Result()
	if err != nil || !slices.Equal(members, []string{"x/1", "x/3"}) {
		t.Fatalf("index = %q, %v; want x/2 removed", members, err)
	}
}

// TestListBoundedWork: a filter that matches nothing among many topics
// returns short pages with a cursor instead of scanning everything in one
// call.
func TestListBoundedWork(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := t.Context()
	const n = 300
	for i := range n {
		if _, err := s.Put(ctx, bridge.Message{Topic: fmt.Sprintf("n/%03d/y", i), Payload: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, bridge.Message{Topic: "n/zzz/x", Payload: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	budget := listScanFactor*1 + listScanExtra
	var (
		after string
		got   []string
		calls int
	)
	for {
		msgs, next, err := s.List(ctx, "n/+/x", after, 1)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		for _, m := range msgs {
			got = append(got, m.Topic)
		}
		if next == "" {
			break
		}
		after = next
	}
	if wantCalls := (n + 1 + budget - 1) / budget; calls != wantCalls || !slices.Equal(got, []string{"n/zzz/x"}) {
		t.Fatalf("got %q in %d calls; want [n/zzz/x] in %d calls of at most %d entries", got, calls, wantCalls, budget)
	}
}

func TestNewConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{})
	defer c.Close()
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New(nil client) succeeded")
	}
	for _, cfg := range []Config{
		{KeyPrefix: "a{b"}, {KeyPrefix: "a}"}, {Timeout: -time.Second},
		{HistorySize: -1}, {HistoryAge: -time.Second}, {HistoryAge: time.Microsecond},
	} {
		if _, err := New(c, cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s, err := New(c, Config{})
	if err != nil || s.tag != "{mqttbridge:}" || s.timeout != 2*time.Second || s.histMax != "10000" || s.histAge != "3600000" {
		t.Fatalf("defaults: tag %q, timeout %v, history %s messages, %s ms, %v", s.tag, s.timeout, s.histMax, s.histAge, err)
	}
	s, err = New(c, Config{HistorySize: 7, HistoryAge: 1500 * time.Millisecond})
	if err != nil || s.histMax != "7" || s.histAge != "1500" {
		t.Fatalf("history %s messages, %s ms, %v; want 7, 1500", s.histMax, s.histAge, err)
	}
}

func TestNewClient(t *testing.T) {
	for _, raw := range []string{
		"http://127.0.0.1:6379",
		"redis://user:s3cret@host:notaport/",
		"redis://:s3cret@127.0.0.1:6379/?bogus=1",
		"redis://:s3cret@127.0.0.1:6379/x",
		"redis://:s3cret@127.0.0.1:6379/?dial_timeout=soon",
	} {
		c, err := NewClient(raw)
		if err == nil {
			_ = c.Close()
			t.Errorf("NewClient(%q) succeeded", raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("NewClient(%q) error shows the password: %v", raw, err)
		}
	}
	for _, tc := range []struct {
		raw               string
		dial, read, write time.Duration
		tls               bool
	}{
		{"redis://127.0.0.1:6379", 2 * time.Second, 2 * time.Second, 2 * time.Second, false},
		{"rediss://u:p@example.com:6380/2", 2 * time.Second, 2 * time.Second, 2 * time.Second, true},
		{"redis://h?dial_timeout=5s&read_timeout=3s", 5 * time.Second, 3 * time.Second, 3 * time.Second, false},
	} {
		c, err := NewClient(tc.raw)
		if err != nil {
			t.Fatalf("NewClient(%q): %v", tc.raw, err)
		}
		o := c.(*redis.Client).Options()
		_ = c.Close()
		if o.DialTimeout != tc.dial || o.ReadTimeout != tc.read || o.WriteTimeout != tc.write ||
			!o.ContextTimeoutEnabled || (o.TLSConfig != nil) != tc.tls {
			t.Errorf("NewClient(%q): dial %v, read %v, write %v, context timeouts %v, TLS %v",
				tc.raw, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled, o.TLSConfig != nil)
		}
	}
}

// BenchmarkPut measures Put in a steady state: the history full and
// trimmed by count on every Put, or trimmed by age.
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"count", Config{HistorySize: 1000}},
		{"age", Config{HistorySize: 100000, HistoryAge: 20 * time.Millisecond}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newTestStore(b, bc.cfg)
			msg := bridge.Message{Topic: "bench/t", Payload: make([]byte, 200)}
			for range 1200 {
				if _, err := s.Put(b.Context(), msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.Put(b.Context(), msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWindowShrinks: a store started with a smaller HistorySize than the
// stream holds trims it to the new size on its first Put, from either end.
func TestWindowShrinks(t *testing.T) {
	big := newTestStore(t, Config{HistorySize: 100})
	ctx := t.Context()
	var all []string
	for i := range 40 {
		m, err := big.Put(ctx, bridge.Message{Topic: "t", Payload: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.ID)
	}
	for _, size := range []int{30, 5} { // 11 entries over (< 30), then 26 (> 5)
		small, err := New(big.client, Config{KeyPrefix: strings.Trim(big.tag, "{}"), HistorySize: size})
		if err != nil {
			t.Fatal(err)
		}
		m, err := small.Put(ctx, bridge.Message{Topic: "t", Payload: []byte("new")})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m.ID)
		newest := all[len(all)-size-1]
		if msgs, err := small.After(ctx, newest, 1000); err != nil || !slices.Equal(msgIDs(msgs), all[len(all)-size:]) {
			t.Fatalf("size %d: After(%s) = %d messages, %v; want the last %d", size, newest, len(msgs), err, size)
		}
		if _, err := small.After(ctx, all[len(all)-size-2], 1000); !errors.Is(err, bridge.ErrGap) {
			t.Fatalf("size %d: After(%s) = %v, want a gap", size, all[len(all)-size-2], err)
		}
	}
}
