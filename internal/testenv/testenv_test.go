package testenv

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTB records Fatalf instead of failing the real test.
type fakeTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	panic(f)
}

// fatal runs fn with a fakeTB and returns the Fatalf message ("" if none).
func fatal(t *testing.T, fn func(tb testing.TB)) (msg string) {
	f := &fakeTB{TB: t}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		msg = f.msg
	}()
	fn(f)
	return ""
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", FreePort(t)) }

func TestSharedServicesAnswer(t *testing.T) {
	if u := MosquittoURL(t); u == "" {
		t.Fatal("empty Mosquitto URL")
	}
	if u := RedisURL(t); u == "" {
		t.Fatal("empty Redis URL")
	}
}

func TestMissingServicesFailClearly(t *testing.T) {
	t.Setenv(EnvMQTTURL, "mqtt://"+deadAddr(t))
	msg := fatal(t, func(tb testing.TB) { MosquittoURL(tb) })
	if !strings.Contains(msg, "does not answer") || !strings.Contains(msg, EnvMQTTURL) {
		t.Fatalf("MosquittoURL with nothing listening: %q", msg)
	}
	t.Setenv(EnvRedisURL, "redis://"+deadAddr(t)+"/0")
	msg = fatal(t, func(tb testing.TB) { RedisURL(tb) })
	if !strings.Contains(msg, "does not answer") || !strings.Contains(msg, EnvRedisURL) {
		t.Fatalf("RedisURL with nothing listening: %q", msg)
	}
	// Something that accepts TCP but is not MQTT does not pass either.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			_ = c.Close()
		}
	}()
	t.Setenv(EnvMQTTURL, "mqtt://"+l.Addr().String())
	if msg := fatal(t, func(tb testing.TB) { MosquittoURL(tb) }); msg == "" {
		t.Fatal("MosquittoURL accepted a server that does not speak MQTT")
	}
}

func TestPrefixIsUnique(t *testing.T) {
	re := regexp.MustCompile(`^mbtest/[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		p := Prefix(t)
		if !re.MatchString(p) || seen[p] {
			t.Fatalf("bad or repeated prefix %q", p)
		}
		seen[p] = true
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	_ = l.Close()
}

func TestPrivateMosquittoStopStart(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	if m.URL != fmt.Sprintf("mqtt://127.0.0.1:%d", m.Port) {
		t.Fatalf("URL %q", m.URL)
	}
	sub := Subscribe(t, m.URL, "a/#")
	Publish(t, m.URL, bridge.Message{Topic: "a/b", Payload: []byte("1"), QoS: 1})
	if got := NextMessage(t, sub, 5*time.Second); string(got.Payload) != "1" {
		t.Fatalf("got %s", String(got))
	}
	m.Stop()
	if err := dialCheck(fmt.Sprintf("127.0.0.1:%d", m.Port), time.Second); err == nil {
		t.Fatal("still accepting after Stop")
	}
	m.Stop() // twice is fine
	m.Start()
	Publish(t, m.URL, bridge.Message{Topic: "a/b", Payload: []byte("2"), QoS: 1})
}

func TestPrivateMosquittoOptions(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{
		Users:          map[string]string{"alice": "pw"},
		ACL:            "user alice\ntopic readwrite ok/#",
		PersistenceDir: t.TempDir(),
		WebSockets:     true,
		Extra:          "max_packet_size 1000",
	})
	if m.WSPort == 0 || !strings.HasPrefix(m.WSURL, "ws://127.0.0.1:") {
		t.Fatalf("no websockets listener: %+v", m)
	}
	// Anonymous clients are refused once there are users.
	if err := mqttPing(fmt.Sprintf("127.0.0.1:%d", m.Port), 2*time.Second); err == nil {
		t.Fatal("anonymous CONNECT accepted")
	}
	authURL := fmt.Sprintf("mqtt://alice:pw@127.0.0.1:%d", m.Port)
	sub := Subscribe(t, authURL, "ok/#")
	Publish(t, authURL, bridge.Message{Topic: "ok/1", Payload: []byte("x"), QoS: 1})
	if got := NextMessage(t, sub, 5*time.Second); got.Topic != "ok/1" {
		t.Fatalf("got %s", String(got))
	}
	if !strings.Contains(m.Log(), "mosquitto version") {
		t.Fatalf("no broker log: %q", m.Log())
	}
}

func TestSubscribeKeepsProperties(t *testing.T) {
	url := MosquittoURL(t)
	prefix := Prefix(t)
	sub := Subscribe(t, url, prefix+"/#")
	pf, exp := byte(1), uint32(100)
	in := bridge.Message{Topic: prefix + "/p", Payload: []byte{0, 255}, QoS: 2, Properties: bridge.Properties{
		ContentType: "ct", PayloadFormat: &pf, MessageExpiry: &exp, ResponseTopic: "rt", CorrelationData: []byte("cd"),
		UserProperties: []bridge.UserProperty{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}},
	}}
	Publish(t, url, in)
	got := NextMessage(t, sub, 5*time.Second)
	p := got.Properties
	if got.QoS != 2 || string(got.Payload) != "\x00\xff" || p.ContentType != "ct" || *p.PayloadFormat != 1 ||
		*p.MessageExpiry > 100 || p.ResponseTopic != "rt" || string(p.CorrelationData) != "cd" ||
		fmt.Sprint(p.UserProperties) != "[{k 1} {k 2}]" {
		t.Fatalf("got %s", String(got))
	}
}

func TestNewCertsAreUsableByMosquitto(t *testing.T) {
	c := NewCerts(t)
	m := StartMosquitto(t, MosquittoOptions{TLS: &MosquittoTLS{CertFile: c.ServerCertFile, KeyFile: c.ServerKey}})
	if m.TLSPort == 0 || m.TLSURL != fmt.Sprintf("mqtts://127.0.0.1:%d", m.TLSPort) {
		t.Fatalf("TLS listener: %+v", m)
	}
}

// The delay proxy forwards to Redis, at once until slowed, and slows the
// answers by at least the delay set at run time.
func TestDelayProxy(t *testing.T) {
	u, err := url.Parse(RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := StartDelayProxy(t, u.Host)
	ping := func() time.Duration {
		t.Helper()
		start := time.Now()
		if r, err := RedisDo(p.Addr, 10*time.Second, "PING"); err != nil || r != "PONG" {
			t.Fatalf("PING through the proxy: %v %v", r, err)
		}
		return time.Since(start)
	}
	ping()
	p.SetDelay(500 * time.Millisecond)
	if d := ping(); d < 500*time.Millisecond {
		t.Fatalf("a slowed PING took %s, want at least 500ms", d)
	}
	p.SetDelay(0)
	ping()
}
