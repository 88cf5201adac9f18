// Package testenv holds the helpers that tests use to reach real parts: the
// shared Mosquitto and Redis, private Mosquitto brokers, an MQTT v5
// subscriber and publisher for assertions, unique prefixes, free ports and
// TLS certificates.
//
// Helpers take a testing.TB, fail the test (never skip it) when a part does
// not answer, and release what they start with tb.Cleanup. Two decide
// whether a test runs: Long leaves the slow tiers (fleets, Sentinel and
// Cluster, browsers) out of go test -short, and SkipMissing skips a test
// whose tool (Node, Chromium) is not installed, except with CI=true. Raw
// MQTT is spoken with internal/mqttpacket. Only tests import this package.
package testenv

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// Environment variables naming the shared services.
const (
	EnvMQTTURL  = "MQTTBRIDGE_TEST_MQTT_URL"  // default mqtt://127.0.0.1:1883
	EnvRedisURL = "MQTTBRIDGE_TEST_REDIS_URL" // default redis://127.0.0.1:6379/0
)

// MosquittoURL is the URL of the shared Mosquitto (MQTTBRIDGE_TEST_MQTT_URL,
// default mqtt://127.0.0.1:1883). It fails the test if the broker does not
// complete an MQTT v5 CONNECT within a few seconds.
func MosquittoURL(tb testing.TB) string {
	tb.Helper()
	raw := os.Getenv(EnvMQTTURL)
	if raw == "" {
		raw = "mqtt://127.0.0.1:1883"
	}
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("testenv: %s=%q is not a URL: %v", EnvMQTTURL, raw, err)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		if err := mqttPing(u.Host, 5*time.Second); err != nil {
			tb.Fatalf("testenv: the shared Mosquitto at %s does not answer MQTT v5 (%v); start it or set %s", u.Redacted(), err, EnvMQTTURL)
		}
	default:
		if err := dialCheck(u.Host, 5*time.Second); err != nil {
			tb.Fatalf("testenv: the shared Mosquitto at %s does not answer (%v); start it or set %s", u.Redacted(), err, EnvMQTTURL)
		}
	}
	return raw
}

// RedisURL is the URL of the shared Redis (MQTTBRIDGE_TEST_REDIS_URL,
// default redis://127.0.0.1:6379/0). It fails the test if Redis does not
// answer PING within a few seconds.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	raw := os.Getenv(EnvRedisURL)
	if raw == "" {
		raw = "redis://127.0.0.1:6379/0"
	}
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("testenv: %s=%q is not a URL: %v", EnvRedisURL, raw, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.Scheme == "redis" {
		err = redisPing(host, 5*time.Second)
	} else {
		err = dialCheck(host, 5*time.Second)
	}
	if err != nil {
		tb.Fatalf("testenv: the shared Redis at %s does not answer (%v); start it or set %s", u.Redacted(), err, EnvRedisURL)
	}
	return raw
}

// Prefix is a unique topic and key prefix such as "mbtest/3f9a1c0d2b7e",
// without a trailing slash, so that tests sharing a broker or Redis do not
// see each other's data.
func Prefix(tb testing.TB) string {
	tb.Helper()
	return "mbtest/" + randomHex(tb, 6)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// preferably below 32768 (outside Linux's ephemeral range, so that outgoing
// connections do not take it before the test binds it).
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(32768-20000))
		if err != nil {
			tb.Fatalf("testenv: random: %v", err)
		}
		port := 20000 + int(n.Int64())
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(b)
}

func dialCheck(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// mqttPing sends an MQTT v5 CONNECT (clean start, random client id) and
// expects a successful CONNACK.
func mqttPing(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	cid := "mbtest-ping-" + hex.EncodeToString(id)
	if _, err := c.Write(mqttpacket.Connect5(cid, 10)); err != nil {
		return err
	}
	p, err := mqttpacket.ReadPacket(bufio.NewReader(c), 1<<16)
	if err != nil {
		return fmt.Errorf("no CONNACK: %w", err)
	}
	if rc, err := mqttpacket.ReasonCode(p); p.Kind() != packets.CONNACK || err != nil || rc >= 0x80 {
		return fmt.Errorf("unexpected CONNACK % x", p.Bytes())
	}
	_, _ = c.Write([]byte{0xE0, 0}) // DISCONNECT
	return nil
}

// redisPing sends PING and accepts +PONG, or an error reply (such as
// NOAUTH) that proves Redis is there.
func redisPing(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no reply to PING: %w", err)
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-") {
		return fmt.Errorf("unexpected reply to PING: %q", line)
	}
	return nil
}
