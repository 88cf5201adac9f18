package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// connectSpy passes the client id of the CONNECT the proxy sends the broker
// to ids.
type connectSpy struct {
	net.Conn
	once sync.Once
	ids  chan<- string
}

func (s *connectSpy) Write(b []byte) (int, error) {
	s.once.Do(func() {
		p, err := mqttpacket.ReadPacket(bufio.NewReader(bytes.NewReader(b)), mqttpacket.MaxVBI)
		if err != nil {
			return
		}
		if cp, err := parseMQTTConnect(p); err == nil {
			select {
			case s.ids <- cp.clientID:
			default:
			}
		}
	})
	return s.Conn.Write(b)
}

// sessionConnect is a CONNECT without clean start for a session that
// outlives the connection (MQTT 5: 300 s, and Receive Maximum 2).
func sessionConnect(version byte, cid string) []byte {
	cp := &connectPacket{version: version, keepAlive: 30, clientID: cid}
	if version == mqtt5 {
		expiry, receive := uint32(300), uint16(2)
		cp.props = &packets.Properties{SessionExpiryInterval: &expiry, ReceiveMaximum: &receive}
	}
	return cp.encode()
}

// A resumed session keeps nothing the identity's current rules refuse.
// alice subscribes to public/# (QoS 2) and her own topics (QoS 1) in a
// session that outlives the connection, loses public/# while she is away
// while QoS 1 and 2 messages queue there, and comes back with the same
// client id: she receives none of them, the proxy completes their flows
// with the broker so that what she may receive still flows (the broker's
// in-flight window is 2), and the broker session no longer holds public/#.
func TestMQTTProxyResumedSessionRevoked(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_inflight_messages 2"})
	var revoked atomic.Bool
	brokerIDs := make(chan string, 8)
	e := newProxyEnv(t, m.URL, func(cfg *MQTTConfig, _ *bridge.Config) {
		authn := cfg.Authenticator
		cfg.Authenticator = authFunc(func(r *http.Request, q bool) (bridge.Identity, error) {
			id, err := authn.Authenticate(r, q)
			if err == nil && revoked.Load() {
				rules := *id.Rules
				rules.Subscribe = slices.DeleteFunc(slices.Clone(rules.Subscribe), func(f string) bool { return strings.HasSuffix(f, "/public/#") })
				id.Rules = &rules
			}
			return id, err
		})
		dial := cfg.Dial
		cfg.Dial = func(ctx context.Context) (net.Conn, error) {
			conn, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return &connectSpy{Conn: conn, ids: brokerIDs}, nil
		}
	})
	for _, version := range []byte{mqtt5, mqtt311} {
		t.Run(fmt.Sprintf("level%d", version), func(t *testing.T) {
			cid := fmt.Sprintf("resume-%d", version)
			public, own := e.prefix+"/public/"+cid, e.prefix+"/users/alice/"+cid
			connect := func() (c *client, present bool, brokerID string) {
				c = e.dial(t, aliceKey)
				c.send(sessionConnect(version, cid))
				ack, err := parseConnack(c.mustRecv(packets.CONNACK), version)
				if err != nil || ack.reason != 0 {
					t.Fatalf("CONNACK %+v %v", ack, err)
				}
				select {
				case brokerID = <-brokerIDs:
				default:
					t.Fatal("the proxy did not send CONNECT")
				}
				return c, ack.sessionPresent, brokerID
			}
			bye := func(c *client) {
				c.send([]byte{packets.DISCONNECT << 4, 0})
				c.closed() // after the broker closed its connection
			}

			revoked.Store(false)
			c, _, _ := connect()
			sub := &subscribePacket{id: 1, subs: []subscription{{e.prefix + "/public/#", 2}, {e.prefix + "/users/alice/#", 1}}}
			if version == mqtt5 {
				sub.props = []byte{0}
			}
			c.send(sub.encode(version))
			if sa, err := parseSuback(c.mustRecv(packets.SUBACK), version); err != nil || !bytes.Equal(sa.reasons, []byte{2, 1}) {
				t.Fatalf("SUBACK %+v %v", sa, err)
			}
			bye(c)

			// Away, alice loses public/#, and messages queue there: more
			// than the broker's in-flight window.
			revoked.Store(true)
			for i := range 6 {
				testenv.Publish(t, m.URL, bridge.Message{Topic: public, Payload: fmt.Appendf(nil, "queued %d", i), QoS: byte(1 + i%2)})
			}
			c, present, brokerID := connect()
			if !present {
				t.Fatal("the session is not present")
			}
			testenv.Publish(t, m.URL, bridge.Message{Topic: own, Payload: []byte("allowed"), QoS: 1})
			p := c.mustRecv(packets.PUBLISH)
			pub, err := parsePublish(p, version)
			if err != nil {
				t.Fatal(err)
			}
			if pub.topic != own {
				t.Fatalf("resumed session: got a PUBLISH on %s, want only %s", pub.topic, own)
			}
			c.send(idPacket(packets.PUBACK, pub.id))
			bye(c)

			// The broker session no longer holds public/#: a client that
			// takes it over directly gets what queued on alice's topic,
			// and nothing of public.
			testenv.Publish(t, m.URL, bridge.Message{Topic: public, Payload: []byte("after"), QoS: 1})
			testenv.Publish(t, m.URL, bridge.Message{Topic: own, Payload: []byte("last"), QoS: 1})
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(sessionConnect(version, brokerID)); err != nil {
				t.Fatal(err)
			}
			in := bufio.NewReader(conn)
			for {
				p, err := mqttpacket.ReadPacket(in, mqttpacket.MaxVBI)
				if err != nil {
					t.Fatalf("the broker session: %v", err)
				}
				if p.Kind() != packets.PUBLISH {
					continue
				}
				pub, err := parsePublish(p, version)
				if err != nil {
					t.Fatal(err)
				}
				if pub.topic != own {
					t.Fatalf("the broker session still delivers %s", pub.topic)
				}
				break
			}
		})
	}
}
