package main

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// alarmFrame reads frames until an alarm frame comes, skipping message
// frames, and returns its alarm (and whether it is a snapshot).
func (c *wsClient) alarmFrame() (alarmJSON, bool) {
	c.tb.Helper()
	for {
		f := c.read()
		switch f["type"] {
		case "message":
			continue
		case "alarm":
			raw, _ := json.Marshal(f["alarm"])
			var a alarmJSON
			if err := json.Unmarshal(raw, &a); err != nil {
				c.tb.Fatal(err)
			}
			return a, f["snapshot"] == true
		}
		c.tb.Fatalf("got %v while waiting for an alarm frame", f)
	}
}

// sseAlarm reads events until an alarm event comes.
func sseAlarm(t *testing.T, ch <-chan sseEvent) (alarmJSON, bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.event != "alarm" {
				continue
			}
			if ev.id != "" {
				t.Fatalf("an alarm event with an id (%q) would move Last-Event-ID", ev.id)
			}
			var a struct {
				alarmJSON
				Snapshot bool
			}
			if err := json.Unmarshal([]byte(ev.data), &a); err != nil {
				t.Fatal(err)
			}
			return a.alarmJSON, a.Snapshot
		case <-timeout:
			t.Fatal("no alarm event within 10 s")
		}
	}
}

// TestAlarmsLive: with two instances on one Redis, every transition
// reaches WebSocket and SSE clients of either instance whose filters
// match, wherever it happened (raised by the applier, acknowledged on the
// other instance); other filters get nothing; a client that resumes
// (last_id, Last-Event-ID) gets the open alarms of its filters first.
func TestAlarmsLive(t *testing.T) {
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	plant := prefix + "/plant"
	change := func(c *config.Config) {
		c.MQTT.IngestLease = config.Duration(time.Second)
		c.Alarms = []config.Alarm{{Name: "plant", Filters: []string{plant + "/+/alarm/#"}, Clear: []string{"OK"}}}
	}
	args := []string{"--mqtt-url", mq, "--redis-url", testenv.RedisURL(t), "--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := startWith(t, change, append(args, "--instance-id", "a")...)
	b := startWith(t, change, append(args, "--instance-id", "b")...)
	a.waitReady(t)
	b.waitReady(t)
	publish := func(topic, payload string) {
		testenv.Publish(t, mq, bridge.Message{Topic: topic, Payload: []byte(payload), QoS: 1})
	}
	q := func(filter string) string { return "filter=" + url.QueryEscape(filter) }

	wsA, _ := a.wsConnect(t, q(plant+"/#"))
	wsB, _ := b.wsConnect(t, q(plant+"/1/#"))
	other, _ := b.wsConnect(t, q(prefix+"/elsewhere/#"))
	status, sse := a.openStream(t, q(plant+"/+/alarm/#"))
	if status != 200 {
		t.Fatalf("stream: %d", status)
	}
	time.Sleep(200 * time.Millisecond) // the SSE subscription is live

	temp := plant + "/1/alarm/temp"
	publish(temp, "81")
	for name, read := range map[string]func() (alarmJSON, bool){
		"ws a": wsA.alarmFrame, "ws b": wsB.alarmFrame, "sse a": func() (alarmJSON, bool) { return sseAlarm(t, sse) },
	} {
		got, snap := read()
		if snap || got.Topic != temp || !got.Active || got.Acknowledged || got.Count != 1 || got.Message.Payload != "81" {
			t.Fatalf("%s: raised %+v (snapshot %v)", name, got, snap)
		}
	}
	id := ""
	eventually(t, "the alarm listed", func() string {
		resp, body := b.do(t, "GET", "/v1/alarms", nil)
		as := decode[struct{ Alarms []alarmJSON }](t, body).Alarms
		if resp.StatusCode != 200 || len(as) != 1 {
			return string(body)
		}
		id = as[0].ID
		return ""
	})

	// Acknowledged on b: the clients of a hear it too.
	resp, body := b.do(t, "POST", "/v1/alarms/"+id+"/ack", []byte(`{"comment":"seen"}`), "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("ack: %d %s", resp.StatusCode, body)
	}
	for name, read := range map[string]func() (alarmJSON, bool){
		"ws a": wsA.alarmFrame, "ws b": wsB.alarmFrame, "sse a": func() (alarmJSON, bool) { return sseAlarm(t, sse) },
	} {
		got, _ := read()
		if !got.Acknowledged || got.AckedBy == nil || *got.AckedBy != "anonymous" || got.Comment == nil || *got.Comment != "seen" {
			t.Fatalf("%s: acknowledged %+v", name, got)
		}
	}
	// Updated, then an alarm of another topic that only a's filter
	// matches.
	publish(temp, "85")
	if got, _ := wsA.alarmFrame(); got.Count != 2 || !got.Acknowledged {
		t.Fatalf("updated: %+v", got)
	}
	if got, _ := wsB.alarmFrame(); got.Count != 2 {
		t.Fatalf("updated on b: %+v", got)
	}
	level := plant + "/2/alarm/level"
	publish(level, "low")
	if got, _ := wsA.alarmFrame(); got.Topic != level {
		t.Fatalf("a: %+v, want the alarm of %s", got, level)
	}
	if f, err := wsB.tryRead(500 * time.Millisecond); err == nil {
		t.Fatalf("b's filter does not match %s, but got %v", level, f)
	}
	if f, err := other.tryRead(100 * time.Millisecond); err == nil {
		t.Fatalf("a client of other topics got %v", f)
	}

	// Cleared: acknowledged and cleared, closed; the frame says so.
	publish(temp, "OK")
	if got, _ := wsA.alarmFrame(); got.Topic != temp || got.Active || !got.Acknowledged {
		t.Fatalf("cleared: %+v", got)
	}

	// A client that resumes gets the open alarms of its filters first:
	// the one of level, not the closed one.
	last := mustString(t, wsLastID(t, a))
	c, _ := b.wsConnect(t, q(plant+"/#")+"&last_id="+url.QueryEscape(last))
	got, snap := c.alarmFrame()
	if !snap || got.Topic != level || !got.Active || got.Acknowledged {
		t.Fatalf("resume: first alarm frame %+v (snapshot %v), want the open alarm of %s", got, snap, level)
	}
	// SSE resumes with Last-Event-ID the same way.
	status, sse2 := b.openStream(t, q(plant+"/#"), "Last-Event-ID", last)
	if status != 200 {
		t.Fatalf("stream: %d", status)
	}
	if got, snap := sseAlarm(t, sse2); !snap || got.Topic != level {
		t.Fatalf("SSE resume: %+v (snapshot %v)", got, snap)
	}
	// The filters of the URL replay from the welcome's last_id: the open
	// alarms come first too. A subscribe frame without snapshot or
	// last_id sends none; with snapshot, it does.
	fresh, _ := b.wsConnect(t, q(plant+"/#"))
	if got, snap := fresh.alarmFrame(); !snap || got.Topic != level {
		t.Fatalf("connect with a filter: %+v (snapshot %v)", got, snap)
	}
	plain, _ := b.wsConnect(t, "")
	if f := plain.request(`{"type":"subscribe","id":"1","filters":["`+plant+`/#"]}`, "1"); f["type"] != "ok" {
		t.Fatalf("subscribe: %v", f)
	}
	plain.send(`{"type":"ping","id":"p"}`) // frames come in order: nothing before the pong
	if f := plain.read(); f["type"] != "pong" {
		t.Fatalf("a subscribe without snapshot got %v", f)
	}
	plain.send(`{"type":"subscribe","id":"2","filters":["` + plant + `/2/#"],"snapshot":true}`)
	if got, snap := plain.alarmFrame(); !snap || got.Topic != level {
		t.Fatalf("subscribe with snapshot: %+v (snapshot %v)", got, snap)
	}
}

// wsLastID is the newest message id an instance knows (its welcome).
func wsLastID(t *testing.T, in *instance) any {
	t.Helper()
	_, w := in.wsConnect(t, "")
	return w["last_id"]
}

func mustString(t *testing.T, v any) string {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%v is not a string", v)
	}
	return s
}
