package testenv

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The cluster is really a cluster: every node reports all slots served,
// split over the three masters.
func TestStartRedisCluster(t *testing.T) {
	c := StartRedisCluster(t)
	if len(c.Addrs) != 3 || len(c.Nodes) != 3 {
		t.Fatalf("%d addresses, %d nodes; want 3", len(c.Addrs), len(c.Nodes))
	}
	v, err := RedisDo(c.Addrs[0], 2*time.Second, "CLUSTER", "SLOTS")
	if err != nil {
		t.Fatal(err)
	}
	ranges, _ := v.([]any)
	owners := map[string]bool{}
	slots := int64(0)
	for _, r := range ranges {
		e := r.([]any)
		slots += e[1].(int64) - e[0].(int64) + 1
		node := e[2].([]any)
		owners[node[0].(string)+":"+strconv.FormatInt(node[1].(int64), 10)] = true
	}
	if slots != 16384 || len(owners) != 3 {
		t.Fatalf("CLUSTER SLOTS: %d slots over %d nodes %v; want 16384 over 3", slots, len(owners), owners)
	}
	for _, a := range c.Addrs {
		if !owners[a] {
			t.Errorf("node %s serves no slot", a)
		}
	}
	// A key of another node's slot is redirected.
	moved := 0
	for _, a := range c.Addrs {
		if _, err := RedisDo(a, 2*time.Second, "GET", "{mqttbridge:}history"); err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			moved++
		}
	}
	if moved != 2 {
		t.Errorf("%d of 3 nodes answered MOVED for one key, want 2", moved)
	}
}

// The sentinel knows the master and its replica, and promotes the replica
// when the master dies.
func TestStartRedisSentinel(t *testing.T) {
	s := StartRedisSentinel(t, 1)
	if addr, err := s.MasterAddr(); err != nil || addr != s.Master.Addr {
		t.Fatalf("sentinel's master = %q, %v; want %s", addr, err, s.Master.Addr)
	}
	if _, err := RedisDo(s.Replicas[0].Addr, 2*time.Second, "SET", "k", "v"); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Fatalf("a write to the replica: %v, want READONLY", err)
	}
	s.Master.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, err := s.MasterAddr()
		if err == nil && addr == s.Replicas[0].Addr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover within 30 s: master %q, %v\n%s", addr, err, s.Sentinel.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("failover to %s", s.Replicas[0].Addr)
}
