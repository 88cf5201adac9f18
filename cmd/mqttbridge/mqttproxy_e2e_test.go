package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// mqttURL is the instance's MQTT-over-WebSocket URL.
func (in *instance) mqttURL() string { return strings.Replace(in.base, "http", "ws", 1) + "/mqtt" }

// dialMQTT opens /mqtt with the subprotocol mqtt and header pairs; it
// returns the connection, or nil and the handshake status.
func (in *instance) dialMQTT(tb testing.TB, header ...string) (*websocket.Conn, int) {
	tb.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(in.mqttURL(), h)
	if err != nil {
		if resp == nil {
			tb.Fatalf("dial /mqtt: %v", err)
		}
		return nil, resp.StatusCode
	}
	tb.Cleanup(func() { ws.Close() })
	return ws, http.StatusSwitchingProtocols
}

// mqttExchange sends one MQTT packet and returns the next message.
func mqttExchange(tb testing.TB, ws *websocket.Conn, packet []byte) []byte {
	tb.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, packet); err != nil {
		tb.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		tb.Fatalf("after sending % x: %v", packet, err)
	}
	return b
}

// connect311 is an MQTT 3.1.1 CONNECT with a clean session and keep alive 30.
func connect311(clientID string) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(clientID))}, clientID...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// The default wiring: /mqtt reaches the embedded broker's TCP listener, and
// what an MQTT client publishes there is what HTTP reads.
func TestMQTTProxyEmbedded(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	ws, status := in.dialMQTT(t)
	if ws == nil {
		t.Fatalf("handshake %d", status)
	}
	if ack := mqttExchange(t, ws, connect311("e2e")); !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x", ack)
	}
	// PUBLISH QoS 1, retained, demo/proxied = "via /mqtt", packet id 7.
	pub := append([]byte{0x33, 0, 0, 12}, "demo/proxied"...)
	pub = append(append(pub, 0, 7), "via /mqtt"...)
	pub[1] = byte(len(pub) - 2)
	if ack := mqttExchange(t, ws, pub); !bytes.Equal(ack, []byte{0x40, 2, 0, 7}) {
		t.Fatalf("PUBACK % x", ack)
	}
	eventually(t, "GET demo/proxied", func() string {
		resp, body := in.do(t, "GET", "/v1/topics/demo/proxied", nil)
		if resp.StatusCode != 200 || string(body) != "via /mqtt" {
			return resp.Status + " " + string(body)
		}
		return ""
	})

	// SUBSCRIBE demo/proxied at QoS 0, packet id 8: the retained message
	// comes back through the proxy, and /metrics counts the connection,
	// the publish and the delivery.
	sub := append([]byte{0x82, 0, 0, 8, 0, 12}, "demo/proxied"...)
	sub = append(sub, 0)
	sub[1] = byte(len(sub) - 2)
	if ack := mqttExchange(t, ws, sub); !bytes.HasPrefix(ack, []byte{0x90, 3, 0, 8, 0}) {
		t.Fatalf("SUBACK % x", ack)
	}
	eventually(t, "/mqtt metrics", func() string {
		got := scrape(t, in.base)
		for name, want := range map[string]float64{
			`mqttbridge_stream_connections{kind="mqtt"}`:       1,
			`mqttbridge_publishes_total{outcome="ok",qos="1"}`: 1,
			`mqttbridge_messages_delivered_total{kind="mqtt"}`: 1,
		} {
			if got[name] != want {
				return fmt.Sprintf("%s = %v, want %v", name, got[name], want)
			}
		}
		return ""
	})
}

// mqtt_proxy.enabled: false answers 404; with authentication on, /mqtt
// authenticates itself (401 without credentials, the same API keys as
// everywhere else).
func TestMQTTProxyConfig(t *testing.T) {
	off := startWith(t, func(c *config.Config) { c.MQTTProxy.Enabled = false }, "--embedded-mqtt-addr", "127.0.0.1:0")
	if _, status := off.dialMQTT(t); status != http.StatusNotFound {
		t.Errorf("disabled: %d, want 404", status)
	}

	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	if _, status := in.dialMQTT(t); status != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", status)
	}
	resp, err := http.Get(in.base + "/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || errorCode(body) != "unauthorized" {
		t.Errorf("plain GET: %d %s", resp.StatusCode, body)
	}
	resp, body = in.doBad(t, "GET", "/mqtt", nil, "X-API-Key", svcKey)
	if resp.StatusCode != http.StatusBadRequest || errorCode(body) != "invalid_request" {
		t.Errorf("plain GET with credentials: %d %s, want 400", resp.StatusCode, body)
	}
	ws, status := in.dialMQTT(t, "X-API-Key", svcKey)
	if ws == nil {
		t.Fatalf("with an API key: %d", status)
	}
	if ack := mqttExchange(t, ws, connect311("svc-1")); !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x", ack)
	}
	// SUBSCRIBE id 1 to users/svc/# (allowed) and other/# (not): 01 80.
	sub := []byte{0x82, 0, 0, 1}
	for _, f := range []string{"users/svc/#", "other/#"} {
		sub = append(append(append(sub, 0, byte(len(f))), f...), 1)
	}
	sub[1] = byte(len(sub) - 2)
	if ack := mqttExchange(t, ws, sub); !bytes.Equal(ack, []byte{0x90, 4, 0, 1, 1, 0x80}) {
		t.Errorf("SUBACK % x, want 90 04 00 01 01 80", ack)
	}
}

// mqttReader reads MQTT packets (first byte and body) from the binary
// messages of a /mqtt connection.
type mqttReader struct {
	tb  testing.TB
	ws  *websocket.Conn
	buf []byte
}

func (r *mqttReader) next() (byte, []byte) {
	r.tb.Helper()
	for {
		if len(r.buf) >= 2 {
			n, shift, i := 0, 0, 1
			for ; i < len(r.buf) && i <= 4; i++ {
				n |= int(r.buf[i]&0x7F) << shift
				shift += 7
				if r.buf[i] < 0x80 {
					break
				}
			}
			if i < len(r.buf) && r.buf[i] < 0x80 && len(r.buf) >= i+1+n {
				h, body := r.buf[0], r.buf[i+1:i+1+n]
				r.buf = r.buf[i+1+n:]
				return h, body
			}
		}
		_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := r.ws.ReadMessage()
		if err != nil {
			r.tb.Fatalf("waiting for an MQTT packet: %v", err)
		}
		r.buf = append(r.buf, b...)
	}
}

// A JWT whose rules claim allowed shared/# subscribes in a session that
// outlives the connection; messages queue there while the client is away;
// it comes back with the same client id and a token without that rule:
// nothing of shared/ is delivered, and what it may read still flows (the
// broker's in-flight window is 2, and 4 messages queued), in MQTT 3.1.1
// and 5.
func TestMQTTProxyResumedSessionNewToken(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_inflight_messages 2"})
	in := startLogged(t, func(c *config.Config) {
		withAuth(c)
		c.Auth.JWT.RulesClaim = "mqttbridge"
	}, nil, "--mqtt-url", mq.URL)
	in.waitReady(t)
	withShared := token(t, "alice", func(c jwt.MapClaims) { c["mqttbridge"] = map[string]any{"subscribe": []string{"shared/#"}} })
	without := token(t, "alice", nil)
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("level%d", version), func(t *testing.T) {
			cid := fmt.Sprintf("resume-%d", version)
			var props []byte // MQTT 5: session expiry 300 s, receive maximum 2
			if version == 5 {
				props = []byte{8, 0x11, 0, 0, 1, 44, 0x21, 0, 2}
			}
			connect := append([]byte{0, 4, 'M', 'Q', 'T', 'T', version, 0, 0, 30}, props...) // clean start off
			connect = append(append(connect, 0, byte(len(cid))), cid...)
			connect = append([]byte{0x10, byte(len(connect))}, connect...)
			open := func(tok string) (*websocket.Conn, *mqttReader, bool) {
				ws, status := in.dialMQTT(t, bearer(tok)...)
				if ws == nil {
					t.Fatalf("handshake %d", status)
				}
				ack := mqttExchange(t, ws, connect)
				if ack[0] != 0x20 || ack[3] != 0 {
					t.Fatalf("CONNACK % x", ack)
				}
				return ws, &mqttReader{tb: t, ws: ws}, ack[2]&1 == 1
			}
			own, shared := "users/alice/"+cid, "shared/"+cid

			ws, _, _ := open(withShared)
			sub := []byte{0x82, 0, 0, 1}
			if version == 5 {
				sub = append(sub, 0)
			}
			for _, f := range []string{"shared/#", "users/alice/#"} {
				sub = append(append(append(sub, 0, byte(len(f))), f...), 1)
			}
			sub[1] = byte(len(sub) - 2)
			if ack := mqttExchange(t, ws, sub); !bytes.HasSuffix(ack, []byte{1, 1}) {
				t.Fatalf("SUBACK % x", ack)
			}
			_ = ws.WriteMessage(websocket.BinaryMessage, []byte{0xE0, 0})
			for ws.SetReadDeadline(time.Now().Add(5*time.Second)) == nil {
				if _, _, err := ws.ReadMessage(); err != nil {
					break // the proxy closes once the broker did
				}
			}

			for i := range 4 {
				testenv.Publish(t, mq.URL, bridge.Message{Topic: shared, Payload: []byte("queued"), QoS: byte(1 + i%2)})
			}
			_, r, present := open(without)
			if !present {
				t.Fatal("the session is not present")
			}
			testenv.Publish(t, mq.URL, bridge.Message{Topic: own, Payload: []byte("allowed"), QoS: 1})
			for {
				h, body := r.next()
				if h>>4 != 3 {
					continue
				}
				if topic := string(body[2 : 2+(int(body[0])<<8|int(body[1]))]); topic != own {
					t.Fatalf("got a PUBLISH on %s, want only %s", topic, own)
				}
				break
			}
		})
	}
}

// A JWT whose subject is an API key's name is another identity on the
// broker: connecting with the key's client id gets a fresh session and
// leaves the key's connection, session and subscriptions alone (12.2).
func TestMQTTProxyKindsDoNotShareSessions(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	const aliceKey = "mbk_alice-0123456789"
	in := startWith(t, func(c *config.Config) {
		withAuth(c)
		c.Auth.APIKeys = []config.APIKey{{Name: "alice", SHA256: auth.HashKey(aliceKey), Rules: userRules}}
	}, "--mqtt-url", mq.URL)
	in.waitReady(t)

	// A persistent session (clean session 0) of client id dev1.
	persistent := func(clientID string) []byte {
		p := connect311(clientID)
		p[9] = 0 // connect flags: no clean session
		return p
	}
	key, status := in.dialMQTT(t, "X-API-Key", aliceKey)
	if key == nil {
		t.Fatalf("API key: handshake %d", status)
	}
	if ack := mqttExchange(t, key, persistent("dev1")); !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("API key: CONNACK % x", ack)
	}
	sub := append([]byte{0x82, 0, 0, 1, 0, 13}, "users/alice/#"...)
	sub = append(sub, 1)
	sub[1] = byte(len(sub) - 2)
	if ack := mqttExchange(t, key, sub); !bytes.Equal(ack, []byte{0x90, 3, 0, 1, 1}) {
		t.Fatalf("API key: SUBACK % x", ack)
	}

	// The JWT "alice", same client id, no clean session either: the
	// session-present flag says it got a session of its own.
	jwtWS, status := in.dialMQTT(t, bearer(token(t, "alice", nil))...)
	if jwtWS == nil {
		t.Fatalf("JWT: handshake %d", status)
	}
	if ack := mqttExchange(t, jwtWS, persistent("dev1")); !bytes.Equal(ack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("JWT: CONNACK % x, want a fresh session (20 02 00 00), not the API key's", ack)
	}

	// The API key's connection is still there and still subscribed.
	mosquittoPub(t, mq.Port, "-t", "users/alice/news", "-m", "for the key")
	_ = key.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := key.ReadMessage()
	if err != nil {
		t.Fatalf("API key: the connection ended (taken over?): %v", err)
	}
	if msg[0]&0xF0 != 0x30 || !bytes.Contains(msg, []byte("users/alice/news")) || !bytes.HasSuffix(msg, []byte("for the key")) {
		t.Fatalf("API key: got % x, want the PUBLISH of users/alice/news", msg)
	}
}
