package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// Two instances on a private Redis Cluster, then on a private Redis
// Sentinel, configured with the flags an operator would use: the ingest
// holder writes through the fenced script, the other instance reads the
// last value and streams the message from its tail, and a client resumes
// on it from the history.
func TestRedisDeployments(t *testing.T) {
	for _, tc := range []struct {
		name string
		// start returns the flags and the servers that hold the data.
		start func(t *testing.T) ([]string, []string)
	}{
		{"cluster", func(t *testing.T) ([]string, []string) {
			c := testenv.StartRedisCluster(t)
			return []string{"--redis-cluster-addrs", strings.Join(c.Addrs[:2], ",")}, c.Addrs // a partial seed list
		}},
		{"sentinel", func(t *testing.T) ([]string, []string) {
			s := testenv.StartRedisSentinel(t, 0)
			return []string{"--redis-sentinel-master", s.MasterName, "--redis-sentinel-addrs", s.SentinelAddr}, []string{s.Master.Addr}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := testenv.Prefix(t)
			flags, servers := tc.start(t)
			args := append([]string{"--mqtt-url", testenv.MosquittoURL(t), "--topics", prefix + "/#",
				"--redis-key-prefix", prefix + ":"}, flags...)
			a := start(t, args...)
			b := start(t, append(args, "--instance-id", "second")...)
			a.waitReady(t)
			b.waitReady(t)

			filter := "filter=" + url.QueryEscape(prefix+"/d/+")
			c, _ := b.wsConnect(t, filter)
			a.publish(t, prefix+"/d/1", "m1")
			a.publish(t, prefix+"/d/2", "m2")
			got := c.messages(2)
			if p := payloads(got); p != "m1,m2" {
				t.Fatalf("instance b streamed %s, want m1,m2", p)
			}
			for _, in := range []*instance{a, b} {
				eventually(t, "GET d/2", func() string {
					resp, body := in.do(t, "GET", "/v1/topics/"+prefix+"/d/2", nil)
					if resp.StatusCode != 200 || string(body) != "m2" {
						return fmt.Sprintf("%d %q", resp.StatusCode, body)
					}
					return ""
				})
			}
			// Resume on a's side from the first id: the history has the rest.
			r, _ := a.wsConnect(t, filter+"&last_id="+url.QueryEscape(fmt.Sprint(got[0]["id"])))
			if m := r.messages(1)[0]; m["id"] != got[1]["id"] {
				t.Fatalf("resumed with %v, want %v", m["id"], got[1]["id"])
			}
			// The data is in that deployment (not, say, in memory).
			keys := int64(0)
			for _, addr := range servers {
				n, err := testenv.RedisDo(addr, 2*time.Second, "DBSIZE")
				if err != nil {
					t.Fatal(err)
				}
				keys += n.(int64)
			}
			if keys < 4 { // history, topics, two last values (and the lease)
				t.Fatalf("the %s holds %d keys, want the store's", tc.name, keys)
			}
		})
	}
}
