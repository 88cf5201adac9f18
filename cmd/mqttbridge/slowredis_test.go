package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// historyPayloads reads the payloads of the history stream of the Redis
// at addr, oldest first.
func historyPayloads(tb testing.TB, addr, keyPrefix string) []string {
	tb.Helper()
	r, err := testenv.RedisDo(addr, 5*time.Second, "XRANGE", "{"+keyPrefix+"}history", "-", "+")
	if err != nil {
		tb.Fatalf("XRANGE: %v", err)
	}
	var out []string
	entries, _ := r.([]any)
	for _, e := range entries {
		fields, _ := e.([]any)[1].([]any)
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i] == "payload" {
				out = append(out, fmt.Sprint(fields[i+1]))
			}
		}
	}
	return out
}

// A slow Redis (slowed, not stopped) never costs the ingest its broker
// connection: every Redis answer takes longer than the broker waits for a
// packet of a client with a 1 s keep alive (1.5 s), but less than the
// store timeout (2 s) and the lease, for several keep alive periods while
// QoS 1 messages arrive. The ingest hands messages from paho's callback
// to its own goroutine, which writes them and then acknowledges them, so
// paho goes on answering the keep alive. The broker must neither time the
// ingest client out nor see it leave, and every message must be in the
// history exactly once, in order.
func TestSlowRedisKeepsIngestConnected(t *testing.T) {
	testenv.Long(t, "several keep-alive periods against a slowed Redis")
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	ru, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartDelayProxy(t, ru.Host)
	pu := *ru
	pu.Host = proxy.Addr
	prefix := testenv.Prefix(t)
	keyPrefix := prefix + ":"
	in := startWith(t, func(c *config.Config) {
		c.MQTT.Keepalive = config.Duration(time.Second)
		c.MQTT.IngestLease = config.Duration(10 * time.Second)
	}, "--mqtt-url", mq.URL, "--redis-url", pu.String(), "--redis-key-prefix", keyPrefix, "--topics", prefix+"/#")
	in.waitReady(t)
	t.Cleanup(func() {
		_, _ = testenv.RedisDo(ru.Host, 5*time.Second, "DEL", "{"+keyPrefix+"}history")
	})

	// go-redis opens a connection with a handshake of three round trips
	// under the deadline of the call that needs it: at 1.7 s a round trip
	// no connection can open within 2 s (docs/architecture.md, Failures).
	// Concurrent reads while Redis is a little slow give the pool the
	// connections the slow part needs.
	proxy.SetDelay(300 * time.Millisecond)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if resp, err := http.Get(in.base + "/v1/topics/" + prefix + "/none"); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	proxy.SetDelay(0)

	publish := func(payload string) {
		testenv.Publish(t, mq.URL, bridge.Message{Topic: prefix + "/seq", Payload: []byte(payload), QoS: 1})
	}
	publish("warm-up") // the ingest is subscribed and writes
	eventually(t, "the warm-up message in the history", func() string {
		if h := historyPayloads(t, ru.Host, keyPrefix); len(h) != 1 {
			return fmt.Sprint(h)
		}
		return ""
	})

	const delay = 1700 * time.Millisecond // > 1.5 × keep alive, < store timeout (2 s)
	proxy.SetDelay(delay)
	const n = 30
	for i := 1; i <= n; i++ { // over 6 s: four times what the broker waits
		publish(fmt.Sprint(i))
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * delay) // the last ones are written while Redis is slow
	proxy.SetDelay(0)

	want := []string{"warm-up"}
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	eventually(t, "every message in the history once, in order", func() string {
		if h := historyPayloads(t, ru.Host, keyPrefix); strings.Join(h, ",") != strings.Join(want, ",") {
			return fmt.Sprint(h)
		}
		return ""
	})
	// The broker saw the ingest client connect once and never leave.
	log := mq.Log()
	var ingest []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "-ingest-") || strings.Contains(line, "exceeded timeout") {
			ingest = append(ingest, line)
		}
	}
	if len(ingest) != 1 || !strings.Contains(ingest[0], "New client connected") {
		t.Fatalf("the broker's log of the ingest client: %q, want one connect; the whole log:\n%s", ingest, log)
	}
}
