package embedded

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Broker {
	t.Helper()
	b, err := Start(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func port(t *testing.T, b *Broker) string {
	t.Helper()
	return strconv.Itoa(b.Addr().(*net.TCPAddr).Port)
}

func TestStartReportsBoundAddressAndClosesTwice(t *testing.T) {
	b, err := Start(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := b.Addr().(*net.TCPAddr)
	if !ok || a.Port == 0 {
		t.Fatalf("Addr() = %v, want the bound port", b.Addr())
	}
	if want := fmt.Sprintf("mqtt://127.0.0.1:%d", a.Port); b.URL() != want {
		t.Errorf("URL() = %q, want %q", b.URL(), want)
	}
	c, err := net.DialTimeout("tcp", a.String(), time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = c.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("listener still accepts after Close")
	}
}

func TestURLOnAllInterfacesUsesLoopback(t *testing.T) {
	b, err := Start(Config{Addr: ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if want := "mqtt://127.0.0.1:" + port(t, b); b.URL() != want {
		t.Errorf("URL() = %q, want %q", b.URL(), want)
	}
	testenv.Subscribe(t, b.URL(), "x") // reachable through that URL
}

func TestBindErrorIsStartError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := Start(Config{Addr: l.Addr().String()})
	if err == nil {
		_ = b.Close()
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestCloseEndsHalfOpenConnections(t *testing.T) {
	b := start(t)
	// A client that connects but never sends CONNECT must not hold Close.
	c, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the broker accept it
	done := make(chan struct{})
	go func() { _ = b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a connection that never sent CONNECT")
	}
}

func TestMosquittoPubRetainedAndQoS(t *testing.T) {
	b := start(t)
	p := port(t, b)
	// A retained message from an external client, before anyone subscribes.
	mosquittoPub(t, "-V", "mqttv5", "-p", p, "-t", "demo/temp", "-r", "-m", "21.5")
	sub := testenv.Subscribe(t, b.URL(), "demo/#")
	m := testenv.NextMessage(t, sub, 5*time.Second)
	if m.Topic != "demo/temp" || string(m.Payload) != "21.5" || !m.Retain {
		t.Fatalf("retained message = %s, want demo/temp 21.5 retained", testenv.String(m))
	}
	for qos := range 3 {
		mosquittoPub(t, "-V", "mqttv5", "-p", p, "-t", "demo/q", "-q", strconv.Itoa(qos), "-m", "q"+strconv.Itoa(qos))
		m := testenv.NextMessage(t, sub, 5*time.Second)
		if string(m.Payload) != "q"+strconv.Itoa(qos) || int(m.QoS) != qos || m.Retain {
			t.Errorf("QoS %d publish arrived as %s", qos, testenv.String(m))
		}
	}
	// MQTT 3.1.1 clients (mosquitto_pub's default) can join too.
	mosquittoPub(t, "-p", p, "-t", "demo/v311", "-q", "1", "-m", "old")
	if m := testenv.NextMessage(t, sub, 5*time.Second); string(m.Payload) != "old" {
		t.Errorf("MQTT 3.1.1 publish arrived as %s", testenv.String(m))
	}
}

func TestRetainAsPublished(t *testing.T) {
	b := start(t)
	withRAP := testenv.Subscribe(t, b.URL(), "rap/#") // Retain As Published
	withoutRAP := subscribeNoRAP(t, b.URL(), "rap/#")
	// Both subscriptions are active once a live message reaches both;
	// before that a retained publish could arrive from the retained store,
	// flagged as retained for either subscriber.
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "rap/sync", Payload: []byte("s"), QoS: 1})
	testenv.NextMessage(t, withRAP, 5*time.Second)
	testenv.NextMessage(t, withoutRAP, 5*time.Second)

	testenv.Publish(t, b.URL(), bridge.Message{Topic: "rap/a", Payload: []byte("1"), QoS: 1, Retain: true})
	if m := testenv.NextMessage(t, withRAP, 5*time.Second); !m.Retain {
		t.Errorf("Retain As Published subscriber got retain=false for a retained publish")
	}
	// The control: without the option the broker must clear the flag, or
	// the check above proves nothing.
	if m := testenv.NextMessage(t, withoutRAP, 5*time.Second); m.Retain {
		t.Errorf("subscriber without Retain As Published got retain=true")
	}
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "rap/a", Payload: []byte("2"), QoS: 1})
	if m := testenv.NextMessage(t, withRAP, 5*time.Second); m.Retain || string(m.Payload) != "2" {
		t.Errorf("live non-retained publish arrived as %s", testenv.String(m))
	}
}

func TestEmptyRetainedDeletes(t *testing.T) {
	b := start(t)
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "del/a", Payload: []byte("v"), QoS: 1, Retain: true})
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "del/b", Payload: []byte("w"), QoS: 1, Retain: true})
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "del/a", Payload: nil, QoS: 1, Retain: true})
	// Without Retain As Published only messages from the retained store
	// carry the retain flag (the broker may still be forwarding the live
	// publishes above, as QoS 1 is acknowledged before delivery).
	sub := subscribeNoRAP(t, b.URL(), "del/#")
	var retained []string
	timeout := time.After(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case m := <-sub:
			if m.Retain {
				retained = append(retained, m.Topic+"="+string(m.Payload))
			}
		case <-timeout:
			done = true
		}
	}
	if fmt.Sprint(retained) != "[del/b=w]" {
		t.Fatalf("retained messages on subscribe = %v, want [del/b=w]", retained)
	}
}

func TestPropertiesRoundTrip(t *testing.T) {
	b := start(t)
	sub := testenv.Subscribe(t, b.URL(), "props/#")
	pf, exp := byte(1), uint32(3600)
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte(i)
	}
	in := bridge.Message{Topic: "props/x", Payload: payload, QoS: 2, Properties: bridge.Properties{
		ContentType: "application/octet-stream", PayloadFormat: &pf, MessageExpiry: &exp,
		ResponseTopic: "props/reply", CorrelationData: []byte{0, 1, 2},
		UserProperties: []bridge.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}},
	}}
	testenv.Publish(t, b.URL(), in)
	m := testenv.NextMessage(t, sub, 5*time.Second)
	p := m.Properties
	if !bytes.Equal(m.Payload, payload) || m.QoS != 2 || p.ContentType != in.Properties.ContentType ||
		p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.MessageExpiry == nil || *p.MessageExpiry > exp || *p.MessageExpiry < exp-5 ||
		p.ResponseTopic != "props/reply" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2}) ||
		fmt.Sprint(p.UserProperties) != fmt.Sprint(in.Properties.UserProperties) {
		t.Fatalf("got %s\nwant %s", testenv.String(m), testenv.String(in))
	}
}

func TestRetainedMessagesDoNotExpireByDefault(t *testing.T) {
	// mochi's default capabilities expire every message (retained ones
	// included) after a day; the embedded broker must not.
	b := start(t)
	if got := b.srv.Options.Capabilities.MaximumMessageExpiryInterval; got != 0 {
		t.Fatalf("MaximumMessageExpiryInterval = %d, want 0 (no forced expiry)", got)
	}
}

func mosquittoPub(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
	}
}

// subscribeNoRAP subscribes without Retain As Published.
func subscribeNoRAP(t *testing.T, url, filter string) <-chan bridge.Message {
	t.Helper()
	ch := make(chan bridge.Message, 100)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "mqtt://"))
	if err != nil {
		t.Fatal(err)
	}
	cli := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case ch <- bridge.Message{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload, Retain: pr.Packet.Retain}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := cli.Connect(ctx, &paho.Connect{ClientID: "norap", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cli.Disconnect(&paho.Disconnect{})
		<-cli.Done()
	})
	if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return ch
}
