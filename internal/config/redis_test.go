package config

import (
	"reflect"
	"strings"
	"testing"
)

// Redis deployments: single (redis.url), Sentinel and Cluster.
func TestRedisDeploymentProblems(t *testing.T) {
	tests := []struct {
		name, yaml, key string
		want            []string
	}{
		{"sentinel without master", "redis: {sentinel: {addrs: ['s:26379']}}", "redis.sentinel.master_name", []string{"missing"}},
		{"sentinel without addrs", "redis: {sentinel: {master_name: m}}", "redis.sentinel.addrs", []string{"missing", "host:port"}},
		{"sentinel addr without port", "redis: {sentinel: {master_name: m, addrs: ['s:26379', 's2']}}", "redis.sentinel.addrs[1]", []string{`"s2": want host:port`}},
		{"sentinel addr bad port", "redis: {sentinel: {master_name: m, addrs: ['s:0']}}", "redis.sentinel.addrs[0]", []string{`"s:0"`}},
		{"sentinel addr twice", "redis: {sentinel: {master_name: m, addrs: ['s:1', 's:1']}}", "redis.sentinel.addrs[1]", []string{"already redis.sentinel.addrs[0]"}},
		{"cluster addr without host", "redis: {cluster: {addrs: [':6379']}}", "redis.cluster.addrs[0]", []string{`":6379"`}},
		{"sentinel and cluster", "redis: {sentinel: {master_name: m, addrs: ['s:1']}, cluster: {addrs: ['c:1']}}", "redis.cluster", []string{"redis.sentinel", "one or the other"}},
		{"url host with sentinel", "redis: {url: 'redis://:pw@r:6379/0', sentinel: {master_name: m, addrs: ['s:1']}}", "redis.url", []string{`host "r:6379"`, "redis.sentinel.addrs", "rediss://:password@/0"}},
		{"url host with cluster", "redis: {url: 'rediss://r', cluster: {addrs: ['c:1']}}", "redis.url", []string{"redis.cluster.addrs"}},
		{"cluster database", "redis: {url: 'redis:///2', cluster: {addrs: ['c:1']}}", "redis.url", []string{"only database 0"}},
		{"sentinel scheme", "redis: {url: 'http:///0', sentinel: {master_name: m, addrs: ['s:1']}}", "redis.url", []string{`unsupported scheme "http"`}},
		{"sentinel password without sentinel", "redis: {url: 'redis://r', sentinel: {password: p}}", "redis.sentinel.password", []string{"only used with redis.sentinel.addrs"}},
		{"sentinel username without sentinel", "redis: {sentinel: {username: u}}", "redis.sentinel.username", []string{"only used with redis.sentinel.addrs"}},
		{"password without any redis", "redis: {password: p}", "redis.password", []string{"redis.sentinel or redis.cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			requireProblem(t, err, tt.key, tt.want...)
		})
	}
}

func TestRedisDeployments(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "sentinel-pw", "s3cret\n")
	tests := []struct {
		name, yaml string
		env        map[string]string
		args       []string
		want       Redis
	}{
		{name: "single", yaml: "redis: {url: 'redis://r:6379/1'}",
			want: Redis{URL: "redis://r:6379/1"}},
		{name: "sentinel", yaml: "redis: {url: 'rediss://:pw@/2', sentinel: {master_name: m, addrs: ['s1:26379', 's2:26379'], username: su, password_file: sentinel-pw}}",
			want: Redis{URL: "rediss://:pw@/2", Sentinel: RedisSentinel{MasterName: "m", Addrs: []string{"s1:26379", "s2:26379"},
				Username: "su", Password: "s3cret", PasswordFile: pwFile}}},
		{name: "sentinel without url, password apart", yaml: "redis: {password: pw, sentinel: {master_name: m, addrs: ['s:26379']}}",
			want: Redis{Password: "pw", Sentinel: RedisSentinel{MasterName: "m", Addrs: []string{"s:26379"}}}},
		{name: "cluster with one seed", yaml: "redis: {cluster: {addrs: ['10.0.0.1:6379']}}",
			want: Redis{Cluster: RedisCluster{Addrs: []string{"10.0.0.1:6379"}}}},
		{name: "cluster from the environment", env: map[string]string{"MQTTBRIDGE_REDIS_CLUSTER_ADDRS": "a:1, b:2,c:3", "MQTTBRIDGE_REDIS_URL": "redis://:pw@"},
			want: Redis{URL: "redis://:pw@", Cluster: RedisCluster{Addrs: []string{"a:1", "b:2", "c:3"}}}},
		{name: "sentinel from flags", args: []string{"--redis-sentinel-master", "m", "--redis-sentinel-addrs", "s:1,t:2"},
			env:  map[string]string{"MQTTBRIDGE_REDIS_SENTINEL_PASSWORD": "sp"},
			want: Redis{Sentinel: RedisSentinel{MasterName: "m", Addrs: []string{"s:1", "t:2"}, Password: "sp"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, dir, "mqttbridge.yaml", tt.yaml)
			cfg, err := Load(append([]string{"--config", p}, tt.args...), env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Redis
			got.KeyPrefix = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("redis = %#v\nwant %#v", got, tt.want)
			}
			if !got.Enabled() {
				t.Error("Enabled() = false")
			}
		})
	}
	if Default().Redis.Enabled() {
		t.Error("the default enables Redis")
	}
}

// The sentinels' password is redacted like the others.
func TestRedisSentinelPasswordRedacted(t *testing.T) {
	c := Default()
	c.Redis.Sentinel = RedisSentinel{MasterName: "m", Addrs: []string{"s:1"}, Password: "s3cret"}
	for _, s := range []string{c.String(), c.Redis.String(), c.GoString()} {
		if strings.Contains(s, "s3cret") || !strings.Contains(s, "s:1") {
			t.Errorf("rendered config shows the sentinel password or lacks the addrs:\n%s", s)
		}
	}
}
