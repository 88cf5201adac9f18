package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/apitest"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// newAlarmEnv is newEnv with the alarm "plant" on demo/alarm/#, started.
func newAlarmEnv(t *testing.T) *env {
	t.Helper()
	store, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{Store: store, MaxPayload: maxPayload, Alarms: []bridge.AlarmConfig{
		{Name: "plant", Filters: []string{"demo/alarm/#"}, Clear: []string{"OK"}, AckTopic: "demo/acks/{topic}"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute(bridge.Route{Filters: []string{"demo/#"}, Upstream: fakeUpstream{}}); err != nil {
		t.Fatal(err)
	}
	b.Start(t.Context())
	t.Cleanup(b.Close)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Bridge: b, Spec: mqttbridge.OpenAPI}))
	t.Cleanup(srv.Close)
	e := &env{v: apitest.New(t, mqttbridge.OpenAPI), srv: srv, b: b, store: store}
	for !slices.Equal(b.Problems(t.Context()), nil) {
		if t.Context().Err() != nil {
			t.Fatal("the alarms never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// alarmsNow lists the alarms of a query until cond holds.
func (e *env) alarmsUntil(t *testing.T, query string, cond func([]wire.Alarm) bool) []wire.Alarm {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/v1/alarms"+query, nil))
		wantStatus(t, resp, body, 200, "")
		var l httpapi.AlarmList
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
		if cond(l.Alarms) {
			return l.Alarms
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/alarms%s = %s: the condition never held", query, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpecMatchesAlarms walks an alarm through its states over the real
// handlers and checks every answer against openapi.yaml.
func TestSpecMatchesAlarms(t *testing.T) {
	e := newAlarmEnv(t)
	c := e.srv.Client()
	e.b.Ingest(bridge.Message{Topic: "demo/alarm/p1", Payload: []byte("9.1"), QoS: 1, Retain: true})
	e.b.Ingest(bridge.Message{Topic: "demo/other", Payload: []byte("9.1")})             // no alarm
	e.b.Ingest(bridge.Message{Topic: "demo/acks/demo/alarm/p2", Payload: []byte("{}")}) // an ack topic: never raises
	e.b.Ingest(bridge.Message{Topic: "demo/alarm/p1", Payload: []byte("9.4"), QoS: 1, Retain: true})
	as := e.alarmsUntil(t, "", func(as []wire.Alarm) bool { return len(as) == 1 && as[0].Count == 2 })
	a := as[0]
	if a.Topic != "demo/alarm/p1" || !a.Active || a.Acknowledged || *a.Message.Payload != "9.4" || a.AckedBy != nil || a.History != nil {
		t.Fatalf("alarm %+v", a)
	}

	resp, body := e.v.Do(t, c, e.req(t, http.MethodGet, "/v1/alarms/"+a.ID, nil))
	wantStatus(t, resp, body, 200, "")
	var got wire.Alarm
	_ = json.Unmarshal(body, &got)
	if len(got.History) != 2 || got.History[0].Kind != "raised" || got.History[1].Kind != "updated" {
		t.Fatalf("history %s", body)
	}

	for _, q := range []string{"?state=acknowledged", "?state=cleared", "?filter=demo/other/%23"} {
		e.alarmsUntil(t, q, func(as []wire.Alarm) bool { return len(as) == 0 })
	}
	e.alarmsUntil(t, "?state=unacknowledged&filter=demo/%2B/%2B", func(as []wire.Alarm) bool { return len(as) == 1 })

	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/alarms/"+a.ID+"/ack", []byte(`{"comment":"on it"}`), "Content-Type", "application/json"))
	wantStatus(t, resp, body, 200, "")
	_ = json.Unmarshal(body, &got)
	if !got.Acknowledged || got.AckedBy == nil || *got.AckedBy != "anonymous" || *got.Comment != "on it" || got.History[2].Kind != "acknowledged" {
		t.Fatalf("acknowledged %s", body)
	}
	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/alarms/"+a.ID+"/ack", nil))
	wantStatus(t, resp, body, http.StatusConflict, bridge.ECodeAlreadyAcknowledged)
	if !strings.Contains(string(body), "acknowledged by anonymous at ") {
		t.Fatalf("409 does not say who and when: %s", body)
	}

	// Cleared and acknowledged: closed, out of the list, readable by id.
	e.b.Ingest(bridge.Message{Topic: "demo/alarm/p1", Payload: []byte("OK"), QoS: 1, Retain: true})
	e.alarmsUntil(t, "", func(as []wire.Alarm) bool { return len(as) == 0 })
	resp, body = e.v.Do(t, c, e.req(t, http.MethodGet, "/v1/alarms/"+a.ID, nil))
	wantStatus(t, resp, body, 200, "")
	_ = json.Unmarshal(body, &got)
	if got.Active || got.ClearedAt == nil || got.History[len(got.History)-1].Kind != "cleared" {
		t.Fatalf("closed alarm %s", body)
	}
	// A new raise opens a new alarm.
	e.b.Ingest(bridge.Message{Topic: "demo/alarm/p1", Payload: []byte("9.9")})
	as = e.alarmsUntil(t, "", func(as []wire.Alarm) bool { return len(as) == 1 })
	if as[0].ID == a.ID || as[0].Count != 1 {
		t.Fatalf("after closing, a raise gave %+v", as[0])
	}

	for _, target := range []string{"/v1/alarms/1-0", "/v1/alarms/nope", "/v1/alarms/1-0/ack"} {
		method := http.MethodGet
		if strings.HasSuffix(target, "/ack") {
			method = http.MethodPost
		}
		do := e.v.Do
		if strings.Contains(target, "nope") {
			do = e.v.DoUnchecked // the spec's pattern refuses it already
		}
		resp, body = do(t, c, e.req(t, method, target, nil))
		wantStatus(t, resp, body, 404, bridge.ECodeNotFound)
	}
	for _, q := range []string{"?state=open", "?cursor=abc", "?cursor=" + a.ID, "?filter=a/%23/b", "?limit=0", "?x=1"} {
		resp, body = e.v.DoUnchecked(t, c, e.req(t, http.MethodGet, "/v1/alarms"+q, nil))
		if resp.StatusCode != 400 {
			t.Errorf("GET /v1/alarms%s = %d %s, want 400", q, resp.StatusCode, body)
		}
	}
	long := `{"comment":"` + strings.Repeat("x", 1025) + `"}`
	resp, body = e.v.DoUnchecked(t, c, e.req(t, http.MethodPost, "/v1/alarms/"+as[0].ID+"/ack", []byte(long)))
	wantStatus(t, resp, body, 400, bridge.ECodeInvalidRequest)
}

// TestAlarmPages: pages of the open list, newest first, with opaque
// cursors that carry no topic.
func TestAlarmPages(t *testing.T) {
	e := newAlarmEnv(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		e.b.Ingest(bridge.Message{Topic: "demo/alarm/" + n, Payload: []byte("1")})
	}
	e.alarmsUntil(t, "", func(as []wire.Alarm) bool { return len(as) == 5 })
	var topics []string
	target := "/v1/alarms?limit=2"
	for range 5 {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, target, nil))
		wantStatus(t, resp, body, 200, "")
		var l httpapi.AlarmList
		_ = json.Unmarshal(body, &l)
		for _, a := range l.Alarms {
			topics = append(topics, strings.TrimPrefix(a.Topic, "demo/alarm/"))
		}
		if l.NextCursor == "" {
			break
		}
		if strings.Contains(l.NextCursor, "demo") || strings.Contains(l.NextCursor, l.Alarms[len(l.Alarms)-1].ID) {
			t.Fatalf("cursor %q is not opaque", l.NextCursor)
		}
		target = "/v1/alarms?limit=2&cursor=" + l.NextCursor
	}
	if strings.Join(topics, "") != "edcba" {
		t.Fatalf("pages gave %v, want e d c b a", topics)
	}
}
