package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The API keys of the alarm tests.
const (
	operatorKey = "mbk_operator-test-key-0123456789"
	viewerKey   = "mbk_viewer-test-key-0123456789"
)

// alarmJSON is an alarm as the API shows it.
type alarmJSON struct {
	ID           string
	Name         string
	Topic        string
	Active       bool
	Acknowledged bool
	Count        int
	AckedBy      *string `json:"acked_by"`
	AckedAt      *string `json:"acked_at"`
	Comment      *string
	EscalatedAt  *string `json:"escalated_at"`
	Message      struct{ ID, Payload string }
	History      []struct{ Kind, By, Webhook string }
}

func (a alarmJSON) kinds() string {
	var k []string
	for _, h := range a.History {
		k = append(k, h.Kind)
	}
	return strings.Join(k, ",")
}

// escalations is a webhook receiver that checks signatures and keeps the
// bodies it accepted.
type escalations struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	ids    []string
}

func newEscalations(t *testing.T) *escalations {
	e := &escalations{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := verifyWebhook(hookSecret, req.Header, body); err != nil {
			t.Errorf("escalation signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		e.mu.Lock()
		e.bodies = append(e.bodies, string(body))
		e.ids = append(e.ids, req.Header.Get("webhook-id"))
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *escalations) got() ([]string, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.bodies...), append([]string(nil), e.ids...)
}

// TestAlarmsAcrossInstances runs two instances on one Redis and one
// Mosquitto, with authentication: devices raise, update and clear alarms
// with real MQTT messages; each message is applied once for the fleet;
// either instance lists them; a subscribe-only key sees but cannot
// acknowledge (403); of simultaneous acknowledgments on both instances
// exactly one wins (200) and the others get 409 already_acknowledged; the
// acknowledgment is published retained, QoS 1, on the ack topic and does
// not raise; an alarm left unacknowledged is escalated to the webhook
// exactly once for the fleet.
func TestAlarmsAcrossInstances(t *testing.T) {
	testenv.Long(t, "two instances and a webhook receiver")
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	hook := newEscalations(t)
	plant := prefix + "/plant"
	ackTopic := prefix + "/acks/{topic}"
	change := func(c *config.Config) {
		c.MQTT.IngestLease = config.Duration(time.Second)
		c.Auth.APIKeys = []config.APIKey{
			{Name: "operator", SHA256: auth.HashKey(operatorKey), Rules: config.Rules{Publish: []string{plant + "/#"}, Subscribe: []string{plant + "/#"}}},
			{Name: "viewer", SHA256: auth.HashKey(viewerKey), Rules: config.Rules{Subscribe: []string{plant + "/#", prefix + "/pumps/#"}}},
		}
		c.Webhooks = []config.Webhook{{Name: "oncall", Filters: []string{prefix + "/nothing"}, URL: hook.URL, Secret: hookSecret}}
		c.Alarms = []config.Alarm{
			{Name: "plant", Filters: []string{plant + "/+/alarm/#"}, Clear: []string{"0", "OK"}, AckTopic: ackTopic},
			{Name: "pumps", Filters: []string{prefix + "/pumps/+/alarm"}, EscalateAfter: config.Duration(time.Second), EscalateWebhook: "oncall"},
		}
	}
	args := []string{"--mqtt-url", mq, "--redis-url", testenv.RedisURL(t), "--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := startWith(t, change, append(args, "--instance-id", "a")...)
	b := startWith(t, change, append(args, "--instance-id", "b")...)
	a.waitReady(t)
	b.waitReady(t)
	t.Cleanup(func() { // the retained acknowledgments
		for _, n := range []string{"1", "2"} {
			testenv.Publish(t, mq, bridge.Message{Topic: prefix + "/acks/" + plant + "/" + n + "/alarm/temp", QoS: 1, Retain: true})
		}
	})
	operator, viewer := []string{"X-API-Key", operatorKey}, []string{"X-API-Key", viewerKey}
	publish := func(topic, payload string, retain bool) {
		testenv.Publish(t, mq, bridge.Message{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain})
	}
	list := func(in *instance, query string) []alarmJSON {
		resp, body := in.do(t, "GET", "/v1/alarms"+query, nil, viewer...)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /v1/alarms%s: %d %s", query, resp.StatusCode, body)
		}
		return decode[struct{ Alarms []alarmJSON }](t, body).Alarms
	}
	get := func(in *instance, id string) alarmJSON {
		resp, body := in.do(t, "GET", "/v1/alarms/"+id, nil, viewer...)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /v1/alarms/%s: %d %s", id, resp.StatusCode, body)
		}
		return decode[alarmJSON](t, body)
	}

	// Raised, then updated: one alarm, applied once for the fleet.
	temp1 := plant + "/1/alarm/temp"
	publish(temp1, "81", false)
	var alarm alarmJSON
	eventually(t, "the raised alarm, on b", func() string {
		as := list(b, "")
		if len(as) != 1 {
			return fmt.Sprint(as)
		}
		alarm = as[0]
		return ""
	})
	if alarm.Topic != temp1 || alarm.Name != "plant" || !alarm.Active || alarm.Acknowledged || alarm.Count != 1 || alarm.Message.Payload != "81" {
		t.Fatalf("raised: %+v", alarm)
	}
	publish(temp1, "85", false)
	eventually(t, "the update, on a", func() string {
		if as := list(a, ""); len(as) != 1 || as[0].Count != 2 || as[0].Message.Payload != "85" || as[0].ID != alarm.ID {
			return fmt.Sprint(as)
		}
		return ""
	})

	// Subscribe alone sees it, but cannot acknowledge.
	if got := get(a, alarm.ID); got.kinds() != "raised,updated" {
		t.Fatalf("history %q", got.kinds())
	}
	resp, body := a.do(t, "POST", "/v1/alarms/"+alarm.ID+"/ack", nil, viewer...)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a subscribe-only acknowledgment: %d %s, want 403", resp.StatusCode, body)
	}
	resp, _ = a.do(t, "GET", "/v1/alarms", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", resp.StatusCode)
	}

	// Simultaneous acknowledgments on both instances: exactly one 200.
	acks := testenv.Subscribe(t, mq, prefix+"/acks/#")
	type answer struct {
		status int
		body   []byte
	}
	answers := make(chan answer, 8)
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := range 8 {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Go(func() {
			<-startGun
			resp, body := in.do(t, "POST", "/v1/alarms/"+alarm.ID+"/ack", []byte(fmt.Sprintf(`{"comment":"press %d"}`, i)),
				append([]string{"Content-Type", "application/json"}, operator...)...)
			answers <- answer{resp.StatusCode, body}
		})
	}
	close(startGun)
	wg.Wait()
	close(answers)
	var won alarmJSON
	wins := 0
	for ans := range answers {
		switch ans.status {
		case 200:
			wins++
			won = decode[alarmJSON](t, ans.body)
		case 409:
			if errorCode(ans.body) != "already_acknowledged" || !strings.Contains(string(ans.body), "acknowledged by key:operator at ") {
				t.Errorf("409 body %s", ans.body)
			}
		default:
			t.Errorf("acknowledgment answered %d %s", ans.status, ans.body)
		}
	}
	if wins != 1 {
		t.Fatalf("%d acknowledgments won, want exactly 1", wins)
	}
	if !won.Acknowledged || won.AckedBy == nil || *won.AckedBy != "key:operator" || !strings.HasPrefix(*won.Comment, "press ") || won.kinds() != "raised,updated,acknowledged" {
		t.Fatalf("acknowledged alarm %+v", won)
	}

	// The device learns of it: retained, QoS 1, on the ack topic.
	ack := testenv.NextMessage(t, acks, 10*time.Second)
	var payload struct{ ID, Topic, AckedBy, AckedAt, Comment string }
	if err := json.Unmarshal(ack.Payload, &payload); err != nil {
		t.Fatalf("ack payload %s: %v", ack.Payload, err)
	}
	if ack.Topic != prefix+"/acks/"+temp1 || ack.QoS != 1 || !ack.Retain {
		t.Fatalf("ack published on %q, QoS %d, retain %v", ack.Topic, ack.QoS, ack.Retain)
	}
	var raw map[string]any
	_ = json.Unmarshal(ack.Payload, &raw)
	if payload.ID != alarm.ID || payload.Topic != temp1 || raw["acked_by"] != "key:operator" || raw["acked_at"] == nil || raw["comment"] != *won.Comment || len(raw) != 5 {
		t.Fatalf("ack payload %s", ack.Payload)
	}
	// Acknowledged but still active: open. The ack message raised nothing.
	time.Sleep(300 * time.Millisecond)
	if as := list(b, ""); len(as) != 1 || as[0].ID != alarm.ID || !as[0].Acknowledged || !as[0].Active {
		t.Fatalf("after the acknowledgment: %+v", as)
	}
	if as := list(a, "?state=unacknowledged"); len(as) != 0 {
		t.Fatalf("unacknowledged: %+v", as)
	}

	// Cleared: closed, out of the list, its history kept.
	publish(temp1, "OK", false)
	eventually(t, "the alarm closed", func() string {
		if as := list(a, ""); len(as) != 0 {
			return fmt.Sprint(as)
		}
		return ""
	})
	if got := get(b, alarm.ID); got.Active || got.kinds() != "raised,updated,acknowledged,cleared" || got.History[2].By != "key:operator" {
		t.Fatalf("closed alarm %+v", got)
	}

	// Cleared before acknowledged (an empty retained message clears): open
	// until acknowledged; then closed.
	temp2 := plant + "/2/alarm/temp"
	publish(temp2, "90", true)
	publish(temp2, "", true)
	var second alarmJSON
	eventually(t, "the cleared, unacknowledged alarm", func() string {
		as := list(b, "?state=cleared")
		if len(as) != 1 || as[0].Active || as[0].Acknowledged {
			return fmt.Sprint(as)
		}
		second = as[0]
		return ""
	})
	resp, body = b.do(t, "POST", "/v1/alarms/"+second.ID+"/ack", nil, operator...)
	if resp.StatusCode != 200 {
		t.Fatalf("acknowledging the cleared alarm: %d %s", resp.StatusCode, body)
	}
	if as := list(a, ""); len(as) != 0 {
		t.Fatalf("open after acknowledging a cleared alarm: %+v", as)
	}
	if got := get(a, second.ID); got.kinds() != "raised,cleared,acknowledged" {
		t.Fatalf("history %q", got.kinds())
	}
	// A new raise on the first topic opens a new alarm.
	publish(temp1, "99", false)
	eventually(t, "a new alarm on the first topic", func() string {
		if as := list(a, ""); len(as) != 1 || as[0].ID == alarm.ID || as[0].Count != 1 {
			return fmt.Sprint(as)
		}
		return ""
	})

	// Escalation: once for the fleet, recorded in the history.
	pump := prefix + "/pumps/7/alarm"
	publish(pump, "dry run", false)
	var escalated alarmJSON
	eventually(t, "the escalation", func() string {
		as := list(a, "?filter="+strings.ReplaceAll(pump, "/", "%2F"))
		if len(as) != 1 || as[0].EscalatedAt == nil {
			return fmt.Sprint(as)
		}
		escalated = as[0]
		return ""
	})
	time.Sleep(2500 * time.Millisecond) // more scans on both instances: nothing more
	bodies, ids := hook.got()
	if len(bodies) != 1 || ids[0] != "alarm-escalated-"+escalated.ID {
		t.Fatalf("the webhook got %d escalations %q (ids %q), want 1", len(bodies), bodies, ids)
	}
	var ev struct {
		Type string
		Data alarmJSON
	}
	if err := json.Unmarshal([]byte(bodies[0]), &ev); err != nil || ev.Type != "alarm.escalated" || ev.Data.ID != escalated.ID || ev.Data.Topic != pump {
		t.Fatalf("escalation body %s (%v)", bodies[0], err)
	}
	if got := get(b, escalated.ID); got.kinds() != "raised,escalated" || got.History[1].Webhook != "oncall" {
		t.Fatalf("escalated history %+v", got.History)
	}

	// Either instance stops: the other applies what comes next, from
	// where the fleet stopped.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	publish(pump, "still dry", false)
	publish(plant+"/3/alarm/level", "low", false)
	eventually(t, "the survivor applies", func() string {
		as := list(b, "")
		if len(as) != 3 {
			return fmt.Sprint(as)
		}
		for _, x := range as {
			if x.Topic == pump && x.Count != 2 {
				return fmt.Sprint(as)
			}
		}
		return ""
	})
}
