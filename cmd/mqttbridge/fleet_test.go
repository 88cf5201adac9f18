package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// fleet is three bridge processes (this test binary running main) on one
// private Mosquitto with persistence and one private Redis.
type fleet struct {
	mq       *testenv.Mosquitto
	redis    *testenv.Process
	redisURL string
	bridges  []*testenv.Process
	mqttPort int
}

func startFleet(t *testing.T, n int, durableRedis bool) *fleet {
	t.Helper()
	return startFleetWith(t, n, durableRedis, testenv.MosquittoOptions{})
}

// startFleetWith is startFleet with more Mosquitto options (persistence is
// always on).
func startFleetWith(t *testing.T, n int, durableRedis bool, mq testenv.MosquittoOptions) *fleet {
	t.Helper()
	testenv.Long(t, "a fleet of bridge processes")
	mq.PersistenceDir = t.TempDir()
	f := &fleet{mq: testenv.StartMosquitto(t, mq)}
	f.mqttPort = f.mq.Port
	f.redis, f.redisURL = testenv.StartRedis(t, durableRedis)
	redisURL := f.redisURL
	conf := t.TempDir() + "/fleet.yaml"
	yaml := "mqtt:\n  ingest_lease: 2s\n  keepalive: 5s\n  reconnect_max: 1s\nhistory:\n  size: 100000\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		p := testenv.StartProcess(t, fmt.Sprintf("bridge %d", i), addr, []string{"MQTTBRIDGE_TEST_RUN_MAIN=1"},
			os.Args[0], "--config", conf, "--http-addr", addr, "--mqtt-url", f.mq.URL, "--redis-url", redisURL,
			"--topics", "f/#", "--instance-id", fmt.Sprint("i", i), "--log-level", "info")
		f.bridges = append(f.bridges, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, b := range f.bridges {
				ready := ""
				if resp, err := http.Get("http://" + b.Addr + "/readyz"); err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ready = string(body)
				}
				t.Logf("%s: readyz %s\n%s", b.Addr, ready, lastLines(b.Log(), 30))
			}
		}
	})
	for _, b := range f.bridges {
		waitReadyAt(t, b.Addr)
	}
	return f
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func waitReadyAt(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %s", addr, body)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// owner is the bridge that holds the ingest lease, from the logs.
func (f *fleet) owner(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, b := range f.bridges {
			log := b.Log()
			if b.Running() && strings.LastIndex(log, "holding the ingest lease") > strings.LastIndex(log, "gave up the ingest lease") {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no bridge holds the ingest lease")
	return -1
}

// publisher publishes numbered QoS 1 messages with the real mosquitto_pub,
// round robin over four topics; Close waits until the broker acknowledged
// every one.
type publisher struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	sent  int
}

func startPublisher(t *testing.T, port int) *publisher {
	t.Helper()
	// One process per topic would lose the round robin; mosquitto_pub -l
	// publishes each line on one topic, so the topic is in the payload and
	// the topic is fixed per publisher.
	cmd := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", "mqttv5", "-q", "1",
		"-t", "f/seq", "-l", "-i", fmt.Sprintf("pub-%d", time.Now().UnixNano()))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &publisher{cmd: cmd, stdin: stdin}
}

func (p *publisher) publish(t *testing.T) {
	t.Helper()
	p.sent++
	if _, err := fmt.Fprintf(p.stdin, "%d\n", p.sent); err != nil {
		t.Fatalf("publisher: %v", err)
	}
}

func (p *publisher) close(t *testing.T) {
	t.Helper()
	_ = p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mosquitto_pub: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatal("mosquitto_pub did not finish")
	}
}

// history records what a subscriber received, to check it like a Jepsen
// history: lost, duplicated and reordered messages.
type history struct {
	mu    sync.Mutex
	seqs  []int
	ids   map[string]int
	dupID int
	last  string
}

func (h *history) add(id, payload string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ids == nil {
		h.ids = map[string]int{}
	}
	h.ids[id]++
	if h.ids[id] > 1 {
		h.dupID++
	}
	var n int
	fmt.Sscan(payload, &n)
	h.seqs = append(h.seqs, n)
	h.last = id
}

func (h *history) lastID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// check counts, for seqs 1..n: lost, duplicated (the same message twice,
// as QoS 1 allows), and out of order (a first arrival below an earlier
// one), and the ids delivered twice (never allowed).
func (h *history) check(n int) (lost, dups, reordered, dupIDs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[int]int{}
	maxFirst := 0
	for _, s := range h.seqs {
		seen[s]++
		if seen[s] == 1 {
			if s < maxFirst {
				reordered++
			}
			maxFirst = max(maxFirst, s)
		}
	}
	for i := 1; i <= n; i++ {
		switch c := seen[i]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	return lost, dups, reordered, h.dupID
}

func (h *history) complete(n int) bool {
	lost, _, _, _ := h.check(n)
	return lost == 0
}

// subscribe reads messages of f/# from a bridge over the WebSocket
// protocol into h, resuming after h's last id; it returns when the
// connection ends.
func subscribeInto(t *testing.T, addr string, h *history) (*websocket.Conn, <-chan struct{}) {
	t.Helper()
	q := "filter=f/%23"
	if id := h.lastID(); id != "" {
		q += "&last_id=" + id
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws?"+q, nil)
	if err != nil {
		t.Fatalf("subscribe at %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f struct{ Type, ID, Payload string }
			_ = json.Unmarshal(data, &f)
			switch f.Type {
			case "message":
				h.add(f.ID, f.Payload)
			case "gap":
				t.Errorf("gap at %s: %s", addr, data)
			}
		}
	}()
	t.Cleanup(func() { ws.Close() })
	return ws, done
}

func waitComplete(t *testing.T, h *history, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !h.complete(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	lost, dups, reordered, dupIDs := h.check(n)
	t.Logf("%s: published %d, lost %d, duplicated %d (QoS 1 redelivery), reordered %d, ids delivered twice %d", what, n, lost, dups, reordered, dupIDs)
	if lost > 0 || dupIDs > 0 {
		t.Fatalf("%s: %d lost, %d ids delivered twice", what, lost, dupIDs)
	}
}

// Kill -9 the instance that holds the ingest lease while QoS 1 messages
// flow: another takes over within the lease TTL and every message the
// broker acknowledged reaches a subscriber on a third instance.
func TestFleetIngestOwnerKilled(t *testing.T) {
	f := startFleet(t, 3, false)
	owner := f.owner(t)
	other := (owner + 1) % 3
	var h history
	subscribeInto(t, f.bridges[other].Addr, &h)

	pub := startPublisher(t, f.mqttPort)
	const n = 600
	for i := 0; i < n; i++ {
		if i == n/3 {
			f.bridges[owner].Kill()
			t.Logf("killed the ingest owner, bridge %d", owner)
		}
		pub.publish(t)
		time.Sleep(3 * time.Millisecond)
	}
	pub.close(t)
	waitComplete(t, &h, n, "ingest owner killed")
	if next := f.owner(t); next == owner {
		t.Fatal("the killed bridge still holds the lease")
	}
}

// Kill -9 the instance a WebSocket client is on: it resumes on another
// instance after its last id, with nothing missing and nothing doubled.
func TestFleetClientInstanceKilled(t *testing.T) {
	f := startFleet(t, 3, false)
	owner := f.owner(t)
	victim, survivor := (owner+1)%3, (owner+2)%3
	var h history
	_, done := subscribeInto(t, f.bridges[victim].Addr, &h)

	pub := startPublisher(t, f.mqttPort)
	const n = 600
	for i := 0; i < n; i++ {
		if i == n/3 {
			f.bridges[victim].Kill()
			<-done
			subscribeInto(t, f.bridges[survivor].Addr, &h)
		}
		pub.publish(t)
		time.Sleep(2 * time.Millisecond)
	}
	pub.close(t)
	waitComplete(t, &h, n, "client's instance killed")
	if _, dups, _, _ := h.check(n); dups != 0 {
		t.Fatalf("%d messages doubled", dups)
	}
}

// Stop Redis for 10 s: nothing crashes, /readyz says why, publishing over
// HTTP still works, and ingest catches up from the broker's session with
// nothing lost.
func TestFleetRedisOutage(t *testing.T) {
	f := startFleet(t, 2, true)
	var h history
	subscribeInto(t, f.bridges[0].Addr, &h)
	// The subscription is live (it read the store's last id) before Redis
	// stops: a probe, numbered 0, has come through.
	eventually(t, "the subscription is live", func() string {
		resp, err := http.Post("http://"+f.bridges[1].Addr+"/v1/topics/f/probe", "text/plain", strings.NewReader("0"))
		if err == nil {
			resp.Body.Close()
		}
		if h.lastID() == "" {
			return "no probe received"
		}
		return ""
	})
	pub := startPublisher(t, f.mqttPort)
	for i := 0; i < 100; i++ {
		pub.publish(t)
	}
	f.redis.Stop()
	eventually(t, "readyz with Redis down: 503 naming the store", func() string {
		resp, err := http.Get("http://" + f.bridges[1].Addr + "/readyz")
		if err != nil {
			return err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(body), "store") {
			return fmt.Sprint(resp.StatusCode, " ", string(body))
		}
		return ""
	})
	resp, err := http.Post("http://"+f.bridges[1].Addr+"/v1/topics/f/seq", "text/plain", strings.NewReader("101"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP publish with Redis down: %d %s", resp.StatusCode, body)
	}
	pub.sent++ // 101 went over HTTP
	for i := 0; i < 100; i++ {
		pub.publish(t)
		time.Sleep(80 * time.Millisecond)
	}
	f.redis.Start()
	for i := 0; i < 100; i++ {
		pub.publish(t)
	}
	pub.close(t)
	for _, b := range f.bridges {
		waitReadyAt(t, b.Addr)
	}
	waitComplete(t, &h, pub.sent, "Redis stopped for 10 s")
}

// Restart the broker: every instance reconnects, resubscribes and is ready
// again, and no QoS 1 message is lost.
func TestFleetBrokerRestart(t *testing.T) {
	f := startFleet(t, 3, false)
	var h history
	subscribeInto(t, f.bridges[2].Addr, &h)
	pub := startPublisher(t, f.mqttPort)
	for i := 0; i < 200; i++ {
		pub.publish(t)
	}
	pub.close(t)
	f.mq.Stop()
	f.mq.Start()
	for _, b := range f.bridges {
		waitReadyAt(t, b.Addr)
	}
	pub2 := startPublisher(t, f.mqttPort)
	pub2.sent = 200
	for i := 0; i < 200; i++ {
		pub2.publish(t)
	}
	pub2.close(t)
	waitComplete(t, &h, 400, "broker restarted")
}

var _ = sort.Ints

// sessionSaved waits until the fleet's Redis holds the WebSocket session id
// with pending unacknowledged messages (it takes the session and puts it
// back as it was).
func (f *fleet) sessionSaved(t *testing.T, id string, pending int) {
	t.Helper()
	client, err := redisstore.NewUniversalClient(redisstore.ClientConfig{URL: f.redisURL})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, err := redisstore.New(client, redisstore.Config{KeyPrefix: "mqttbridge:"})
	if err != nil {
		t.Fatal(err)
	}
	sessions := st.Sessions()
	eventually(t, "session saved", func() string {
		s, err := sessions.Take(t.Context(), id)
		if err != nil {
			return err.Error()
		}
		if err := sessions.Save(t.Context(), s, time.Minute); err != nil {
			return err.Error()
		}
		if len(s.Pending) != pending {
			return fmt.Sprintf("%d pending", len(s.Pending))
		}
		return ""
	})
}

// A QoS 1 WebSocket session survives the kill -9 of its instance: on
// another instance it resumes with its subscription and gets back the
// messages it had not acknowledged.
func TestFleetSessionSurvivesKill(t *testing.T) {
	f := startFleet(t, 2, false)
	victim, survivor := f.owner(t), 0
	victim = (victim + 1) % 2 // not the ingest owner: ingest goes on
	survivor = (victim + 1) % 2
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+f.bridges[victim].Addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var welcome struct{ Session string }
	if err := ws.ReadJSON(&welcome); err != nil {
		t.Fatal(err)
	}
	_ = ws.WriteJSON(map[string]any{"type": "subscribe", "id": "s", "filters": []string{"f/#"}, "qos": 1})
	pub := startPublisher(t, f.mqttPort)
	pub.publish(t)
	pub.publish(t)
	var ids []string
	for len(ids) < 2 {
		var fr struct{ Type, ID string }
		if err := ws.ReadJSON(&fr); err != nil {
			t.Fatal(err)
		}
		if fr.Type == "message" {
			ids = append(ids, fr.ID)
		}
	}
	_ = ws.WriteJSON(map[string]any{"type": "ack", "ids": ids[:1]}) // the second stays pending
	f.sessionSaved(t, welcome.Session, 1)                           // checkpointed within half a second
	f.bridges[victim].Kill()

	ws2, _, err := websocket.DefaultDialer.Dial("ws://"+f.bridges[survivor].Addr+"/v1/ws?session="+welcome.Session+"&last_id="+ids[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	var w2 struct {
		Type    string
		Resumed bool
	}
	if err := ws2.ReadJSON(&w2); err != nil || !w2.Resumed {
		t.Fatalf("welcome %+v %v: the session did not survive", w2, err)
	}
	var again struct {
		Type, ID string
		Ack      bool
	}
	if err := ws2.ReadJSON(&again); err != nil || again.ID != ids[1] || !again.Ack {
		t.Fatalf("re-sent %+v %v, want %s", again, err, ids[1])
	}
	pub.publish(t)
	pub.close(t)
	var live struct{ Type, Payload string }
	if err := ws2.ReadJSON(&live); err != nil || live.Payload != "3" {
		t.Fatalf("live after resume: %+v %v", live, err)
	}
}
