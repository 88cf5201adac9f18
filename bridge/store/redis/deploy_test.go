package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The same store over Redis Cluster and Redis Sentinel: every key of a
// store shares one hash tag, so its scripts (several keys each), MULTI,
// XREAD, GETDEL and consumer groups all go to the one node that owns the
// slot. A key outside the tag would fail these tests with CROSSSLOT.

// randomPrefix is a key prefix of its own, for a private Redis that the
// test throws away (nothing to clean up).
func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b) + ":"
}

// newDeployStore returns a Store with a prefix of its own on client.
func newDeployStore(tb testing.TB, client redis.UniversalClient, cfg Config) *Store {
	tb.Helper()
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = randomPrefix()
	}
	s, err := New(client, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// newUniversal builds a client for cfg, closed when the test ends, and
// waits until it answers.
func newUniversal(tb testing.TB, cfg ClientConfig) redis.UniversalClient {
	tb.Helper()
	c, err := NewUniversalClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the client does not reach Redis: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterConformance(t *testing.T) {
	cluster := testenv.StartRedisCluster(t)
	client := newUniversal(t, ClientConfig{ClusterAddrs: cluster.Addrs})
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("client is a %T, want a *redis.ClusterClient", client)
	}
	newStore := func(t *testing.T, w storetest.Window) bridge.Store {
		return newDeployStore(t, client, Config{HistorySize: w.Size, HistoryAge: w.Age})
	}
	t.Run("Store", func(t *testing.T) { storetest.Run(t, newStore) })
	t.Run("Tail", func(t *testing.T) {
		storetest.RunTail(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Tailer) {
			s := newStore(t, w)
			return s, s.(*Store)
		})
	})
	t.Run("Groups", func(t *testing.T) {
		storetest.RunGroups(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Groups) {
			s := newDeployStore(t, client, Config{HistorySize: w.Size, HistoryAge: w.Age})
			return s, NewGroups(s)
		})
	})
	t.Run("Fleet", func(t *testing.T) {
		// Prefixes whose slots live on every node of the cluster.
		nodes := map[string]bool{}
		for len(nodes) < len(cluster.Addrs) {
			prefix := randomPrefix()
			node := slotOwner(t, client, "{"+prefix+"}history")
			if nodes[node] {
				continue
			}
			nodes[node] = true
			t.Run("on "+node, func(t *testing.T) {
				testFleet(t, func(t *testing.T) *Store { return newDeployStore(t, client, Config{KeyPrefix: prefix}) })
			})
		}
	})
}

// slotOwner is the address of the master that serves key.
func slotOwner(t *testing.T, c redis.UniversalClient, key string) string {
	t.Helper()
	ctx := t.Context()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return ""
}

func TestSentinelConformance(t *testing.T) {
	sentinel := testenv.StartRedisSentinel(t, 0)
	client := newUniversal(t, ClientConfig{MasterName: sentinel.MasterName, SentinelAddrs: []string{sentinel.SentinelAddr}})
	newStore := func(t *testing.T, w storetest.Window) bridge.Store {
		return newDeployStore(t, client, Config{HistorySize: w.Size, HistoryAge: w.Age})
	}
	t.Run("Store", func(t *testing.T) { storetest.Run(t, newStore) })
	t.Run("Tail", func(t *testing.T) {
		storetest.RunTail(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Tailer) {
			s := newStore(t, w)
			return s, s.(*Store)
		})
	})
	t.Run("Fleet", func(t *testing.T) {
		testFleet(t, func(t *testing.T) *Store { return newDeployStore(t, client, Config{}) })
	})
	// The client really went through the sentinel to the master.
	if n, err := testenv.RedisDo(sentinel.Master.Addr, 2*time.Second, "DBSIZE"); err != nil || n.(int64) == 0 {
		t.Errorf("the master holds %v keys (%v), want the tests' keys", n, err)
	}
}

// TestFleetSingle runs the lease, fence, tail and session checks on the
// shared Redis too, so that all three deployments run the same checks.
func TestFleetSingle(t *testing.T) {
	testFleet(t, func(t *testing.T) *Store { return newTestStore(t, Config{}) })
}

// testFleet checks what a fleet of instances needs beyond bridge.Store:
// the ingest lease (exclusive, renewed, released, expiring), the fenced
// write, the tail (XREAD BLOCK), and sessions (SET, GETDEL).
func testFleet(t *testing.T, newStore func(t *testing.T) *Store) {
	t.Run("Lease", func(t *testing.T) {
		a := newStore(t)
		b, err := New(a.client, Config{KeyPrefix: strings.Trim(a.tag, "{}")}) // another instance
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		const lease = "ingest:default"
		tokA, ok, err := a.Acquire(ctx, lease, 10*time.Second)
		if err != nil || !ok {
			t.Fatalf("a.Acquire = %v, %v", ok, err)
		}
		if _, ok, err := b.Acquire(ctx, lease, 10*time.Second); err != nil || ok {
			t.Fatalf("b.Acquire while a holds it = %v, %v; want refused", ok, err)
		}
		if ok, err := a.Renew(ctx, lease, tokA, 10*time.Second); err != nil || !ok {
			t.Fatalf("a.Renew = %v, %v", ok, err)
		}
		if ok, err := b.Renew(ctx, lease, "1-bogus", 10*time.Second); err != nil || ok {
			t.Fatalf("Renew with a wrong token = %v, %v; want false", ok, err)
		}
		m1, err := a.PutFenced(ctx, bridge.Message{Topic: "f/1", Payload: []byte("a")}, lease, tokA)
		if err != nil {
			t.Fatalf("PutFenced by the holder: %v", err)
		}
		if _, err := b.PutFenced(ctx, bridge.Message{Topic: "f/1", Payload: []byte("b")}, lease, "1-bogus"); !errors.Is(err, bridge.ErrFenced) {
			t.Fatalf("PutFenced with a wrong token: %v, want ErrFenced", err)
		}
		if got, err := b.Get(ctx, "f/1"); err != nil || got.ID != m1.ID {
			t.Fatalf("after a fenced-off write the value is %s (%v), want %s", got.ID, err, m1.ID)
		}
		if err := a.Release(ctx, lease, tokA); err != nil {
			t.Fatal(err)
		}
		tokB, ok, err := b.Acquire(ctx, lease, 200*time.Millisecond)
		if err != nil || !ok {
			t.Fatalf("b.Acquire after release = %v, %v", ok, err)
		}
		if fence(t, tokB) <= fence(t, tokA) {
			t.Fatalf("token %s of the later grant does not follow %s", tokB, tokA)
		}
		if _, err := a.PutFenced(ctx, bridge.Message{Topic: "f/1", Payload: []byte("stale")}, lease, tokA); !errors.Is(err, bridge.ErrFenced) {
			t.Fatalf("PutFenced by the former holder: %v, want ErrFenced", err)
		}
		time.Sleep(300 * time.Millisecond) // b's lease expires
		if _, ok, err := a.Acquire(ctx, lease, time.Second); err != nil || !ok {
			t.Fatalf("a.Acquire after b's lease expired = %v, %v", ok, err)
		}
	})

	t.Run("Tail", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if _, err := s.Put(ctx, bridge.Message{Topic: "before", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		after, err := s.LastID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tctx, cancel := context.WithCancel(ctx)
		got := make(chan bridge.Message, 100)
		var wg sync.WaitGroup
		var tailErr error
		wg.Go(func() {
			tailErr = s.Tail(tctx, after, func(msgs []bridge.Message) {
				for _, m := range msgs {
					got <- m
				}
			}, func(g bridge.Gap) { t.Errorf("unexpected %+v", g) })
		})
		var want []string
		for i := range 5 {
			if i == 2 {
				time.Sleep(1200 * time.Millisecond) // across an XREAD BLOCK that ends empty
			}
			m, err := s.Put(ctx, bridge.Message{Topic: fmt.Sprintf("t/%d", i), Payload: []byte{byte(i)}})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, m.ID)
		}
		var ids []string
		timeout := time.After(10 * time.Second)
		for len(ids) < len(want) {
			select {
			case m := <-got:
				ids = append(ids, m.ID)
			case <-timeout:
				t.Fatalf("the tail delivered %q, want %q", ids, want)
			}
		}
		cancel()
		wg.Wait()
		if !slices.Equal(ids, want) || !errors.Is(tailErr, context.Canceled) {
			t.Fatalf("tail = %q, %v; want %q, context canceled", ids, tailErr, want)
		}
	})

	t.Run("Sessions", func(t *testing.T) {
		ss := newStore(t).Sessions()
		ctx := t.Context()
		in := bridge.Session{ID: "s_1", Subscriptions: map[string]byte{"a/#": 1, "b": 0},
			Pending: []bridge.Message{{ID: "1-0", Topic: "a/x", Payload: []byte("p"), QoS: 1}}}
		if err := ss.Save(ctx, in, time.Minute); err != nil {
			t.Fatal(err)
		}
		out, err := ss.Take(ctx, "s_1")
		if err != nil || len(out.Subscriptions) != 2 || out.Subscriptions["a/#"] != 1 || len(out.Pending) != 1 || out.Pending[0].ID != "1-0" {
			t.Fatalf("Take = %+v, %v", out, err)
		}
		if _, err := ss.Take(ctx, "s_1"); !errors.Is(err, bridge.ErrNotFound) {
			t.Fatalf("second Take: %v, want not found", err)
		}
	})
}

// fence is the grant number that starts a lease token.
func fence(t *testing.T, token string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.SplitN(token, "-", 2)[0], 10, 64)
	if err != nil {
		t.Fatalf("token %q: %v", token, err)
	}
	return n
}

// TestSentinelFailover: the master dies, the sentinel promotes its
// replica, and the store goes on through the same client: what was
// replicated is there, new writes succeed, ids keep increasing.
func TestSentinelFailover(t *testing.T) {
	sentinel := testenv.StartRedisSentinel(t, 1)
	client := newUniversal(t, ClientConfig{MasterName: sentinel.MasterName, SentinelAddrs: []string{sentinel.SentinelAddr}})
	s := newDeployStore(t, client, Config{})
	ctx := t.Context()
	var want []string
	for i := range 3 {
		m, err := s.Put(ctx, bridge.Message{Topic: "fo/before", Payload: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m.ID)
	}
	// Replication is asynchronous: wait until the replica has the writes.
	if n, err := client.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	sentinel.Master.Kill()
	start := time.Now()
	var m bridge.Message
	for {
		var err error
		m, err = s.Put(ctx, bridge.Message{Topic: "fo/after", Payload: []byte("new")})
		if err == nil {
			break
		}
		if bridge.ErrorCode(err) != bridge.ECodeStoreUnavailable {
			t.Fatalf("Put during the failover: %v, want store_unavailable", err)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no write succeeded within 30 s of killing the master: %v\n%s", err, sentinel.Sentinel.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes resumed %v after the master died", time.Since(start).Round(100*time.Millisecond))
	want = append(want, m.ID)
	msgs, err := s.After(ctx, "0-0", 10)
	if err != nil || !slices.Equal(msgIDs(msgs), want) {
		t.Fatalf("After(0-0) on the new master = %q, %v; want %q", msgIDs(msgs), err, want)
	}
	if addr, err := sentinel.MasterAddr(); err != nil || addr != sentinel.Replicas[0].Addr {
		t.Fatalf("the sentinel's master is %q, %v; want the former replica %s", addr, err, sentinel.Replicas[0].Addr)
	}
}

// TestDeploymentsUnavailable: with nothing listening, every call through a
// Cluster or a Sentinel client fails with store_unavailable within the
// store's Timeout (go-redis retries a refused command with a backoff, so
// a call may take longer than one dial, never longer than the Timeout).
func TestDeploymentsUnavailable(t *testing.T) {
	testenv.Long(t, "Redis deployments that do not answer")
	callDeploymentsUnavailable(t, deadAddr(t), 1500*time.Millisecond)
}

// TestDeploymentsTimeoutBoundsHang: seeds or sentinels that accept
// connections but never answer cost each call no more than the Timeout.
func TestDeploymentsTimeoutBoundsHang(t *testing.T) {
	testenv.Long(t, "waiting out hung Redis deployments")
	callDeploymentsUnavailable(t, hangingServer(t), 300*time.Millisecond)
}

// callDeploymentsUnavailable checks callAllUnavailable through a Cluster
// client with addr as its seed and a Sentinel client with addr as its
// sentinel.
func callDeploymentsUnavailable(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	for _, cfg := range []ClientConfig{
		{ClusterAddrs: []string{addr}},
		{MasterName: "m", SentinelAddrs: []string{addr}},
	} {
		c, err := NewUniversalClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(c, Config{Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		callAllUnavailable(t, s, 3*timeout+2*time.Second) // bounded, with room for a loaded machine
		_ = c.Close()
	}
}

// callAllUnavailable calls every Store method and checks that each fails
// with store_unavailable within max.
func callAllUnavailable(t *testing.T, s *Store, max time.Duration) {
	t.Helper()
	ctx := t.Context()
	calls := map[string]func() error{
		"Put": func() error {
			_, err := s.Put(ctx, bridge.Message{Topic: "a", Payload: []byte("v")})
			return err
		},
		"Get":     func() error { _, err := s.Get(ctx, "a"); return err },
		"List":    func() error { _, _, err := s.List(ctx, "#", "", 10); return err },
		"Delete":  func() error { return s.Delete(ctx, "a") },
		"After":   func() error { _, err := s.After(ctx, "0-0", 10); return err },
		"LastID":  func() error { _, err := s.LastID(ctx); return err },
		"Ping":    func() error { return s.Ping(ctx) },
		"Acquire": func() error { _, _, err := s.Acquire(ctx, "l", time.Second); return err },
		"Take":    func() error { _, err := s.Sessions().Take(ctx, "s"); return err },
	}
	for name, fn := range calls {
		start := time.Now()
		err := fn()
		took := time.Since(start)
		requireUnavailable(t, name, err)
		if took > max {
			t.Errorf("%s (%T) took %v, want at most %v", name, s.client, took, max)
		}
		t.Logf("%T %s: %v after %v", s.client, name, err, took.Round(time.Millisecond))
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func TestNewUniversalClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"nothing", ClientConfig{}, "no Redis URL"},
		{"both", ClientConfig{MasterName: "m", SentinelAddrs: []string{"h:1"}, ClusterAddrs: []string{"h:2"}}, "choose one"},
		{"sentinel without name", ClientConfig{SentinelAddrs: []string{"h:1"}}, "master's name"},
		{"sentinel without addrs", ClientConfig{MasterName: "m"}, "at least one sentinel"},
		{"bad addr", ClientConfig{ClusterAddrs: []string{"h"}}, `address "h"`},
		{"bad port", ClientConfig{ClusterAddrs: []string{"h:0"}}, `address "h:0"`},
		{"host in URL", ClientConfig{URL: "redis://:s3cret@h:6379", ClusterAddrs: []string{"h:1"}}, "no host"},
		{"cluster db", ClientConfig{URL: "redis://:s3cret@/2", ClusterAddrs: []string{"h:1"}}, "only database 0"},
		{"unix", ClientConfig{URL: "unix:///tmp/r.sock", MasterName: "m", SentinelAddrs: []string{"h:1"}}, "not unix://"},
		{"bad option", ClientConfig{URL: "redis://:s3cret@/?bogus=1", ClusterAddrs: []string{"h:1"}}, "bogus"},
	} {
		c, err := NewUniversalClient(tc.cfg)
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %q, want it to say %q without the password", tc.name, err, tc.want)
		}
	}

	// Every kind gets the bounded timeouts, and the URL's settings.
	cl, err := NewUniversalClient(ClientConfig{URL: "rediss://u:p@/?read_timeout=3s&pool_size=7", Password: "q", ClusterAddrs: []string{"a:1", "b:2"}})
	if err != nil {
		t.Fatal(err)
	}
	co := cl.(*redis.ClusterClient).Options()
	_ = cl.Close()
	if co.DialTimeout != 2*time.Second || co.ReadTimeout != 3*time.Second || co.WriteTimeout != 3*time.Second ||
		co.DialerRetries != 1 || !co.ContextTimeoutEnabled || co.Username != "u" || co.Password != "q" || co.PoolSize != 7 ||
		co.TLSConfig == nil || co.TLSConfig.ServerName != "" || !slices.Equal(co.Addrs, []string{"a:1", "b:2"}) {
		t.Errorf("cluster options: dial %v read %v write %v dial retries %d context timeouts %v user %q password %q pool %d TLS %v addrs %q",
			co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.DialerRetries, co.ContextTimeoutEnabled, co.Username, co.Password, co.PoolSize, co.TLSConfig, co.Addrs)
	}
	// One seed is enough for a cluster.
	one, err := NewUniversalClient(ClientConfig{ClusterAddrs: []string{"a:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := one.(*redis.ClusterClient); !ok {
		t.Errorf("one cluster seed gives a %T, want a *redis.ClusterClient", one)
	}
	_ = one.Close()

	fc, err := NewUniversalClient(ClientConfig{URL: "redis:///3", MasterName: "m", SentinelAddrs: []string{"s:26379"}, SentinelPassword: "sp"})
	if err != nil {
		t.Fatal(err)
	}
	fo := fc.(*redis.Client).Options()
	_ = fc.Close()
	if fo.DialTimeout != 2*time.Second || fo.ReadTimeout != 2*time.Second || fo.WriteTimeout != 2*time.Second ||
		fo.DialerRetries != 1 || !fo.ContextTimeoutEnabled || fo.DB != 3 {
		t.Errorf("failover options: dial %v read %v write %v dial retries %d context timeouts %v db %d",
			fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout, fo.DialerRetries, fo.ContextTimeoutEnabled, fo.DB)
	}

	// The single Redis with a separate password.
	sc, err := NewUniversalClient(ClientConfig{URL: "redis://u@h:1/2", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	so := sc.(*redis.Client).Options()
	_ = sc.Close()
	if so.Addr != "h:1" || so.Username != "u" || so.Password != "pw" || so.DB != 2 || !so.ContextTimeoutEnabled || so.DialerRetries != 1 {
		t.Errorf("single options: %s user %q password %q db %d", so.Addr, so.Username, so.Password, so.DB)
	}
}
