package mqtt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// A Conn with a reply prefix subscribes to it and hands what arrives there
// to OnReply, never to OnMessage; an ignored prefix reaches neither.
func TestRepliesAndIgnoredPrefix(t *testing.T) {
	t.Parallel()
	url := testenv.MosquittoURL(t)
	prefix := testenv.Prefix(t)
	onMsg, got := collector()
	replies := make(chan bridge.Message, 10)
	c := open(t, mqtt.Config{
		URL: url, Filters: []string{prefix + "/data/#"}, OnMessage: onMsg,
		ReplyPrefix: prefix + "/reply/me/", OnReply: func(m bridge.Message) { replies <- m },
	})
	if !c.RepliesReady() || c.ReplyPrefix() != prefix+"/reply/me/" {
		t.Fatalf("RepliesReady %v, prefix %q", c.RepliesReady(), c.ReplyPrefix())
	}
	// The ingest side: a wide filter that matches every instance's
	// replies, with those ignored.
	ingested, fromIngest := collector()
	open(t, mqtt.Config{URL: url, Filters: []string{prefix + "/#"}, OnMessage: ingested, IgnorePrefix: prefix + "/reply/"})

	testenv.Publish(t, url, bridge.Message{Topic: prefix + "/reply/me/abc", Payload: []byte("answer"), QoS: 1,
		Properties: bridge.Properties{CorrelationData: []byte{1, 2}}})
	testenv.Publish(t, url, bridge.Message{Topic: prefix + "/reply/other/abc", Payload: []byte("not mine"), QoS: 1})
	testenv.Publish(t, url, bridge.Message{Topic: prefix + "/data/1", Payload: []byte("data"), QoS: 1})

	r := testenv.NextMessage(t, replies, 5*time.Second)
	if r.Topic != prefix+"/reply/me/abc" || string(r.Payload) != "answer" || string(r.Properties.CorrelationData) != "\x01\x02" {
		t.Fatalf("reply %s", testenv.String(r))
	}
	if m := testenv.NextMessage(t, got, 5*time.Second); m.Topic != prefix+"/data/1" {
		t.Fatalf("OnMessage got %s", testenv.String(m))
	}
	if m := testenv.NextMessage(t, fromIngest, 5*time.Second); m.Topic != prefix+"/data/1" {
		t.Fatalf("the ingest got %s, want the data only", testenv.String(m))
	}
	select {
	case m := <-replies:
		t.Fatalf("a second reply: %s", testenv.String(m))
	case m := <-got:
		t.Fatalf("OnMessage got %s", testenv.String(m))
	case m := <-fromIngest:
		t.Fatalf("the ingest got %s", testenv.String(m))
	case <-time.After(300 * time.Millisecond):
	}
}

// The reply subscription comes back after the broker restarts, and readiness
// waits for it.
func TestRepliesAfterRestart(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	replies := make(chan bridge.Message, 10)
	c := open(t, mqtt.Config{
		URL: m.URL, ReplyPrefix: "replies/i1/", OnReply: func(msg bridge.Message) { replies <- msg },
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 300 * time.Millisecond,
	})
	m.Stop()
	eventually(t, 5*time.Second, "the reply subscription to be down", func() bool { return !c.RepliesReady() })
	m.Start()
	awaitReady(t, c, 5*time.Second)
	if !c.RepliesReady() {
		t.Fatal("ready, but the replies are not")
	}
	testenv.Publish(t, m.URL, bridge.Message{Topic: "replies/i1/x", Payload: []byte("back"), QoS: 1})
	if r := testenv.NextMessage(t, replies, 5*time.Second); string(r.Payload) != "back" {
		t.Fatalf("reply %s", testenv.String(r))
	}
}

// A refused reply subscription shows in Problems and RepliesReady.
func TestReplySubscriptionRefused(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{DynSec: dynSecDenySubscribe})
	c := open(t, mqtt.Config{URL: m.URL, ReplyPrefix: "denied/replies/", OnReply: func(bridge.Message) {},
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}, true)
	eventually(t, 5*time.Second, "the refusal in Problems", func() bool {
		p := c.Problems()
		return len(p) == 1 && strings.Contains(p[0], `subscription to "denied/replies/+" refused`)
	})
	if c.RepliesReady() {
		t.Fatal("RepliesReady with a refused subscription")
	}
}

func TestReplyConfigRefused(t *testing.T) {
	for name, cfg := range map[string]mqtt.Config{
		"prefix without /":       {ReplyPrefix: "a", OnReply: func(bridge.Message) {}},
		"prefix with wildcard":   {ReplyPrefix: "a/+/", OnReply: func(bridge.Message) {}},
		"prefix without OnReply": {ReplyPrefix: "a/"},
		"OnReply without prefix": {OnReply: func(bridge.Message) {}},
		"ignore without /":       {IgnorePrefix: "x"},
	} {
		cfg.URL, cfg.ClientID = "mqtt://127.0.0.1:1", "x"
		if c, err := mqtt.New(context.Background(), cfg); err == nil {
			_ = c.Close(context.Background())
			t.Errorf("%s: accepted", name)
		}
	}
}
