package embedded

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The inline ingest gets what MQTT says its filters match (mochi's inline
// subscriptions do not): "#" does not take the broker's $SYS topics
// (published every second), and "a/#" takes "a". Retained messages come
// once when it opens; a device's will comes too; after Close nothing more.
func TestInlineIngestMatchesLikeMQTT(t *testing.T) {
	b := start(t)
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "a", Payload: []byte("kept"), QoS: 1, Retain: true})
	c, err := b.Inline(InlineConfig{Name: "embedded"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	got := make(chan bridge.Message, 100)
	ingest, err := c.Ingest([]string{"#", "a/#"})(context.Background(), func(ms []bridge.Message) bool {
		for _, m := range ms {
			got <- m
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := testenv.NextMessage(t, got, 5*time.Second); m.Topic != "a" || string(m.Payload) != "kept" || !m.Retain {
		t.Fatalf("retained: %s", testenv.String(m))
	}
	time.Sleep(1500 * time.Millisecond) // a $SYS tick or more
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "a", Payload: []byte("live"), QoS: 2})
	m := testenv.NextMessage(t, got, 5*time.Second)
	if string(m.Payload) == "kept" {
		// mochi acknowledges and retains a publish before it hands it to
		// its subscribers and hooks: when the ingest opened in between,
		// the message came with the retained ones and comes again live,
		// as for any MQTT subscriber that subscribes meanwhile (QoS 1
		// allows it). It happens on a loaded machine.
		m = testenv.NextMessage(t, got, 5*time.Second)
	}
	if m.Topic != "a" || string(m.Payload) != "live" || m.QoS != 1 || m.Retain {
		t.Fatalf("live: %s", testenv.String(m))
	}
	will := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", port(t, b), "-V", "mqttv5", "-t", "z",
		"--will-topic", "dev/status", "--will-payload", "offline", "--will-qos", "1")
	if err := will.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // mosquitto_sub is connected
	_ = will.Process.Kill()
	_ = will.Wait()
	if m := testenv.NextMessage(t, got, 5*time.Second); m.Topic != "dev/status" || string(m.Payload) != "offline" || m.QoS != 1 {
		t.Fatalf("will: %s", testenv.String(m))
	}
	if err := ingest.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Publish(t, b.URL(), bridge.Message{Topic: "a/b", Payload: []byte("after")})
	select {
	case m := <-got:
		t.Fatalf("after Close: %s", testenv.String(m))
	case <-time.After(200 * time.Millisecond):
	}
}

// What the bridge publishes inline reaches a device on the TCP listener
// with its properties; a $SYS topic is refused with a reason code, as the
// broker refuses it from any client.
func TestInlinePublish(t *testing.T) {
	b := start(t)
	c, err := b.Inline(InlineConfig{Name: "embedded"})
	if err != nil {
		t.Fatal(err)
	}
	sub := testenv.Subscribe(t, b.URL(), "x/#")
	pf := byte(1)
	msg := bridge.Message{Topic: "x/y", Payload: []byte("hi"), QoS: 2, Properties: bridge.Properties{
		ContentType: "text/plain", PayloadFormat: &pf, ResponseTopic: "x/r", CorrelationData: []byte{1, 2},
		UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}}
	if _, err := c.Publish(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	m := testenv.NextMessage(t, sub, 5*time.Second)
	if m.Properties.PayloadFormat == nil || *m.Properties.PayloadFormat != 1 {
		t.Fatalf("payload format: %v", m.Properties.PayloadFormat)
	}
	m.Properties.PayloadFormat, msg.Properties.PayloadFormat = nil, nil
	if testenv.String(m) != testenv.String(msg) {
		t.Fatalf("got  %s\nwant %s", testenv.String(m), testenv.String(msg))
	}
	if _, err := c.Publish(context.Background(), bridge.Message{Topic: "$SYS/x", QoS: 1}); bridge.ErrorCode(err) == "" {
		t.Fatalf("publish to $SYS: %v", err)
	}
	_ = c.Close(context.Background())
	if _, err := c.Publish(context.Background(), msg); err != bridge.ErrUnavailable {
		t.Fatalf("after Close: %v", err)
	}
}
