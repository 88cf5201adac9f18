package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisCluster is a private Redis Cluster of three masters (no replicas)
// on loopback, every slot assigned.
type RedisCluster struct {
	Nodes []*Process
	Addrs []string // host:port of each node, the seed list for a client
}

// StartRedisCluster starts three redis-server processes with
// --cluster-enabled yes (nothing kept on disk), joins them with
// `redis-cli --cluster create ... --cluster-replicas 0`, and waits until
// every node reports cluster_state:ok and knows the other two. The
// cleanup kills them. It takes a second or two.
func StartRedisCluster(tb testing.TB) *RedisCluster {
	tb.Helper()
	Long(tb, "a Redis Cluster")
	dir := tb.TempDir()
	c := &RedisCluster{}
	ports := clusterPorts(tb, 3)
	for i, port := range ports {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := StartProcess(tb, fmt.Sprintf("redis-server (cluster node %d)", i), addr, nil,
			"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
			"--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--loglevel", "warning")
		c.Nodes = append(c.Nodes, p)
		c.Addrs = append(c.Addrs, addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, lastLines(out, 20))
	}

	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.Addrs {
		for {
			info, err := RedisDo(addr, 2*time.Second, "CLUSTER", "INFO")
			s, _ := info.(string)
			if err == nil && strings.Contains(s, "cluster_state:ok") && strings.Contains(s, "cluster_known_nodes:3") &&
				strings.Contains(s, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testenv: the Redis Cluster node %s is not ready: %v\n%s", addr, err, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// clusterPorts returns n free loopback ports whose cluster bus ports (the
// port + 10000) are free too, all below 32768.
func clusterPorts(tb testing.TB, n int) []int {
	tb.Helper()
	var out []int
	taken := map[int]bool{}
	for p := 20000 + os.Getpid()%2000; len(out) < n && p < 22768; p += 7 {
		if taken[p] || !portFree(p) || !portFree(p+10000) {
			continue
		}
		taken[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		tb.Fatalf("testenv: no %d free ports for a Redis Cluster", n)
	}
	return out
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// RedisSentinel is a private Redis master, its replicas, and one sentinel
// that monitors the master with quorum 1, on loopback.
type RedisSentinel struct {
	MasterName   string
	Master       *Process
	Replicas     []*Process
	Sentinel     *Process
	SentinelAddr string // host:port of the sentinel
}

// StartRedisSentinel starts a master redis-server, replicas of it, and a
// sentinel (`redis-server <config> --sentinel`) monitoring it as
// "mqttbridge-test" with quorum 1, down-after-milliseconds 1000 and
// failover-timeout 5000, so that killing the master promotes a replica
// within a few seconds. It waits until the replicas are in sync and the
// sentinel knows them. Nothing is kept on disk. The cleanup kills
// everything.
func StartRedisSentinel(tb testing.TB, replicas int) *RedisSentinel {
	tb.Helper()
	Long(tb, "Redis Sentinel")
	dir := tb.TempDir()
	s := &RedisSentinel{MasterName: "mqttbridge-test"}
	node := func(name string, extra ...string) *Process {
		port := FreePort(tb)
		args := append([]string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
			"--appendonly", "no", "--dir", tb.TempDir(), "--daemonize", "no", "--loglevel", "warning"}, extra...)
		return StartProcess(tb, name, fmt.Sprintf("127.0.0.1:%d", port), nil, args...)
	}
	s.Master = node("redis-server (master)")
	host, mport, _ := net.SplitHostPort(s.Master.Addr)
	for i := range replicas {
		s.Replicas = append(s.Replicas, node(fmt.Sprintf("redis-server (replica %d)", i), "--replicaof", host, mport))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range s.Replicas {
		waitRedis(tb, deadline, r.Addr, "the replica's link to its master", func() (bool, string) {
			v, err := RedisDo(r.Addr, 2*time.Second, "INFO", "replication")
			info, _ := v.(string)
			return err == nil && strings.Contains(info, "master_link_status:up"), fmt.Sprint(info, err)
		})
	}

	port := FreePort(tb)
	s.SentinelAddr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "sentinel.conf") // the sentinel rewrites it
	text := fmt.Sprintf(`bind 127.0.0.1
port %d
daemonize no
dir %s
logfile ""
loglevel warning
sentinel monitor %s %s %s 1
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 5000
sentinel parallel-syncs %[3]s 1
`, port, dir, s.MasterName, host, mport)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	s.Sentinel = StartProcess(tb, "redis-server --sentinel", s.SentinelAddr, nil, "redis-server", conf, "--sentinel")
	waitRedis(tb, deadline, s.SentinelAddr, "the sentinel's view of the master and its replicas", func() (bool, string) {
		addr, err := s.MasterAddr()
		if err != nil || addr != s.Master.Addr {
			return false, fmt.Sprint(addr, err)
		}
		v, err := RedisDo(s.SentinelAddr, 2*time.Second, "SENTINEL", "REPLICAS", s.MasterName)
		list, _ := v.([]any)
		return err == nil && len(list) == replicas, fmt.Sprint(v, err)
	})
	return s
}

// MasterAddr asks the sentinel for the current master (host:port).
func (s *RedisSentinel) MasterAddr() (string, error) {
	v, err := RedisDo(s.SentinelAddr, 2*time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
	if err != nil {
		return "", err
	}
	hp, ok := v.([]any)
	if !ok || len(hp) != 2 {
		return "", fmt.Errorf("unexpected answer %v", v)
	}
	h, _ := hp[0].(string)
	p, _ := hp[1].(string)
	return net.JoinHostPort(h, p), nil
}

func waitRedis(tb testing.TB, deadline time.Time, addr, what string, ok func() (bool, string)) {
	tb.Helper()
	for {
		done, state := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: %s at %s is not ready: %s", what, addr, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RedisDo sends one command to the Redis (or sentinel) at addr on a new
// connection and returns the reply: a string for simple and bulk strings,
// an int64, nil, or []any for arrays; an error reply is an error.
func RedisDo(addr string, timeout time.Duration, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return readRESP(bufio.NewReader(c))
}

func readRESP(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readRESP(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP line %q", line)
}
