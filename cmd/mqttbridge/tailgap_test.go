package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// tailItem is a message (its id and payload) or a gap (the last id before
// it) that a client of a bridge received.
type tailItem struct {
	gap         bool
	id, payload string
}

func (it tailItem) String() string {
	if it.gap {
		return "gap after " + it.id
	}
	return it.payload + "@" + it.id
}

// wsItems reads the messages and gaps of f/# from a bridge's WebSocket.
func wsItems(t *testing.T, addr string) <-chan tailItem {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws?filter=f/%23", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	out := make(chan tailItem, 1000)
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f struct {
				Type, ID, Payload string
				LastID            string `json:"last_id"`
			}
			if err := json.Unmarshal(data, &f); err != nil {
				t.Errorf("frame %s: %v", data, err)
			}
			switch f.Type {
			case "message":
				out <- tailItem{id: f.ID, payload: f.Payload}
			case "gap":
				out <- tailItem{gap: true, id: f.LastID}
			}
		}
	}()
	return out
}

// sseItems reads the messages and gaps of f/# from a bridge's SSE stream.
func sseItems(t *testing.T, addr string) <-chan tailItem {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/stream?filter=f/%23", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	events := make(chan sseEvent, 1000)
	go func() {
		defer resp.Body.Close()
		readSSE(resp.Body, events)
		close(events)
	}()
	out := make(chan tailItem, 1000)
	go func() {
		for ev := range events {
			var d struct {
				Payload string
				LastID  string `json:"last_id"`
			}
			if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
				t.Errorf("event %+v: %v", ev, err)
			}
			switch ev.event {
			case "message":
				out <- tailItem{id: ev.id, payload: d.Payload}
			case "gap":
				if ev.id != "" {
					t.Errorf("a gap event with an id: %+v", ev)
				}
				out <- tailItem{gap: true, id: d.LastID}
			}
		}
	}()
	return out
}

// takeItems returns the next n items of ch.
func takeItems(t *testing.T, what string, ch <-chan tailItem, n int) []tailItem {
	t.Helper()
	var got []tailItem
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case it := <-ch:
			got = append(got, it)
		case <-timeout:
			t.Fatalf("%s: got %v, want %d items", what, got, n)
		}
	}
	return got
}

// metricValue is the value of an unlabelled metric in a bridge's /metrics.
func metricValue(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return ""
}

// An instance whose history tail is paused while more messages than the
// history window holds are recorded tells its WebSocket and SSE clients
// with a gap exactly where messages went missing, counts them in
// mqttbridge_tail_gap_messages_total and the log, and goes on from the
// oldest message left.
func TestTailGap(t *testing.T) {
	const window, before, during = 10, 3, 50
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	_, redisURL := testenv.StartRedis(t, false)
	conf := t.TempDir() + "/bridge.yaml"
	yaml := fmt.Sprintf("mqtt:\n  ingest_lease: 2s\nhistory:\n  size: %d\n", window)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fleet{mq: mq, mqttPort: mq.Port}
	for i := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		f.bridges = append(f.bridges, testenv.StartProcess(t, fmt.Sprint("bridge ", i), addr, []string{"MQTTBRIDGE_TEST_RUN_MAIN=1"},
			os.Args[0], "--config", conf, "--http-addr", addr, "--mqtt-url", mq.URL, "--redis-url", redisURL,
			"--topics", "f/#", "--instance-id", fmt.Sprint("i", i), "--log-level", "info"))
	}
	for _, b := range f.bridges {
		waitReadyAt(t, b.Addr)
	}
	owner := f.bridges[f.owner(t)]
	lagging := f.bridges[1-f.owner(t)]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lagging instance:\n%s", lastLines(lagging.Log(), 30))
		}
	})

	ws, sse := wsItems(t, lagging.Addr), sseItems(t, lagging.Addr)
	if v := metricValue(t, lagging.Addr, "mqttbridge_tail_gap_messages_total"); v != "0" {
		t.Fatalf("mqttbridge_tail_gap_messages_total = %q before, want 0", v)
	}
	pub := startPublisher(t, mq.Port)
	defer pub.close(t)
	for range before {
		pub.publish(t)
	}
	seen := takeItems(t, "ws before", ws, before)
	takeItems(t, "sse before", sse, before)
	lastSeen := seen[before-1].id

	// Pause the lagging instance while the owner records more than the
	// window holds.
	lagging.Pause()
	for range during {
		pub.publish(t)
	}
	ingested := `mqttbridge_ingest_messages_total{broker="default"}`
	for deadline := time.Now().Add(30 * time.Second); metricValue(t, owner.Addr, ingested) != fmt.Sprint(before+during); {
		if time.Now().After(deadline) {
			t.Fatalf("the owner ingested %s messages, want %d", metricValue(t, owner.Addr, ingested), before+during)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lagging.Resume()

	// Up to the newest message: the ones the tail read, each hole in them
	// marked by a gap right after the last message delivered before it,
	// and the messages the window still holds, all of them. The tail may
	// have read some of the messages published during the pause before it
	// stopped (the answer to the read it had sent): those come before the
	// hole they leave out, with a gap of their own if the put that brought
	// them had already trimmed some.
	type hole struct {
		after string
		lost  int
	}
	check := func(what string, ch <-chan tailItem) (holes []hole) {
		t.Helper()
		last, next, gapped := lastSeen, before+1, false
		for next <= before+during {
			it := takeItems(t, what, ch, 1)[0]
			if it.gap {
				if gapped || it.id != last {
					t.Fatalf("%s: a gap after %s, want at most one, after %s, the last message delivered", what, it.id, last)
				}
				gapped = true
				continue
			}
			n, _ := strconv.Atoi(it.payload)
			switch {
			case n == next && !gapped:
			case n > next && gapped && n <= before+during-window+1:
				holes = append(holes, hole{after: last, lost: n - next})
			default:
				t.Fatalf("%s: message %v after %s (gap before it: %v), want message %d, or a gap and then one of the window", what, it, last, gapped, next)
			}
			last, next, gapped = it.id, n+1, false
		}
		if len(holes) == 0 {
			t.Fatalf("%s: no gap", what)
		}
		return holes
	}
	holes := check("ws", ws)
	if sseHoles := check("sse", sse); !slices.Equal(holes, sseHoles) {
		t.Fatalf("gaps: ws %v, sse %v", holes, sseHoles)
	}
	for range 2 {
		pub.publish(t)
	}
	for what, ch := range map[string]<-chan tailItem{"ws": ws, "sse": sse} {
		if got := takeItems(t, what+" after", ch, 2); got[0].payload != fmt.Sprint(before+during+1) || got[1].payload != fmt.Sprint(before+during+2) {
			t.Fatalf("%s: after the gap got %v", what, got)
		}
	}

	lost := 0
	log := lagging.Log()
	for _, h := range holes {
		lost += h.lost
		if want := fmt.Sprintf("lost=%d count=exactly after_id=%s", h.lost, h.after); !strings.Contains(log, want) {
			t.Fatalf("no warning %q in the log:\n%s", want, lastLines(log, 20))
		}
	}
	if v := metricValue(t, lagging.Addr, "mqttbridge_tail_gap_messages_total"); v != fmt.Sprint(lost) {
		t.Fatalf("mqttbridge_tail_gap_messages_total = %q, want %d", v, lost)
	}
}
