package mqtt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/internal/embedded"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open creates a Conn, closes it at the end of the test (checking that Close
// succeeds) and, unless noWait, waits until it is ready.
func open(t *testing.T, cfg mqtt.Config, noWait ...bool) *mqtt.Conn {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "mbtest-" + strings.ReplaceAll(testenv.Prefix(t), "/", "-")
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := mqtt.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if len(noWait) == 0 || !noWait[0] {
		awaitReady(t, c, 10*time.Second)
	}
	return c
}

func awaitReady(t *testing.T, c *mqtt.Conn, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.AwaitReady(ctx); err != nil {
		t.Fatalf("AwaitReady: %v; problems: %q", err, c.Problems())
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collector is an OnMessage that records messages on a channel.
func collector() (func(bridge.Message), chan bridge.Message) {
	ch := make(chan bridge.Message, 1000)
	return func(m bridge.Message) { ch <- m }, ch
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func binaryPayload() []byte {
	p := make([]byte, 256)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func fullProperties() bridge.Properties {
	pf, exp := byte(0), uint32(3600)
	return bridge.Properties{
		ContentType:     "application/x-test; v=1",
		PayloadFormat:   &pf,
		MessageExpiry:   &exp,
		ResponseTopic:   "reply/to/me",
		CorrelationData: []byte{0, 255, 1, 254},
		UserProperties: []bridge.UserProperty{
			{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}, {Key: "ünï", Value: ""},
		},
	}
}

// sameMessage compares what a receiver saw with what was sent; the expiry
// may have counted down by a few seconds.
func sameMessage(t *testing.T, got, want bridge.Message) {
	t.Helper()
	g, w := got.Properties, want.Properties
	ok := got.Topic == want.Topic && bytes.Equal(got.Payload, want.Payload) && got.QoS == want.QoS &&
		got.Retain == want.Retain && g.ContentType == w.ContentType && g.ResponseTopic == w.ResponseTopic &&
		bytes.Equal(g.CorrelationData, w.CorrelationData) &&
		fmt.Sprintf("%q", g.UserProperties) == fmt.Sprintf("%q", w.UserProperties) &&
		(g.PayloadFormat == nil) == (w.PayloadFormat == nil) && (g.PayloadFormat == nil || *g.PayloadFormat == *w.PayloadFormat) &&
		(g.MessageExpiry == nil) == (w.MessageExpiry == nil) &&
		(g.MessageExpiry == nil || (*g.MessageExpiry <= *w.MessageExpiry && *g.MessageExpiry+5 >= *w.MessageExpiry))
	if !ok {
		t.Fatalf("message differs\n got: %s\nwant: %s", testenv.String(got), testenv.String(want))
	}
	if got.ReceivedAt.IsZero() {
		t.Errorf("ReceivedAt not set")
	}
}

func TestPublishQoS012WithEveryProperty(t *testing.T) {
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	sub := testenv.Subscribe(t, url, prefix+"/#")
	c := open(t, mqtt.Config{URL: url})

	for qos := byte(0); qos <= 2; qos++ {
		msg := bridge.Message{
			Topic:      fmt.Sprintf("%s/qos%d", prefix, qos),
			Payload:    binaryPayload(),
			QoS:        qos,
			Properties: fullProperties(),
		}
		res, err := c.Publish(t.Context(), msg)
		if err != nil {
			t.Fatalf("QoS %d: Publish: %v", qos, err)
		}
		if res.ReasonCode >= 0x80 {
			t.Fatalf("QoS %d: reason code 0x%02X", qos, res.ReasonCode)
		}
		sameMessage(t, testenv.NextMessage(t, sub, 5*time.Second), msg)
	}

	// No properties at all stays no properties (nil pointers, not zeros).
	bare := bridge.Message{Topic: prefix + "/bare", Payload: []byte("x"), QoS: 1}
	if _, err := c.Publish(t.Context(), bare); err != nil {
		t.Fatal(err)
	}
	sameMessage(t, testenv.NextMessage(t, sub, 5*time.Second), bare)
}

func TestAgainstEmbeddedBroker(t *testing.T) {
	// The no-config default: this adapter talking to the embedded mochi broker.
	b, err := embedded.Start(embedded.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "demo/retained", Payload: []byte("21.5"), QoS: 1, Retain: true})
	onMsg, got := collector()
	c := open(t, mqtt.Config{URL: b.URL(), Filters: []string{"demo/#"}, OnMessage: onMsg})
	if m := testenv.NextMessage(t, got, 5*time.Second); string(m.Payload) != "21.5" || !m.Retain {
		t.Fatalf("retained: %s", testenv.String(m))
	}
	if c.MaxPacketSize() != 0 {
		t.Errorf("MaxPacketSize = %d, want 0 (no limit)", c.MaxPacketSize())
	}
	for qos := byte(0); qos <= 2; qos++ {
		msg := bridge.Message{Topic: fmt.Sprintf("demo/q%d", qos), Payload: binaryPayload(), QoS: qos, Retain: qos == 2, Properties: fullProperties()}
		if _, err := c.Publish(t.Context(), msg); err != nil {
			t.Fatalf("QoS %d: %v", qos, err)
		}
		msg.QoS = min(msg.QoS, 1) // subscribed with QoS 1
		m := testenv.NextMessage(t, got, 5*time.Second)
		for m.Topic == "demo/retained" {
			// A resubscription (a retried SUBSCRIBE on a loaded machine)
			// gets the retained message again; that is MQTT, not a bug.
			m = testenv.NextMessage(t, got, 5*time.Second)
		}
		sameMessage(t, m, msg)
	}
}

func TestPublishResultReasonCode(t *testing.T) {
	// Mosquitto answers a QoS 1 publish that no one receives with 0x10
	// (no matching subscribers); that is success, not an error.
	c := open(t, mqtt.Config{URL: testenv.MosquittoURL(t)})
	res, err := c.Publish(t.Context(), bridge.Message{Topic: testenv.Prefix(t) + "/nobody", Payload: []byte("x"), QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReasonCode != 0x10 && res.ReasonCode != 0 {
		t.Fatalf("reason code 0x%02X, want 0x00 or 0x10", res.ReasonCode)
	}
}

func TestIncomingMessagesAndRetainFlag(t *testing.T) {
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { // leave no retained messages on the shared broker
		for _, tp := range []string{"/retained", "/live-retained"} {
			mosquittoPub(t, "-V", "mqttv5", "-h", host(url), "-p", port(url), "-t", prefix+tp, "-r", "-n")
		}
	})
	// Retained before the bridge subscribes, from an external client, with
	// properties.
	mosquittoPub(t, "-V", "mqttv5", "-h", host(url), "-p", port(url), "-t", prefix+"/retained", "-r", "-q", "1", "-m", "21.5",
		"-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "unit", "C")

	onMsg, got := collector()
	c := open(t, mqtt.Config{URL: url, Filters: []string{prefix + "/#"}, OnMessage: onMsg})
	if p := c.Problems(); len(p) != 0 {
		t.Fatalf("Problems after AwaitReady: %q", p)
	}

	m := testenv.NextMessage(t, got, 5*time.Second)
	if m.Topic != prefix+"/retained" || string(m.Payload) != "21.5" || !m.Retain || m.QoS != 1 ||
		m.Properties.ContentType != "text/plain" || fmt.Sprint(m.Properties.UserProperties) != "[{unit C}]" {
		t.Fatalf("retained message = %s", testenv.String(m))
	}

	// Live messages keep their properties; the retain flag is as published.
	live := bridge.Message{Topic: prefix + "/live", Payload: binaryPayload(), QoS: 1, Properties: fullProperties()}
	testenv.Publish(t, url, live)
	sameMessage(t, testenv.NextMessage(t, got, 5*time.Second), live)

	liveRetained := bridge.Message{Topic: prefix + "/live-retained", Payload: []byte("r"), QoS: 2, Retain: true}
	testenv.Publish(t, url, liveRetained)
	liveRetained.QoS = 1 // the bridge subscribes with QoS 1
	sameMessage(t, testenv.NextMessage(t, got, 5*time.Second), liveRetained)

	// An empty retained payload (a delete) arrives with Retain set.
	del := bridge.Message{Topic: prefix + "/live-retained", Payload: []byte{}, QoS: 1, Retain: true}
	testenv.Publish(t, url, del)
	m = testenv.NextMessage(t, got, 5*time.Second)
	sameMessage(t, m, del)
	if !m.IsDelete() {
		t.Fatalf("empty retained message is not a delete: %s", testenv.String(m))
	}
	if c.Dropped() != 0 {
		t.Errorf("Dropped = %d", c.Dropped())
	}
}

func TestArrivalOrder(t *testing.T) {
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	onMsg, got := collector()
	c := open(t, mqtt.Config{URL: url, Filters: []string{prefix + "/#"}, OnMessage: onMsg})
	const n = 200
	for i := range n {
		if _, err := c.Publish(t.Context(), bridge.Message{Topic: prefix + "/seq", Payload: fmt.Appendf(nil, "%d", i), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m := testenv.NextMessage(t, got, 5*time.Second)
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d has payload %q", i, m.Payload)
		}
	}
}

func TestBrokerStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	prefix := testenv.Prefix(t)
	onMsg, got := collector()
	c := open(t, mqtt.Config{
		URL: m.URL, Filters: []string{prefix + "/#"}, OnMessage: onMsg,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 400 * time.Millisecond,
	})

	m.Stop()
	eventually(t, 3*time.Second, "Problems to report the lost connection", func() bool { return len(c.Problems()) > 0 })
	start := time.Now()
	_, err := c.Publish(t.Context(), bridge.Message{Topic: prefix + "/x", Payload: []byte("x"), QoS: 1})
	if elapsed := time.Since(start); elapsed > 200*time.Millisecond {
		t.Errorf("Publish while disconnected took %s", elapsed)
	}
	if !errors.Is(err, bridge.ErrUnavailable) {
		t.Fatalf("Publish while disconnected: %v, want ErrUnavailable", err)
	}
	if p := c.Problems(); len(p) != 1 || !strings.Contains(p[0], `broker "test": not connected`) {
		t.Fatalf("Problems = %q", p)
	}

	// Down for 4s: an uncapped doubling backoff (attempts at about 0.05,
	// 0.15, 0.35, 0.75, 1.55, 3.15, 6.35s) would not try again for more than
	// 2s after the restart; capped at 400ms it must be back well within 1.5s.
	time.Sleep(4 * time.Second)
	m.Start()
	restarted := time.Now()
	awaitReady(t, c, 1500*time.Millisecond)
	t.Logf("ready %s after the broker restarted", time.Since(restarted))
	if p := c.Problems(); len(p) != 0 {
		t.Fatalf("Problems after reconnect = %q", p)
	}
	// Resubscribed: a message published after the restart arrives.
	testenv.Publish(t, m.URL, bridge.Message{Topic: prefix + "/after", Payload: []byte("back"), QoS: 1})
	if msg := testenv.NextMessage(t, got, 5*time.Second); string(msg.Payload) != "back" {
		t.Fatalf("after restart got %s", testenv.String(msg))
	}
	if _, err := c.Publish(t.Context(), bridge.Message{Topic: prefix + "/x", Payload: []byte("x"), QoS: 1}); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
}

func TestPublishDeniedByACL(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{ACL: "topic readwrite ok/#"})
	c := open(t, mqtt.Config{URL: m.URL})
	for _, qos := range []byte{1, 2} {
		_, err := c.Publish(t.Context(), bridge.Message{Topic: "denied/x", Payload: []byte("x"), QoS: qos})
		var be *bridge.Error
		if !errors.As(err, &be) || be.Code != bridge.ECodeForbidden || be.ReasonCode != 0x87 {
			t.Fatalf("QoS %d publish to a denied topic: %v, want forbidden with reason 0x87", qos, err)
		}
	}
	if _, err := c.Publish(t.Context(), bridge.Message{Topic: "ok/x", Payload: []byte("x"), QoS: 1}); err != nil {
		t.Fatalf("allowed publish: %v", err)
	}
	if p := c.Problems(); len(p) != 0 {
		t.Fatalf("a refused publish must not break the connection: %q", p)
	}
}

// dynSecDenySubscribe is a Mosquitto dynamic security configuration that
// lets anonymous clients do anything except subscribe to denied/#.
const dynSecDenySubscribe = `{
 "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": true, "unsubscribe": true},
 "clients": [],
 "groups": [{"groupname": "anon", "roles": [{"rolename": "r"}]}],
 "roles": [{"rolename": "r", "acls": [{"acltype": "subscribePattern", "topic": "denied/#", "priority": 0, "allow": false}]}],
 "anonymousGroup": "anon"
}`

func TestSubscriptionRefusedShowsInProblems(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{DynSec: dynSecDenySubscribe})
	onMsg, got := collector()
	c := open(t, mqtt.Config{
		URL: m.URL, Filters: []string{"ok/#", "denied/#"}, OnMessage: onMsg,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	}, true)
	want := `broker "test": subscription to "denied/#" refused: reason 0x87 not authorized`
	eventually(t, 5*time.Second, "the refusal in Problems", func() bool {
		p := c.Problems()
		return len(p) == 1 && p[0] == want
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := c.AwaitReady(ctx); err == nil {
		t.Fatal("AwaitReady succeeded with a refused subscription")
	}
	// The other filter works, and retrying does not break the connection.
	time.Sleep(500 * time.Millisecond)
	testenv.Publish(t, m.URL, bridge.Message{Topic: "ok/1", Payload: []byte("fine"), QoS: 1})
	if msg := testenv.NextMessage(t, got, 5*time.Second); string(msg.Payload) != "fine" {
		t.Fatalf("got %s", testenv.String(msg))
	}
	if p := c.Problems(); len(p) != 1 || p[0] != want {
		t.Fatalf("Problems = %q", p)
	}
}

func TestMaximumPacketSize(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_packet_size 1024"})
	sub := testenv.Subscribe(t, m.URL, "big/#")
	c := open(t, mqtt.Config{URL: m.URL})
	if got := c.MaxPacketSize(); got != 1024 {
		t.Fatalf("MaxPacketSize = %d, want 1024", got)
	}
	// PUBLISH QoS 1 to "big/x": fixed header 1 + remaining-length 2 (for
	// 128..16383) + topic 2+5 + packet id 2 + properties length 1 + payload.
	const overhead = 1 + 2 + 2 + 5 + 2 + 1
	tooBig := bridge.Message{Topic: "big/x", Payload: bytes.Repeat([]byte("a"), 1024-overhead+1), QoS: 1}
	_, err := c.Publish(t.Context(), tooBig)
	var be *bridge.Error
	if !errors.As(err, &be) || be.Code != bridge.ECodePayloadTooLarge {
		t.Fatalf("oversize Publish: %v, want payload_too_large", err)
	}
	// Exactly at the limit passes (the broker would drop the connection if
	// the size were counted wrong).
	fits := bridge.Message{Topic: "big/x", Payload: bytes.Repeat([]byte("b"), 1024-overhead), QoS: 1}
	if _, err := c.Publish(t.Context(), fits); err != nil {
		t.Fatalf("Publish of exactly 1024 bytes: %v", err)
	}
	small := bridge.Message{Topic: "big/y", Payload: []byte("small"), QoS: 1}
	if _, err := c.Publish(t.Context(), small); err != nil {
		t.Fatalf("small Publish after the refused one: %v", err)
	}
	if got := testenv.NextMessage(t, sub, 5*time.Second); len(got.Payload) != len(fits.Payload) {
		t.Fatalf("first delivered message has %d bytes, want the %d-byte one", len(got.Payload), len(fits.Payload))
	}
	if got := testenv.NextMessage(t, sub, 5*time.Second); string(got.Payload) != "small" {
		t.Fatalf("got %s", testenv.String(got))
	}
	if p := c.Problems(); len(p) != 0 {
		t.Fatalf("Problems = %q", p)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	c := open(t, mqtt.Config{
		URL: m.URL, PublishTimeout: 300 * time.Millisecond, Keepalive: 60 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})

	// A hung broker: the PUBLISH is written, no PUBACK comes.
	m.Pause()
	start := time.Now()
	_, err := c.Publish(t.Context(), bridge.Message{Topic: "t/x", Payload: []byte("x"), QoS: 1})
	if !errors.Is(err, bridge.ErrTimeout) {
		t.Fatalf("Publish to a hung broker: %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(start); elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("ErrTimeout after %s, want about PublishTimeout (300ms)", elapsed)
	}
	m.Resume()
	if _, err := c.Publish(t.Context(), bridge.Message{Topic: "t/x", Payload: []byte("x"), QoS: 1}); err != nil {
		t.Fatalf("Publish after the broker resumed: %v", err)
	}

	// The connection is lost while waiting for the acknowledgement: the
	// answer is ErrTimeout (outcome unknown) long before PublishTimeout.
	c2 := open(t, mqtt.Config{URL: m.URL, PublishTimeout: 20 * time.Second, ClientID: "mbtest-timeouts-2"})
	m.Pause()
	errc := make(chan error, 1)
	start = time.Now()
	go func() {
		_, err := c2.Publish(context.Background(), bridge.Message{Topic: "t/y", Payload: []byte("y"), QoS: 2})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	m.Kill()
	select {
	case err := <-errc:
		if !errors.Is(err, bridge.ErrTimeout) {
			t.Fatalf("Publish when the connection is lost: %v, want ErrTimeout", err)
		}
		t.Logf("ErrTimeout after %s: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("Publish still waiting 5s after the connection was lost")
	}
	m.Start()
	awaitReady(t, c2, 5*time.Second)
}

func TestStuckWriteIsBounded(t *testing.T) {
	t.Parallel()
	// A broker that stops reading: once the socket buffers are full, paho's
	// write blocks (it sets no deadline). Publish must still return within
	// about PublishTimeout even at QoS 0, which waits for no acknowledgement.
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	c := open(t, mqtt.Config{URL: m.URL, PublishTimeout: 300 * time.Millisecond, Keepalive: 60 * time.Second})
	m.Pause()
	payload := bytes.Repeat([]byte("z"), 1<<20)
	timedOut := false
	for i := 0; i < 64 && !timedOut; i++ {
		start := time.Now()
		_, err := c.Publish(t.Context(), bridge.Message{Topic: "stuck/x", Payload: payload, QoS: 0})
		if elapsed := time.Since(start); elapsed > 1500*time.Millisecond {
			t.Fatalf("publish %d took %s", i, elapsed)
		}
		switch {
		case errors.Is(err, bridge.ErrTimeout):
			t.Logf("publish %d (%d MB written): %v", i, i, err)
			timedOut = true
		case err != nil:
			t.Fatalf("QoS 0 publish %d: %v", i, err)
		}
	}
	if !timedOut {
		t.Fatal("64 MB written to a paused broker without a timeout")
	}
	m.Kill() // ends the connection, and so the stuck write
}

func TestQueueFullDropsAndCounts(t *testing.T) {
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	first := make(chan struct{}, 1)
	c := open(t, mqtt.Config{
		URL: url, Filters: []string{prefix + "/#"}, QueueSize: 2,
		OnMessage: func(m bridge.Message) {
			select {
			case first <- struct{}{}:
			default:
			}
			<-release
			mu.Lock()
			got = append(got, string(m.Payload))
			mu.Unlock()
		},
	})
	const n = 20
	for i := range n {
		testenv.Publish(t, url, bridge.Message{Topic: prefix + "/q", Payload: fmt.Appendf(nil, "%d", i), QoS: 1})
		if i == 0 {
			<-first // OnMessage holds message 0; the queue takes 2 more
		}
	}
	eventually(t, 5*time.Second, "drops to be counted", func() bool { return c.Dropped() == n-3 })
	close(release)
	eventually(t, 5*time.Second, "the queued messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("delivered %v, want [0 1 2] in order", got)
	}
}

func TestTLSWithClientCertificate(t *testing.T) {
	t.Parallel()
	certs := testenv.NewCerts(t)
	wssPort := testenv.FreePort(t)
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{
		TLS: &testenv.MosquittoTLS{
			CertFile: certs.ServerCertFile, KeyFile: certs.ServerKey, CAFile: certs.CAFile, RequireCertificate: true,
		},
		Extra: fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\ncertfile %s\nkeyfile %s",
			wssPort, certs.ServerCertFile, certs.ServerKey),
	})
	sub := testenv.Subscribe(t, m.URL, "tls/#")
	c := open(t, mqtt.Config{URL: m.TLSURL, TLS: mqtt.TLSConfig{
		CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKey, ServerName: certs.ServerName,
	}})
	if _, err := c.Publish(t.Context(), bridge.Message{Topic: "tls/x", Payload: []byte("secure"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if msg := testenv.NextMessage(t, sub, 5*time.Second); string(msg.Payload) != "secure" {
		t.Fatalf("got %s", testenv.String(msg))
	}

	// A broker certificate from another CA is refused, and says so.
	bad := open(t, mqtt.Config{URL: m.TLSURL, ClientID: "mbtest-tls-bad", TLS: mqtt.TLSConfig{
		CAFile: certs.OtherCAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKey, ServerName: certs.ServerName,
	}}, true)
	eventually(t, 5*time.Second, "a certificate error in Problems", func() bool {
		p := bad.Problems()
		return len(p) == 1 && strings.Contains(p[0], "certificate")
	})
	// wss:// with the same TLS settings (server certificate only).
	wss := open(t, mqtt.Config{URL: fmt.Sprintf("wss://localhost:%d/mqtt", wssPort), ClientID: "mbtest-wss",
		TLS: mqtt.TLSConfig{CAFile: certs.CAFile}})
	if _, err := wss.Publish(t.Context(), bridge.Message{Topic: "tls/wss", Payload: []byte("wss"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if msg := testenv.NextMessage(t, sub, 5*time.Second); string(msg.Payload) != "wss" {
		t.Fatalf("got %s", testenv.String(msg))
	}
	// ssl:// is an alias of mqtts://.
	open(t, mqtt.Config{URL: strings.Replace(m.TLSURL, "mqtts://", "ssl://", 1), ClientID: "mbtest-tls-alias", TLS: mqtt.TLSConfig{
		CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKey, ServerName: certs.ServerName,
	}})
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{WebSockets: true})
	onMsg, got := collector()
	c := open(t, mqtt.Config{URL: m.WSURL + "/mqtt", Filters: []string{"ws/#"}, OnMessage: onMsg})
	if _, err := c.Publish(t.Context(), bridge.Message{Topic: "ws/x", Payload: binaryPayload(), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	if msg := testenv.NextMessage(t, got, 5*time.Second); !bytes.Equal(msg.Payload, binaryPayload()) {
		t.Fatalf("got %s", testenv.String(msg))
	}
}

func TestPasswordsAndSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Users: map[string]string{"alice": secret}})
	var logs testenv.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Wrong password: refused, the reason is visible, no password anywhere.
	bad := open(t, mqtt.Config{URL: m.URL, Username: "alice", Password: "wrong-" + secret, Logger: logger,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond}, true)
	// Mosquitto 2.0.11 answers a wrong password with 0x87 (not 0x86).
	eventually(t, 5*time.Second, "the refused CONNECT in Problems", func() bool {
		p := bad.Problems()
		return len(p) == 1 && strings.Contains(p[0], "the broker refused the connection: reason 0x87 not authorized")
	})
	// Credentials in the URL work and are not logged either.
	good := open(t, mqtt.Config{URL: "mqtt://alice:" + secret + "@" + strings.TrimPrefix(m.URL, "mqtt://"),
		ClientID: "mbtest-pw-good", Logger: logger})
	if _, err := good.Publish(t.Context(), bridge.Message{Topic: "a", Payload: []byte("x"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	all := logs.String() + strings.Join(bad.Problems(), "\n")
	if strings.Contains(all, secret) {
		t.Fatalf("the password appears in logs or Problems:\n%s", all)
	}
	if !strings.Contains(logs.String(), "connection attempt failed") {
		t.Fatalf("expected the failed attempts in the log:\n%s", logs.String())
	}
}

func TestCloseTwiceAndAfterClose(t *testing.T) {
	c, err := mqtt.New(context.Background(), mqtt.Config{Name: "x", URL: testenv.MosquittoURL(t), ClientID: "mbtest-close-" + testenv.Prefix(t)[7:]})
	if err != nil {
		t.Fatal(err)
	}
	awaitReady(t, c, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Publish(ctx, bridge.Message{Topic: "a", Payload: []byte("x"), QoS: 1}); !errors.Is(err, bridge.ErrUnavailable) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if p := c.Problems(); len(p) != 1 || !strings.Contains(p[0], "closed") {
		t.Fatalf("Problems after Close = %q", p)
	}
}

func TestCloseWhileNeverConnected(t *testing.T) {
	// Nothing listens on this port: Close must still end every goroutine
	// (goleak checks at the end of the package).
	c, err := mqtt.New(context.Background(), mqtt.Config{URL: fmt.Sprintf("mqtt://127.0.0.1:%d", testenv.FreePort(t)), ClientID: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a connect error in Problems", func() bool {
		p := c.Problems()
		return len(p) == 1 && strings.Contains(p[0], "last error")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	noop := func(bridge.Message) {}
	for _, tc := range []struct {
		name string
		cfg  mqtt.Config
		want string
	}{
		{"no URL", mqtt.Config{ClientID: "c"}, "URL is required"},
		{"no client id", mqtt.Config{URL: "mqtt://h"}, "ClientID is required"},
		{"bad scheme", mqtt.Config{URL: "http://h", ClientID: "c"}, "scheme"},
		{"no host", mqtt.Config{URL: "mqtt://", ClientID: "c"}, "no host"},
		{"path on mqtt", mqtt.Config{URL: "mqtt://h/x", ClientID: "c"}, "path"},
		{"bad filter", mqtt.Config{URL: "mqtt://h", ClientID: "c", Filters: []string{"a/#/b"}, OnMessage: noop}, "filter"},
		{"duplicate filter", mqtt.Config{URL: "mqtt://h", ClientID: "c", Filters: []string{"a", "a"}, OnMessage: noop}, "twice"},
		{"filters without OnMessage", mqtt.Config{URL: "mqtt://h", ClientID: "c", Filters: []string{"a"}}, "OnMessage"},
		{"keepalive too short", mqtt.Config{URL: "mqtt://h", ClientID: "c", Keepalive: time.Millisecond}, "Keepalive"},
		{"max below min", mqtt.Config{URL: "mqtt://h", ClientID: "c", ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "ReconnectMax"},
		{"missing CA", mqtt.Config{URL: "mqtts://h", ClientID: "c", TLS: mqtt.TLSConfig{CAFile: dir + "/nope.pem"}}, "CA file"},
		{"cert without key", mqtt.Config{URL: "mqtts://h", ClientID: "c", TLS: mqtt.TLSConfig{CertFile: dir + "/c.pem"}}, "together"},
		{"unreadable key pair", mqtt.Config{URL: "wss://h/mqtt", ClientID: "c", TLS: mqtt.TLSConfig{CertFile: dir + "/c.pem", KeyFile: dir + "/k.pem"}}, "client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mqtt.New(context.Background(), tc.cfg)
			if err == nil {
				_ = c.Close(context.Background())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	// A password in a rejected URL is not echoed.
	_, err := mqtt.New(context.Background(), mqtt.Config{URL: "http://u:hunter2@h", ClientID: "c"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
}

func mosquittoPub(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
	}
}

func port(url string) string { return url[strings.LastIndex(url, ":")+1:] }

func host(url string) string {
	h := url[strings.Index(url, "://")+3 : strings.LastIndex(url, ":")]
	return h[strings.LastIndex(h, "@")+1:]
}

// OnMessagesAck gets what queued up while it was busy as one batch, in
// order, and every message exactly once.
func TestBatchedAck(t *testing.T) {
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	largest := 0
	handle := func(ms []bridge.Message) bool {
		mu.Lock()
		first := len(got) == 0
		for _, m := range ms {
			got = append(got, string(m.Payload))
		}
		largest = max(largest, len(ms))
		mu.Unlock()
		if first {
			<-release // hold the first batch while the rest queues
		}
		return true
	}
	open(t, mqtt.Config{URL: url, Filters: []string{prefix + "/#"}, OnMessagesAck: handle, SessionExpiry: time.Minute})
	const n = 50
	for i := range n {
		testenv.Publish(t, url, bridge.Message{Topic: prefix + "/seq", Payload: fmt.Appendf(nil, "%d", i), QoS: 1})
	}
	eventually(t, 5*time.Second, "the first batch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	time.Sleep(200 * time.Millisecond) // let more arrive behind the held batch (more is only better)
	close(release)
	eventually(t, 10*time.Second, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	})
	mu.Lock()
	defer mu.Unlock()
	for i, p := range got {
		if p != fmt.Sprint(i) {
			t.Fatalf("message %d has payload %q (got %q)", i, p, got)
		}
	}
	if len(got) != n {
		t.Fatalf("%d messages, want %d", len(got), n)
	}
	if largest < 2 {
		t.Errorf("the largest batch had %d message(s): what queued behind a busy handler was not batched", largest)
	}
}
