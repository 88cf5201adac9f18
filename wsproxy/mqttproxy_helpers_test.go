package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The API keys of the proxy tests: alice and bob may publish and subscribe
// under <prefix>/users/<their name>/ and <prefix>/public/, and publish
// their client id's status under <prefix>/status/<client id>.
const (
	aliceKey = "key-alice-0123456789"
	bobKey   = "key-bob-0123456789"
)

// proxyEnv is an MQTTServer behind a real HTTP server, in front of a real
// broker, with the bridge's ACL and internal/auth API keys.
type proxyEnv struct {
	url    string // ws://127.0.0.1:port/mqtt
	broker string // mqtt://...
	prefix string // every topic of the test starts with it
	srv    *MQTTServer
	http   *httptest.Server
}

// nopUpstream is the bridge route of the proxied broker: the proxy only
// asks the bridge to check, it never publishes through it.
type nopUpstream struct{}

func (nopUpstream) Name() string       { return "test" }
func (nopUpstream) Problems() []string { return nil }
func (nopUpstream) Publish(context.Context, bridge.Message) (bridge.PublishResult, error) {
	return bridge.PublishResult{}, bridge.ErrUnavailable
}

func newProxyEnv(t *testing.T, brokerURL string, mod func(*MQTTConfig, *bridge.Config)) *proxyEnv {
	t.Helper()
	prefix := testenv.Prefix(t)
	rules := bridge.Rules{
		Publish:   []string{prefix + "/users/%u/#", prefix + "/public/#", prefix + "/status/%c"},
		Subscribe: []string{prefix + "/users/%u/#", prefix + "/public/#"},
	}
	authn, err := auth.New(auth.Config{APIKeys: []auth.APIKey{
		{Name: "alice", SHA256: auth.HashKey(aliceKey), Rules: rules},
		{Name: "bob", SHA256: auth.HashKey(bobKey), Rules: rules},
	}})
	if err != nil {
		t.Fatal(err)
	}
	bc := bridge.Config{Authorizer: acl.ACL{}}
	d, err := mqtt.NewDialer(mqtt.Config{URL: brokerURL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := MQTTConfig{Dial: d.Dial, Broker: "test", Authenticator: authn, ConnectTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg, &bc)
	}
	cfg.Bridge, _ = testenv.NewBridge(t, bc, bridge.Route{Filters: []string{prefix + "/#"}, Upstream: nopUpstream{}})
	s, err := NewMQTT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return &proxyEnv{url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/mqtt", broker: brokerURL, prefix: prefix, srv: s, http: hs}
}

// client is a raw MQTT-over-WebSocket client: the tests write packets byte
// by byte and read what comes back.
type client struct {
	t   *testing.T
	ws  *websocket.Conn
	in  *bufio.Reader
	sub string // the negotiated subprotocol

	queued []mqttpacket.Packet // PUBLISHes that arrived while another packet was awaited
}

// dial opens the proxy with the API key (none when empty), offering the
// subprotocol "mqtt".
func (e *proxyEnv) dial(t *testing.T, key string) *client {
	t.Helper()
	c, resp, err := e.tryDial(t, key, http.Header{}, "mqtt")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", e.url, err, status)
	}
	return c
}

func (e *proxyEnv) tryDial(t *testing.T, key string, h http.Header, subprotocols ...string) (*client, *http.Response, error) {
	t.Helper()
	if key != "" {
		h.Set("X-API-Key", key)
	}
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(e.url, h)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &client{t: t, ws: ws, in: bufio.NewReader(&wsStream{ws: ws}), sub: ws.Subprotocol()}, resp, nil
}

func (c *client) send(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// sendPaho encodes a packet with paho (MQTT 5) and sends it.
func (c *client) sendPaho(cp *packets.ControlPacket) {
	c.t.Helper()
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		c.t.Fatal(err)
	}
	c.send(b.Bytes())
}

// recv reads the next packet within 5 s.
func (c *client) recv() (mqttpacket.Packet, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	return mqttpacket.ReadPacket(c.in, mqttpacket.MaxVBI)
}

// mustRecv returns the next packet of that kind; PUBLISHes that come
// first are kept for nextPublish.
func (c *client) mustRecv(kind byte) mqttpacket.Packet {
	c.t.Helper()
	for {
		p, err := c.recv()
		if err != nil {
			c.t.Fatalf("waiting for packet type %d: %v", kind, err)
		}
		if p.Kind() == packets.PUBLISH && kind != packets.PUBLISH {
			c.queued = append(c.queued, p)
			continue
		}
		if p.Kind() != kind {
			c.t.Fatalf("got packet type %d (% x), want %d", p.Kind(), p.Bytes(), kind)
		}
		return p
	}
}

// recvPaho reads the next packet and decodes it with paho (MQTT 5).
func (c *client) recvPaho(kind byte) packets.Packet {
	c.t.Helper()
	p := c.mustRecv(kind)
	cp, err := packets.ReadPacket(bytes.NewReader(p.Bytes()))
	if err != nil {
		c.t.Fatalf("paho cannot read % x: %v", p.Bytes(), err)
	}
	return cp.Content
}

// closed waits for the connection to end and returns the close code (-1
// when it ended without a close frame).
func (c *client) closed() int {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := c.in.ReadByte()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("the connection is still open")
		}
		return -1
	}
}

// connect5 sends an MQTT 5 CONNECT and returns the CONNACK.
func (c *client) connect5(mod func(*packets.Connect)) *packets.Connack {
	c.t.Helper()
	cp := packets.NewControlPacket(packets.CONNECT)
	conn := cp.Content.(*packets.Connect)
	conn.CleanStart, conn.KeepAlive = true, 30
	if mod != nil {
		mod(conn)
	}
	c.sendPaho(cp)
	return c.recvPaho(packets.CONNACK).(*packets.Connack)
}

// connect311 sends an MQTT 3.1.1 CONNECT and returns the CONNACK return code.
func (c *client) connect311(cid string, keepAlive uint16, will *publishPacket, willPayload string) byte {
	c.t.Helper()
	cp := &connectPacket{version: mqtt311, cleanStart: true, keepAlive: keepAlive, clientID: cid}
	if will != nil {
		cp.will, cp.willTopic, cp.willQoS, cp.willRetain, cp.willPayload = true, will.topic, will.qos, will.retain, []byte(willPayload)
	}
	c.send(cp.encode())
	p := c.mustRecv(packets.CONNACK)
	if len(p.Body) != 2 {
		c.t.Fatalf("3.1.1 CONNACK % x", p.Bytes())
	}
	return p.Body[1]
}

func publish311(topic string, qos byte, id uint16, retain bool, payload string) []byte {
	e := &mqttpacket.Encoder{}
	e.String(topic)
	if qos > 0 {
		e.Uint16(id)
	}
	e.Raw([]byte(payload))
	h := byte(packets.PUBLISH<<4) | qos<<1
	if retain {
		h |= 1
	}
	return e.Packet(h)
}

func subscribe311(id uint16, qos byte, filters ...string) []byte {
	s := &subscribePacket{id: id}
	for _, f := range filters {
		s.subs = append(s.subs, subscription{filter: f, options: qos})
	}
	return s.encode(mqtt311)
}

func publish5(topic string, qos byte, id uint16, payload string) *packets.ControlPacket {
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Payload = topic, qos, id, []byte(payload)
	return cp
}

func subscribe5(id uint16, filters ...string) *packets.ControlPacket {
	cp := packets.NewControlPacket(packets.SUBSCRIBE)
	s := cp.Content.(*packets.Subscribe)
	s.PacketID = id
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: f, QoS: 1})
	}
	return cp
}

// nextPublish reads packets until a PUBLISH and returns its topic, payload
// and QoS.
func (c *client) nextPublish(version byte) (topic, payload string, qos byte) {
	c.t.Helper()
	for {
		var p mqttpacket.Packet
		if len(c.queued) > 0 {
			p, c.queued = c.queued[0], c.queued[1:]
		} else {
			var err error
			if p, err = c.recv(); err != nil {
				c.t.Fatalf("waiting for a PUBLISH: %v", err)
			}
		}
		if p.Kind() != packets.PUBLISH {
			continue
		}
		pub, err := parsePublish(p, version)
		if err != nil {
			c.t.Fatal(err)
		}
		d := &decoder{b: p.Body}
		d.string("topic")
		if pub.qos > 0 {
			d.uint16("id")
		}
		if version == mqtt5 {
			d.rawProperties("properties")
		}
		return pub.topic, string(d.b), pub.qos
	}
}

// noMessage checks that ch has nothing for a short while.
func noMessage(t *testing.T, ch <-chan bridge.Message, what string) {
	t.Helper()
	select {
	case m := <-ch:
		t.Errorf("%s: the broker got %s", what, testenv.String(m))
	case <-time.After(300 * time.Millisecond):
	}
}
