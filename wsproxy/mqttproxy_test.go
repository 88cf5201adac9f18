package wsproxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// MQTT 5 through the proxy to the shared Mosquitto: the CONNACK is
// rewritten, a SUBSCRIBE with a refused filter is split and its SUBACK
// merged in order, refused publishes get 0x87 and go nowhere, allowed ones
// of every QoS reach the broker, retained ones come back on subscribe.
func TestMQTTProxyV5(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), nil)
	alice, bob := e.prefix+"/users/alice", e.prefix+"/users/bob"
	seen := testenv.Subscribe(t, e.broker, e.prefix+"/#")

	c := e.dial(t, aliceKey)
	if c.sub != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", c.sub)
	}
	ack := c.connect5(nil) // empty client id
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02X", ack.ReasonCode)
	}
	p := ack.Properties
	if !strings.HasPrefix(p.AssignedClientID, "auto-") {
		t.Errorf("Assigned Client Identifier %q, want auto-…", p.AssignedClientID)
	}
	if p.TopicAliasMaximum != nil {
		t.Errorf("Topic Alias Maximum %d passed on; the proxy must see every topic", *p.TopicAliasMaximum)
	}
	if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 1<<20 {
		t.Errorf("Maximum Packet Size %v, want 1 MiB", p.MaximumPacketSize)
	}
	if p.ServerKeepAlive != nil {
		t.Errorf("Server Keep Alive %d for a keep alive of 30 s", *p.ServerKeepAlive)
	}

	// A retained value, then a subscription with one refused filter in the
	// middle.
	testenv.Publish(t, e.broker, bridge.Message{Topic: alice + "/kept", Payload: []byte("r"), QoS: 1, Retain: true})
	t.Cleanup(func() { testenv.Publish(t, e.broker, bridge.Message{Topic: alice + "/kept", QoS: 1, Retain: true}) })
	<-seen
	c.sendPaho(subscribe5(10, alice+"/#", bob+"/#", e.prefix+"/public/+"))
	sa := c.recvPaho(packets.SUBACK).(*packets.Suback)
	if sa.PacketID != 10 || !bytes.Equal(sa.Reasons, []byte{1, 0x87, 1}) {
		t.Fatalf("SUBACK id %d reasons % x, want 10 and 01 87 01", sa.PacketID, sa.Reasons)
	}
	if topic, payload, _ := c.nextPublish(mqtt5); topic != alice+"/kept" || payload != "r" {
		t.Errorf("retained message %q %q", topic, payload)
	}
	// Refused entirely: answered by the proxy, with a reason string.
	c.sendPaho(subscribe5(11, bob+"/x", "$SYS/#", e.prefix+"/a/#/b"))
	sa = c.recvPaho(packets.SUBACK).(*packets.Suback)
	if sa.PacketID != 11 || !bytes.Equal(sa.Reasons, []byte{0x87, 0x87, 0x8F}) || sa.Properties.ReasonString == "" {
		t.Fatalf("SUBACK id %d reasons % x %q, want 11 and 87 87 8f with a reason", sa.PacketID, sa.Reasons, sa.Properties.ReasonString)
	}
	c.sendPaho(subscribe5(12, "$share/g/"+alice+"/#"))
	if sa = c.recvPaho(packets.SUBACK).(*packets.Suback); !bytes.Equal(sa.Reasons, []byte{0x9E}) {
		t.Errorf("shared subscription: reasons % x, want 9e", sa.Reasons)
	}

	// Deliveries follow the subscriptions.
	testenv.Publish(t, e.broker, bridge.Message{Topic: bob + "/x", Payload: []byte("not for alice"), QoS: 1})
	testenv.Publish(t, e.broker, bridge.Message{Topic: e.prefix + "/public/a", Payload: []byte("hello"), QoS: 1})
	if topic, payload, _ := c.nextPublish(mqtt5); topic != e.prefix+"/public/a" || payload != "hello" {
		t.Errorf("got %q %q, want public/a hello", topic, payload)
	}

	// Refused publishes: 0x87 for QoS 1 and 2, nothing for QoS 0; none
	// reaches the broker.
	for range 2 {
		<-seen // the two publishes above
	}
	c.sendPaho(publish5(bob+"/q0", 0, 0, "x"))
	c.sendPaho(publish5(bob+"/q1", 1, 21, "x"))
	if pa := c.recvPaho(packets.PUBACK).(*packets.Puback); pa.PacketID != 21 || pa.ReasonCode != 0x87 || pa.Properties.ReasonString == "" {
		t.Errorf("PUBACK %d 0x%02X %q, want 21 0x87 with a reason", pa.PacketID, pa.ReasonCode, pa.Properties.ReasonString)
	}
	c.sendPaho(publish5(bob+"/q2", 2, 22, "x"))
	if pr := c.recvPaho(packets.PUBREC).(*packets.Pubrec); pr.PacketID != 22 || pr.ReasonCode != 0x87 {
		t.Errorf("PUBREC %d 0x%02X, want 22 0x87", pr.PacketID, pr.ReasonCode)
	}
	noMessage(t, seen, "refused publishes")

	// Allowed publishes of every QoS, as they came, and the connection
	// still works after the refusals.
	c.sendPaho(publish5(alice+"/q0", 0, 0, "zero"))
	c.sendPaho(publish5(alice+"/q1", 1, 31, "one"))
	if pa := c.recvPaho(packets.PUBACK).(*packets.Puback); pa.PacketID != 31 || pa.ReasonCode >= 0x80 {
		t.Errorf("PUBACK %d 0x%02X", pa.PacketID, pa.ReasonCode)
	}
	c.sendPaho(publish5(alice+"/q2", 2, 32, "two"))
	if pr := c.recvPaho(packets.PUBREC).(*packets.Pubrec); pr.PacketID != 32 || pr.ReasonCode >= 0x80 {
		t.Errorf("PUBREC %d 0x%02X", pr.PacketID, pr.ReasonCode)
	}
	rel := packets.NewControlPacket(packets.PUBREL)
	rel.Content.(*packets.Pubrel).PacketID = 32
	c.sendPaho(rel)
	if pc := c.recvPaho(packets.PUBCOMP).(*packets.Pubcomp); pc.PacketID != 32 {
		t.Errorf("PUBCOMP %d", pc.PacketID)
	}
	got := map[string]string{}
	for range 3 {
		m := testenv.NextMessage(t, seen, 5*time.Second)
		got[strings.TrimPrefix(m.Topic, alice+"/")] = string(m.Payload) + "/" + string('0'+rune(m.QoS))
	}
	if got["q0"] != "zero/0" || got["q1"] != "one/1" || got["q2"] != "two/2" {
		t.Errorf("the broker got %v", got)
	}
	// They come back to the subscriber too (alice/# is subscribed).
	for range 3 {
		c.nextPublish(mqtt5)
	}

	ping := packets.NewControlPacket(packets.PINGREQ)
	c.sendPaho(ping)
	c.mustRecv(packets.PINGRESP)

	// The client's DISCONNECT reaches the broker, which closes; the client
	// gets no DISCONNECT back, and a normal close.
	c.send([]byte{0xE0, 0})
	p2, err := c.recv()
	var ce *websocket.CloseError
	switch {
	case err == nil:
		t.Errorf("after the client's DISCONNECT: packet % x", p2.Bytes())
	case !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure:
		t.Errorf("after the client's DISCONNECT: %v, want close 1000", err)
	}
}

// MQTT 3.1.1: the SUBACK failure is 0x80, and a refused publish closes the
// connection (3.1.1 cannot refuse one otherwise).
func TestMQTTProxyV311(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), nil)
	alice, bob := e.prefix+"/users/alice", e.prefix+"/users/bob"
	seen := testenv.Subscribe(t, e.broker, e.prefix+"/#")

	c := e.dial(t, aliceKey)
	if rc := c.connect311("c311", 30, nil, ""); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	c.send(subscribe311(1, 1, bob+"/#", alice+"/#"))
	if p := c.mustRecv(packets.SUBACK); !bytes.Equal(p.Body, []byte{0, 1, 0x80, 1}) {
		t.Fatalf("SUBACK % x, want 00 01 80 01", p.Body)
	}
	c.send(subscribe311(2, 0, bob+"/#"))
	if p := c.mustRecv(packets.SUBACK); !bytes.Equal(p.Body, []byte{0, 2, 0x80}) {
		t.Fatalf("SUBACK % x, want 00 02 80", p.Body)
	}
	c.send(publish311(alice+"/a", 1, 5, true, "kept"))
	if p := c.mustRecv(packets.PUBACK); !bytes.Equal(p.Body, []byte{0, 5}) {
		t.Errorf("PUBACK % x", p.Body)
	}
	t.Cleanup(func() { testenv.Publish(t, e.broker, bridge.Message{Topic: alice + "/a", QoS: 1, Retain: true}) })
	if m := testenv.NextMessage(t, seen, 5*time.Second); m.Topic != alice+"/a" || !m.Retain || string(m.Payload) != "kept" {
		t.Errorf("the broker got %s", testenv.String(m))
	}
	if topic, payload, qos := c.nextPublish(mqtt311); topic != alice+"/a" || payload != "kept" || qos != 1 {
		t.Errorf("delivered %q %q QoS %d", topic, payload, qos)
	}
	c.send(publish311(bob+"/a", 0, 0, false, "x"))
	if code := c.closed(); code != websocket.ClosePolicyViolation {
		t.Errorf("close code %d, want %d", code, websocket.ClosePolicyViolation)
	}
	noMessage(t, seen, "refused publish")
}

// A will is a publish: refused at CONNECT when not allowed, and sent by the
// broker when an allowed one's client vanishes.
func TestMQTTProxyWill(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), nil)
	seen := testenv.Subscribe(t, e.broker, e.prefix+"/#")

	c := e.dial(t, aliceKey)
	if rc := c.connect311("w1", 30, &publishPacket{topic: e.prefix + "/users/bob/will", qos: 1}, "x"); rc != 5 {
		t.Errorf("3.1.1 CONNACK %d for a refused will, want 5", rc)
	}
	c = e.dial(t, aliceKey)
	ack := c.connect5(func(cn *packets.Connect) {
		cn.ClientID, cn.WillFlag, cn.WillTopic, cn.WillQOS, cn.WillMessage = "w2", true, e.prefix+"/users/bob/will", 1, []byte("x")
		cn.WillProperties = &packets.Properties{}
	})
	if ack.ReasonCode != 0x87 {
		t.Errorf("MQTT 5 CONNACK 0x%02X for a refused will, want 0x87", ack.ReasonCode)
	}

	// %c in the rules is the client id: alice may publish her status there.
	status := e.prefix + "/status/w3"
	c = e.dial(t, aliceKey)
	ack = c.connect5(func(cn *packets.Connect) {
		cn.ClientID, cn.WillFlag, cn.WillTopic, cn.WillQOS, cn.WillMessage = "w3", true, status, 1, []byte("offline")
		cn.WillProperties = &packets.Properties{}
	})
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	c.sendPaho(publish5(status, 1, 1, "online"))
	c.recvPaho(packets.PUBACK)
	if m := testenv.NextMessage(t, seen, 5*time.Second); m.Topic != status || string(m.Payload) != "online" {
		t.Fatalf("got %s", testenv.String(m))
	}
	c.ws.UnderlyingConn().Close() // vanish without DISCONNECT
	if m := testenv.NextMessage(t, seen, 5*time.Second); m.Topic != status || string(m.Payload) != "offline" {
		t.Errorf("will: got %s", testenv.String(m))
	}
}

// A PUBLISH or will with a Response Topic the client may not publish to is
// refused like a publish to a topic it may not publish to: whoever answers
// would publish there on its behalf.
func TestMQTTProxyResponseTopic(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), nil)
	alice, bob := e.prefix+"/users/alice", e.prefix+"/users/bob"
	seen := testenv.Subscribe(t, e.broker, e.prefix+"/#")
	withResponse := func(topic string, qos byte, id uint16, rt string) *packets.ControlPacket {
		cp := publish5(topic, qos, id, "x")
		cp.Content.(*packets.Publish).Properties = &packets.Properties{ResponseTopic: rt}
		return cp
	}

	c := e.dial(t, aliceKey)
	if ack := c.connect5(nil); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	c.sendPaho(withResponse(alice+"/cmd", 0, 0, bob+"/inbox"))
	c.sendPaho(withResponse(alice+"/cmd", 1, 1, bob+"/inbox"))
	if pa := c.recvPaho(packets.PUBACK).(*packets.Puback); pa.PacketID != 1 || pa.ReasonCode != 0x87 {
		t.Errorf("PUBACK %d 0x%02X, want 1 0x87", pa.PacketID, pa.ReasonCode)
	}
	noMessage(t, seen, "publishes with bob's response topic")
	c.sendPaho(withResponse(alice+"/cmd", 1, 2, alice+"/inbox"))
	if pa := c.recvPaho(packets.PUBACK).(*packets.Puback); pa.PacketID != 2 || pa.ReasonCode >= 0x80 {
		t.Errorf("PUBACK %d 0x%02X, want 2 accepted", pa.PacketID, pa.ReasonCode)
	}
	if m := testenv.NextMessage(t, seen, 5*time.Second); m.Properties.ResponseTopic != alice+"/inbox" {
		t.Errorf("got %s", testenv.String(m))
	}

	// paho packs no Response Topic into will properties: written by hand.
	rt := bob + "/inbox"
	willProps := append([]byte{byte(3 + len(rt)), packets.PropResponseTopic, 0, byte(len(rt))}, rt...)
	c = e.dial(t, aliceKey)
	c.send((&connectPacket{version: mqtt5, cleanStart: true, keepAlive: 30, clientID: "w", props: &packets.Properties{},
		will: true, willQoS: 1, willProps: willProps, willTopic: alice + "/will", willPayload: []byte("x")}).encode())
	if ack := c.recvPaho(packets.CONNACK).(*packets.Connack); ack.ReasonCode != 0x87 {
		t.Errorf("CONNACK 0x%02X for a will with bob's response topic, want 0x87", ack.ReasonCode)
	}
}

// Client ids are per identity: alice's and bob's "dev" are two sessions on
// the broker, while alice's second "dev" takes over her first.
func TestMQTTProxyClientIDIsolation(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), nil)
	connect := func(key string) *client {
		c := e.dial(t, key)
		if ack := c.connect5(func(cn *packets.Connect) { cn.ClientID = "dev" }); ack.ReasonCode != 0 || ack.Properties.AssignedClientID != "" {
			t.Fatalf("CONNACK 0x%02X %q", ack.ReasonCode, ack.Properties.AssignedClientID)
		}
		return c
	}
	alive := func(c *client) bool {
		c.sendPaho(packets.NewControlPacket(packets.PINGREQ))
		p, err := c.recv()
		return err == nil && p.Kind() == packets.PINGRESP
	}
	a1 := connect(aliceKey)
	b1 := connect(bobKey)
	time.Sleep(200 * time.Millisecond)
	if !alive(a1) || !alive(b1) {
		t.Fatal("alice's and bob's \"dev\" took each other over")
	}
	a2 := connect(aliceKey)
	// The broker ends the first (Mosquitto 2.0 without DISCONNECT 0x8E;
	// the proxy then says the broker closed the connection).
	if d := a1.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != 0x8E && d.ReasonCode != 0x80 {
		t.Errorf("alice's first connection: DISCONNECT 0x%02X, want 0x8E or 0x80", d.ReasonCode)
	}
	if code := a1.closed(); code != websocket.CloseGoingAway {
		t.Errorf("alice's first connection: close code %d, want 1001", code)
	}
	if !alive(a2) || !alive(b1) {
		t.Error("alice's second or bob's connection is gone")
	}
}

// The handshake: credentials, Origin, subprotocol, connections per identity.
func TestMQTTProxyHandshake(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), func(_ *MQTTConfig, b *bridge.Config) {
		b.Limits.ConnectionsPerIdentity = 1
	})
	status := func(key string, h http.Header, subprotocols ...string) int {
		t.Helper()
		_, resp, err := e.tryDial(t, key, h, subprotocols...)
		if err == nil {
			t.Fatalf("dial succeeded")
		}
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		return resp.StatusCode
	}
	if got := status("", http.Header{}, "mqtt"); got != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", got)
	}
	if got := status("wrong", http.Header{}, "mqtt"); got != http.StatusUnauthorized {
		t.Errorf("a wrong key: %d, want 401", got)
	}
	if got := status(aliceKey, http.Header{"Origin": {"https://evil.example"}}, "mqtt"); got != http.StatusForbidden {
		t.Errorf("a foreign origin: %d, want 403", got)
	}
	if got := status(aliceKey, http.Header{}); got != http.StatusBadRequest {
		t.Errorf("no subprotocol: %d, want 400", got)
	}
	if got := status(aliceKey, http.Header{}, "wamp"); got != http.StatusBadRequest {
		t.Errorf("another subprotocol: %d, want 400", got)
	}
	resp, err := http.Get(strings.Replace(e.url, "ws:", "http:", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("plain GET without credentials: %d, want 401", resp.StatusCode)
	}

	// The key in the query, as browsers send it; the old subprotocol name;
	// a localhost origin.
	url := e.url
	e.url += "?access_token=" + bobKey
	c, _, err := e.tryDial(t, "", http.Header{"Origin": {"http://localhost:3000"}}, "mqttv3.1")
	e.url = url
	if err != nil {
		t.Fatalf("access_token: %v", err)
	}
	if c.sub != "mqttv3.1" {
		t.Errorf("subprotocol %q, want mqttv3.1", c.sub)
	}
	if got := status(bobKey, http.Header{}, "mqtt"); got != http.StatusTooManyRequests {
		t.Errorf("a second connection of bob: %d, want 429", got)
	}
	c.ws.Close()
	eventually(t, func() bool {
		c, _, err := e.tryDial(t, bobKey, http.Header{}, "mqtt")
		if err == nil {
			c.ws.Close()
		}
		return err == nil
	})
}

// Broken input closes the connection; MQTT 5 clients are told why.
func TestMQTTProxyMalformed(t *testing.T) {
	e := newProxyEnv(t, testenv.MosquittoURL(t), func(m *MQTTConfig, _ *bridge.Config) { m.MaxPacketSize = 256 })
	for _, c := range []struct {
		name   string
		v5     bool
		send   func(c *client)
		reason byte // of the DISCONNECT (MQTT 5)
		code   int
	}{
		{"first packet not CONNECT", false, func(c *client) { c.send(publish311("a", 0, 0, false, "x")) }, 0, websocket.CloseProtocolError},
		{"garbage", false, func(c *client) { c.send([]byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) }, 0, websocket.CloseProtocolError},
		{"text frame", false, func(c *client) { _ = c.ws.WriteMessage(websocket.TextMessage, []byte("CONNECT")) }, 0, websocket.CloseUnsupportedData},
		{"too large", true, func(c *client) { c.sendPaho(publish5(e.prefix+"/public/a", 0, 0, strings.Repeat("x", 300))) }, 0x95, websocket.CloseMessageTooBig},
		{"topic alias", true, func(c *client) {
			p := publish5(e.prefix+"/public/a", 0, 0, "x")
			alias := uint16(1)
			p.Content.(*packets.Publish).Properties = &packets.Properties{TopicAlias: &alias}
			c.sendPaho(p)
		}, 0x82, websocket.CloseProtocolError},
		{"wildcard in a topic name", true, func(c *client) { c.sendPaho(publish5(e.prefix+"/public/+", 0, 0, "x")) }, 0x81, websocket.CloseProtocolError},
		{"second CONNECT", true, func(c *client) { c.connect5Raw() }, 0x81, websocket.CloseProtocolError},
		{"CONNACK from a client", true, func(c *client) { c.send([]byte{0x20, 3, 0, 0, 0}) }, 0x81, websocket.CloseProtocolError},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := e.dial(t, aliceKey)
			if c.v5 {
				if ack := cl.connect5(nil); ack.ReasonCode != 0 {
					t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
				}
			}
			c.send(cl)
			if c.v5 {
				if d := cl.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != c.reason {
					t.Errorf("DISCONNECT 0x%02X, want 0x%02X", d.ReasonCode, c.reason)
				}
			}
			if code := cl.closed(); code != c.code {
				t.Errorf("close code %d, want %d", code, c.code)
			}
		})
	}
	t.Run("MQTT 3.1", func(t *testing.T) {
		cl := e.dial(t, aliceKey)
		b := []byte{0x10, 0, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0, 2, 'i', 'd'}
		b[1] = byte(len(b) - 2)
		cl.send(b)
		if p := cl.mustRecv(packets.CONNACK); !bytes.Equal(p.Body, []byte{0, 1}) {
			t.Errorf("CONNACK % x, want 00 01 (unacceptable protocol version)", p.Body)
		}
	})
}

func (c *client) connect5Raw() {
	cp := packets.NewControlPacket(packets.CONNECT)
	cp.Content.(*packets.Connect).ClientID = "again"
	c.sendPaho(cp)
}

// A silent client is closed after 1.5 × its keep alive, or IdleTimeout;
// MQTT 5 clients without a keep alive are given one.
func TestMQTTProxyIdle(t *testing.T) {
	testenv.Long(t, "waiting out the idle timeout")
	e := newProxyEnv(t, testenv.MosquittoURL(t), func(m *MQTTConfig, _ *bridge.Config) { m.IdleTimeout = 1500 * time.Millisecond })

	c := e.dial(t, aliceKey)
	ack := c.connect5(func(cn *packets.Connect) { cn.KeepAlive = 0 })
	if ack.Properties.ServerKeepAlive == nil || *ack.Properties.ServerKeepAlive != 1 {
		t.Errorf("Server Keep Alive %v, want 1 (two thirds of 1.5 s)", ack.Properties.ServerKeepAlive)
	}
	start := time.Now()
	if d := c.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != 0x8D {
		t.Errorf("DISCONNECT 0x%02X, want 0x8D keep alive timeout", d.ReasonCode)
	}
	if el := time.Since(start); el < time.Second || el > 15*time.Second {
		t.Errorf("closed after %v, want about 1.5 s", el)
	}

	// A client that pings in time stays.
	c = e.dial(t, aliceKey)
	if rc := c.connect311("pinger", 1, nil, ""); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	for range 4 {
		time.Sleep(700 * time.Millisecond)
		c.send([]byte{0xC0, 0})
		c.mustRecv(packets.PINGRESP)
	}
	// The proxy's idle timeout (1000) and the broker's own keep alive
	// (which ends the upstream: 1001) both expire after 1.5 s of silence;
	// either may come first.
	if code := c.closed(); code != websocket.CloseNormalClosure && code != websocket.CloseGoingAway {
		t.Errorf("close code %d after going silent", code)
	}
}

// The broker going away ends the connections; while it is down, the
// handshake is refused with 503; once it is back, clients connect again.
func TestMQTTProxyBrokerRestart(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	e := newProxyEnv(t, m.URL, nil)
	c := e.dial(t, aliceKey)
	if rc := c.connect311("r1", 30, nil, ""); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	c5 := e.dial(t, aliceKey)
	if ack := c5.connect5(nil); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	m.Stop()
	if code := c.closed(); code != websocket.CloseGoingAway {
		t.Errorf("3.1.1 client: close code %d, want 1001", code)
	}
	if d := c5.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != 0x8B && d.ReasonCode != 0x80 {
		t.Errorf("MQTT 5 client: DISCONNECT 0x%02X, want 0x8B (from the broker) or 0x80 (from the proxy)", d.ReasonCode)
	}
	if code := c5.closed(); code != websocket.CloseGoingAway {
		t.Errorf("MQTT 5 client: close code %d, want 1001", code)
	}

	// While the broker is down the handshake answers 503, which clients
	// retry like any failed connection.
	_, resp, err := e.tryDial(t, aliceKey, http.Header{}, "mqtt")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("while the broker is down: %v %v, want 503 with Retry-After", err, resp)
	}

	m.Start()
	c = e.dial(t, aliceKey)
	if rc := c.connect311("r1", 30, nil, ""); rc != 0 {
		t.Fatalf("CONNACK %d after the restart", rc)
	}
	c.send(subscribe311(1, 1, e.prefix+"/public/#"))
	c.mustRecv(packets.SUBACK)
	testenv.Publish(t, m.URL, bridge.Message{Topic: e.prefix + "/public/x", Payload: []byte("back"), QoS: 1})
	if topic, payload, _ := c.nextPublish(mqtt311); topic != e.prefix+"/public/x" || payload != "back" {
		t.Errorf("got %q %q", topic, payload)
	}
}

// A broker behind a WebSocket listener is reached the same way.
func TestMQTTProxyWebSocketBroker(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{WebSockets: true})
	e := newProxyEnv(t, m.WSURL, nil)
	c := e.dial(t, aliceKey)
	if ack := c.connect5(nil); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	c.sendPaho(subscribe5(1, e.prefix+"/public/#"))
	c.recvPaho(packets.SUBACK)
	c.sendPaho(publish5(e.prefix+"/public/ws", 1, 2, "via ws"))
	c.recvPaho(packets.PUBACK)
	if topic, payload, _ := c.nextPublish(mqtt5); topic != e.prefix+"/public/ws" || payload != "via ws" {
		t.Errorf("got %q %q", topic, payload)
	}
}

// Shutdown tells MQTT 5 clients the server is shutting down, and credentials
// that expire end the connection.
func TestMQTTProxyShutdownAndExpiry(t *testing.T) {
	var expiring atomic.Bool
	e := newProxyEnv(t, testenv.MosquittoURL(t), func(m *MQTTConfig, _ *bridge.Config) {
		real := m.Authenticator
		m.Authenticator = authFunc(func(r *http.Request, q bool) (bridge.Identity, error) {
			id, err := real.Authenticate(r, q)
			if expiring.Load() {
				id.Expires = time.Now().Add(500 * time.Millisecond)
			}
			return id, err
		})
	})
	expiring.Store(true)
	c := e.dial(t, aliceKey)
	expiring.Store(false)
	if ack := c.connect5(nil); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	if d := c.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != 0x87 {
		t.Errorf("expired: DISCONNECT 0x%02X, want 0x87", d.ReasonCode)
	}
	if code := c.closed(); code != CloseTokenExpired {
		t.Errorf("expired: close code %d, want %d", code, CloseTokenExpired)
	}

	c = e.dial(t, aliceKey)
	if ack := c.connect5(nil); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02X", ack.ReasonCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := c.recvPaho(packets.DISCONNECT).(*packets.Disconnect); d.ReasonCode != 0x8B {
		t.Errorf("shutdown: DISCONNECT 0x%02X, want 0x8B", d.ReasonCode)
	}
	if code := c.closed(); code != websocket.CloseServiceRestart {
		t.Errorf("shutdown: close code %d, want 1012", code)
	}
	if _, resp, err := e.tryDial(t, aliceKey, http.Header{}, "mqtt"); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after shutdown: %v, want 503", err)
	}
}

type authFunc func(*http.Request, bool) (bridge.Identity, error)

func (f authFunc) Authenticate(r *http.Request, q bool) (bridge.Identity, error) { return f(r, q) }

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("not within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The broker gets the bridge's credentials, or with PassCredentials the
// client's own.
func TestMQTTProxyCredentials(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Users: map[string]string{"bridge": "bridge-pw", "dev": "dev-pw"}})
	connect := func(e *proxyEnv, user, pass string) byte {
		c := e.dial(t, aliceKey)
		cp := &connectPacket{version: mqtt311, cleanStart: true, keepAlive: 30, clientID: "cred",
			hasUsername: user != "", username: user, hasPassword: pass != "", password: []byte(pass)}
		c.send(cp.encode())
		return c.mustRecv(packets.CONNACK).Body[1]
	}
	own := newProxyEnv(t, m.URL, func(c *MQTTConfig, _ *bridge.Config) { c.Username, c.Password = "bridge", "bridge-pw" })
	if rc := connect(own, "", ""); rc != 0 {
		t.Errorf("the bridge's credentials: CONNACK %d", rc)
	}
	if rc := connect(own, "dev", "wrong"); rc != 0 {
		t.Errorf("the client's (wrong) credentials are replaced: CONNACK %d", rc)
	}
	pass := newProxyEnv(t, m.URL, func(c *MQTTConfig, _ *bridge.Config) { c.PassCredentials = true })
	if rc := connect(pass, "dev", "dev-pw"); rc != 0 {
		t.Errorf("passed through: CONNACK %d", rc)
	}
	if rc := connect(pass, "dev", "wrong"); rc != 4 && rc != 5 {
		t.Errorf("passed through, wrong: CONNACK %d, want the broker's refusal", rc)
	}
}

// limitOnce refuses the first n publishes, asking to retry after 100 ms.
type limitOnce struct{ n atomic.Int32 }

func (l *limitOnce) Allow(_ bridge.Identity, a bridge.Action) error {
	if a == bridge.ActionPublish && l.n.Add(-1) >= 0 {
		return &bridge.Error{Code: bridge.ECodeRateLimited, RetryAfter: 100 * time.Millisecond, Message: "slow down"}
	}
	return nil
}

// Over the identity's publish rate the connection waits (stops reading)
// instead of losing or refusing the publish.
func TestMQTTProxyRateLimit(t *testing.T) {
	lim := &limitOnce{}
	lim.n.Store(3)
	e := newProxyEnv(t, testenv.MosquittoURL(t), func(_ *MQTTConfig, b *bridge.Config) { b.Limiter = lim })
	c := e.dial(t, aliceKey)
	if rc := c.connect311("rate", 30, nil, ""); rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	start := time.Now()
	c.send(publish311(e.prefix+"/users/alice/r", 1, 1, false, "x"))
	c.mustRecv(packets.PUBACK)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("PUBACK after %v, want the limiter's 3 × 100 ms", el)
	}
}
