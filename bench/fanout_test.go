package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// Smoke runs of the F1 and M1 generators, not benchmarks: each runs for a
// fraction of a second and must count every delivery. No timing is
// asserted.

// startMochi runs an in-process MQTT broker with a TCP listener and a
// WebSocket one (subprotocol mqtt), standing in for Mosquitto.
func startMochi(t *testing.T) (mqttURL, wsURL string) {
	_, mqttURL, wsURL = startMochiServer(t)
	return mqttURL, wsURL
}

func startMochiServer(t *testing.T) (srv *mochi.Server, mqttURL, wsURL string) {
	t.Helper()
	srv = mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: true})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = srv.EstablishConnection("ws", &wsNetConn{Conn: ws.NetConn(), ws: ws})
	}))
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		_ = srv.Close()
	})
	return srv, "mqtt://" + ln.Addr().String(), "ws" + strings.TrimPrefix(hs.URL, "http") + "/mqtt"
}

// startFakeBridge serves the part of the bridge's WebSocket JSON protocol
// the generator uses (welcome, then a message frame per publish matching
// ?filter=) from an in-process broker, whose MQTT listener it returns.
// TestBridgeSmoke runs the real bridge.
func startFakeBridge(t *testing.T) (mqttURL, wsURL string) {
	srv, mqttURL, _ := startMochiServer(t)
	var ids atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		filter := r.URL.Query().Get("filter")
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"welcome","session":"s","resumed":false,"last_id":"0-0"}`)) != nil {
			return
		}
		frames := make(chan []byte, 100000)
		id := int(ids.Add(1))
		err = srv.Subscribe(filter, id, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			b, _ := json.Marshal(map[string]any{"type": "message", "id": "1-0", "topic": pk.TopicName, "payload": string(pk.Payload),
				"qos": 0, "retain": false, "received_at": time.Now().Format(time.RFC3339Nano)})
			select {
			case frames <- b:
			default:
			}
		})
		if err != nil {
			return
		}
		defer srv.Unsubscribe(filter, id)
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		for {
			select {
			case f := <-frames:
				if ws.WriteMessage(websocket.TextMessage, f) != nil {
					return
				}
			case <-gone:
				return
			}
		}
	}))
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	return mqttURL, "ws" + strings.TrimPrefix(hs.URL, "http") + "/v1/ws"
}

// wsNetConn carries MQTT over binary WebSocket frames, as a net.Conn.
type wsNetConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func checkFan(t *testing.T, res *fanResult, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid || res.Lost != 0 || res.Errors != 0 || res.Bad != 0 {
		t.Fatalf("run invalid: %s (lost %d, errors %d, bad frames %d)", res.Invalid, res.Lost, res.Errors, res.Bad)
	}
	if res.Deliveries == 0 || res.Published == 0 || res.P50ms <= 0 || res.P99ms < res.P50ms {
		t.Fatalf("deliveries %d, published %d, p50 %v, p99 %v", res.Deliveries, res.Published, res.P50ms, res.P99ms)
	}
}

func TestFanoutMQTTOverWebSocket(t *testing.T) {
	mqttURL, wsURL := startMochi(t)
	for _, rate := range []float64{0, 2000} {
		t.Run(fmt.Sprintf("rate=%v", rate), func(t *testing.T) {
			res, err := runFanout(context.Background(), fanConfig{
				System: kindMosquitto, SubURL: wsURL, PubURL: mqttURL, Topic: "bench/smoke",
				Subs: 5, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
				Rate: rate, Window: 8, PayloadSize: 64,
			})
			checkFan(t, res, err)
		})
	}
}

func TestFanoutBridgeProtocol(t *testing.T) {
	mqttURL, wsURL := startFakeBridge(t)
	res, err := runFanout(context.Background(), fanConfig{
		System: kindBridge, SubURL: wsURL, PubURL: mqttURL, Topic: "bench/smoke",
		Subs: 5, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Window: 8, PayloadSize: 64,
	})
	checkFan(t, res, err)
}

func TestIdleMQTTOverWebSocket(t *testing.T) {
	_, wsURL := startMochi(t)
	res, err := runIdle(context.Background(), idleConfig{
		System: kindMosquitto, URL: wsURL, TopicFmt: "bench/m1/%d", Conns: 20, Parallel: 5, Pid: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid || res.Opened != 20 || res.RSSBefore <= 0 || res.RSSAfter <= 0 {
		t.Fatalf("%+v", res)
	}
}

// fakeCentrifugo speaks the part of Centrifugo's JSON protocol the
// generator uses: connect and subscribe commands, a ping, pushes batched
// several to a frame, and the HTTP publish API.
type fakeCentrifugo struct {
	mu   sync.Mutex
	subs map[string][]chan []byte
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/publish":
		var req struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		push := []byte(`{"push":{"channel":"` + req.Channel + `","pub":{"data":` + string(req.Data) + `,"offset":1}}}`)
		f.mu.Lock()
		for _, c := range f.subs[req.Channel] {
			c <- push
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"result":{}}`)
	case "/connection/websocket":
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var channel string
		var replies []string
		for _, line := range strings.Split(string(b), "\n") {
			var cmd struct {
				ID        int `json:"id"`
				Subscribe *struct {
					Channel string `json:"channel"`
				} `json:"subscribe"`
			}
			if json.Unmarshal([]byte(line), &cmd) != nil {
				return
			}
			if cmd.Subscribe != nil {
				channel = cmd.Subscribe.Channel
				replies = append(replies, fmt.Sprintf(`{"id":%d,"subscribe":{}}`, cmd.ID))
			} else {
				replies = append(replies, fmt.Sprintf(`{"id":%d,"connect":{"client":"c","version":"0","ping":25,"pong":true}}`, cmd.ID))
			}
		}
		c := make(chan []byte, 100000)
		f.mu.Lock()
		f.subs[channel] = append(f.subs[channel], c)
		f.mu.Unlock()
		if ws.WriteMessage(websocket.TextMessage, []byte(strings.Join(replies, "\n"))) != nil ||
			ws.WriteMessage(websocket.TextMessage, []byte("{}")) != nil { // a ping
			return
		}
		go func() { // pongs and the close
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		for m := range c {
			// Batch what is waiting, newline-separated, as Centrifugo does.
			frame := append([]byte(nil), m...)
			for more := true; more; {
				select {
				case m := <-c:
					frame = append(append(frame, '\n'), m...)
				default:
					more = false
				}
			}
			if ws.WriteMessage(websocket.TextMessage, frame) != nil {
				return
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func TestFanoutCentrifugoProtocol(t *testing.T) {
	hs := httptest.NewServer(&fakeCentrifugo{subs: map[string][]chan []byte{}})
	defer hs.Close()
	defer hs.CloseClientConnections()
	res, err := runFanout(context.Background(), fanConfig{
		System: kindCentrifugo, SubURL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/connection/websocket",
		PubURL: hs.URL + "/api/publish", Topic: "bench", Subs: 5, Duration: 300 * time.Millisecond,
		Warmup: 100 * time.Millisecond, Window: 16, PayloadSize: 64, PubConns: 2,
	})
	checkFan(t, res, err)
}

// The bridge itself, built from this tree (or MQTTBENCH_BRIDGE, a binary)
// and started on free loopback ports: a fan-out and a few idle connections.
// When the tree's bridge does not build, the test is skipped: the bridge's
// own packages fail on that, and the generator is still covered against
// the fake above.
func TestBridgeSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the bridge")
	}
	bin := os.Getenv("MQTTBENCH_BRIDGE")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "mqttbridge")
		build := exec.Command("go", "build", "-o", bin, "./cmd/mqttbridge")
		build.Dir = ".." // the product's module
		out, err := build.CombinedOutput()
		if err != nil {
			t.Skipf("the bridge in this tree does not build (its own tests report why): %v\n%s", err, out)
		}
	}
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--http-addr", httpAddr, "--embedded-mqtt-addr", mqttAddr)
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("bridge output:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pollHTTP(ctx, "GET", "http://"+httpAddr+"/readyz", nil, nil, func(code int, _ []byte) bool { return code == 200 }); err != nil {
		t.Fatal(err)
	}
	res, err := runFanout(ctx, fanConfig{
		System: kindBridge, SubURL: "ws://" + httpAddr + "/v1/ws", PubURL: "mqtt://" + mqttAddr, Topic: "bench/smoke",
		Subs: 5, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Window: 8, PayloadSize: 64,
	})
	checkFan(t, res, err)
	idle, err := runIdle(ctx, idleConfig{
		System: kindBridge, URL: "ws://" + httpAddr + "/v1/ws", TopicFmt: "bench/m1/%d", Conns: 20, Parallel: 5, Pid: cmd.Process.Pid,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !idle.Valid || idle.Opened != 20 {
		t.Fatalf("%+v", idle)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestJSONLookup(t *testing.T) {
	frame := []byte(` {"type" : "message","id":"1-0","topic":"a/b","payload":"t0 s1 \"x\"","qos":0,"retain":false,` +
		`"properties":{"user":[["k","}"]]},"received_at":"2026","n":-1.5e3}`)
	for key, want := range map[string]string{
		"type": `"message"`, "payload": `"t0 s1 \"x\""`, "qos": "0", "retain": "false",
		"properties": `{"user":[["k","}"]]}`, "received_at": `"2026"`, "n": "-1.5e3",
	} {
		if got, ok := jsonLookup(frame, key); !ok || string(got) != want {
			t.Errorf("%s: %q %v, want %q", key, got, ok, want)
		}
	}
	if _, ok := jsonLookup(frame, "missing"); ok {
		t.Error("found a missing key")
	}
	for _, bad := range []string{``, `[]`, `{"a":`, `{"a":"x`, `{"a" 1}`, `{"a":{"b":1`} {
		if _, ok := jsonLookup([]byte(bad), "a"); ok {
			t.Errorf("%q: found a value", bad)
		}
	}
	push := []byte(`{"push":{"channel":"bench","pub":{"data":{"p":"abc"},"offset":3}}}`)
	p, _ := jsonLookup(push, "push")
	p, _ = jsonLookup(p, "pub")
	p, _ = jsonLookup(p, "data")
	p, _ = jsonLookup(p, "p")
	if s, ok := jsonString(p); !ok || string(s) != "abc" {
		t.Errorf("push: %q", s)
	}
	if n := testing.AllocsPerRun(100, func() { jsonLookup(frame, "received_at") }); n != 0 {
		t.Errorf("jsonLookup allocates %v times", n)
	}
}

func TestStamp(t *testing.T) {
	p := newPayload(64)
	if len(p) != 64 {
		t.Fatalf("len %d", len(p))
	}
	now := time.Now().UnixNano()
	writeStamp(p, now, 1234567)
	ts, seq, ok := parseStamp(p)
	if !ok || ts != now || seq != 1234567 {
		t.Fatalf("%s: %d %d %v", p, ts, seq, ok)
	}
	body, at := centrifugoPublishBody("bench", 64)
	var v struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &v); err != nil || len(v.Data) != 64 || body[at] != 't' {
		t.Fatalf("%s: data %d bytes, %v", body, len(v.Data), err)
	}
	if _, _, ok := parseStamp([]byte("t12 s3")); ok {
		t.Fatal("parsed a short payload")
	}
}

// MQTT packets split across WebSocket frames, several to a frame.
func TestMQTTPackets(t *testing.T) {
	var phase atomic.Int32
	sh := &subShared{phase: &phase}
	s := &subscriber{kind: kindMosquitto, sh: sh, ready: make(chan struct{})}
	payload := newPayload(64)
	var stream []byte
	stream = append(stream, 0x20, 3, 0, 0, 0)    // CONNACK
	stream = append(stream, 0x90, 4, 0, 1, 0, 0) // SUBACK
	for i := 0; i < 3; i++ {
		writeStamp(payload, 1, int64(i))
		pk, _ := mqttpacket.Publish5("bench/f1", 0, 0, payload)
		stream = append(stream, pk...)
	}
	// QoS 1 PUBLISH with properties.
	e := mqttpacket.Encoder{}
	e.String("a")
	e.Raw([]byte{0, 7, 2, 1, 1}) // packet id, properties length 2
	e.Raw(payload)
	stream = append(stream, e.Packet(0x32)...)
	for split := 1; split < len(stream); split += 7 {
		s.total.Store(0)
		var pend []byte
		for _, part := range [][]byte{stream[:split], stream[split:]} {
			buf := append(append([]byte(nil), pend...), part...)
			used, err := s.mqttPackets(buf)
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			pend = buf[used:]
		}
		if len(pend) != 0 || s.total.Load() != 4 {
			t.Fatalf("split %d: %d left over, %d messages", split, len(pend), s.total.Load())
		}
	}
	select {
	case <-s.ready:
	default:
		t.Fatal("SUBACK did not make it ready")
	}
}
