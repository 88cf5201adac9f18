package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/apitest"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// replier is an Upstream that answers requests the way devices do, by
// topic; the real adapter and devices are tested in cmd/mqttbridge.
type replier struct{ b *bridge.Bridge }

func (replier) Name() string        { return "devices" }
func (replier) Problems() []string  { return nil }
func (replier) ReplyPrefix() string { return "replies/test/" }
func (replier) RepliesReady() bool  { return true }
func (r replier) Publish(_ context.Context, msg bridge.Message) (bridge.PublishResult, error) {
	p := msg.Properties
	reply := bridge.Message{Topic: p.ResponseTopic, QoS: 1, ReceivedAt: time.Now()}
	switch msg.Topic {
	case "dev/echo": // a MQTT v5 device: echoes the correlation data
		reply.Payload = append([]byte("echo:"), msg.Payload...)
		reply.Properties = bridge.Properties{ContentType: "text/x-echo", CorrelationData: p.CorrelationData,
			UserProperties: []bridge.UserProperty{{Key: "status", Value: "ok"}}}
	case "dev/binary": // answers the response topic only (mosquitto_rr style)
		reply.Payload = []byte{0, 0xff}
	case "dev/silent":
		return bridge.PublishResult{}, nil
	case "dev/down":
		return bridge.PublishResult{}, bridge.ErrUnavailable
	}
	go r.b.HandleReply(reply)
	return bridge.PublishResult{}, nil
}

// fakeWebhooks serves one webhook, "erp", with one dead letter.
type fakeWebhooks struct{ replayed [][]string }

var theDeadLetter = bridge.DeadLetter{ID: "1767225700000-0", Attempts: 9, Error: "HTTP 503", FailedAt: time.Now(),
	Message: bridge.Message{ID: "1767225600000-0", Topic: "orders/1/status", Payload: []byte("shipped"), QoS: 1, ReceivedAt: time.Now()}}

func (f *fakeWebhooks) DeadLetters(_ context.Context, id bridge.Identity, name, after string, limit int) ([]bridge.DeadLetter, string, error) {
	switch {
	case name != "erp":
		return nil, "", bridge.Errorf(bridge.ECodeNotFound, "there is no webhook %q", name)
	case id.Name == "intruder":
		return nil, "", bridge.Errorf(bridge.ECodeForbidden, "no")
	case after == "":
		return []bridge.DeadLetter{theDeadLetter}, theDeadLetter.ID, nil
	}
	return nil, "", nil
}

func (f *fakeWebhooks) Replay(_ context.Context, _ bridge.Identity, name string, ids []string) (int, error) {
	if name != "erp" {
		return 0, bridge.Errorf(bridge.ECodeNotFound, "there is no webhook %q", name)
	}
	f.replayed = append(f.replayed, ids)
	if len(ids) == 1 && ids[0] != theDeadLetter.ID {
		return 0, nil
	}
	return 1, nil
}

func newRequestEnv(t *testing.T, hooks httpapi.Webhooks) *env {
	t.Helper()
	b, store := testenv.NewBridge(t, bridge.Config{MaxPayload: maxPayload}, bridge.Route{Filters: []string{"demo/#"}, Upstream: fakeUpstream{}})
	if err := b.AddRoute(bridge.Route{Filters: []string{"dev/#"}, Upstream: replier{b}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Bridge: b, Spec: mqttbridge.OpenAPI, Webhooks: hooks,
		RequestTimeout: 2 * time.Second, MaxRequestTimeout: 5 * time.Second}))
	t.Cleanup(srv.Close)
	return &env{v: apitest.New(t, mqttbridge.OpenAPI), srv: srv, b: b, store: store}
}

func TestSpecMatchesRequest(t *testing.T) {
	e := newRequestEnv(t, nil)
	c := e.srv.Client()

	resp, body := e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/request/dev/echo?qos=2&timeout=1.5", []byte(`{"speed":3}`),
		"Content-Type", "application/json", "MQTT-User-Property", "by=test"))
	wantStatus(t, resp, body, http.StatusOK, "")
	h := resp.Header
	if string(body) != `echo:{"speed":3}` || h.Get("Content-Type") != "text/x-echo" || !strings.HasPrefix(h.Get("MQTT-Topic"), "replies/test/") ||
		h.Get("MQTT-User-Property") != "status=ok" || h.Get("MQTT-Correlation-Data") == "" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("reply %q, headers %v", body, h)
	}
	if _, has := h["Mqtt-Message-Id"]; has {
		t.Fatalf("a reply has a message id header: %v", h)
	}

	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/request/dev/binary", nil, "Accept", "application/json"))
	wantStatus(t, resp, body, http.StatusOK, "")
	var reply map[string]any
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatal(err)
	}
	if reply["payload_base64"] != "AP8=" || reply["id"] != nil || !strings.HasPrefix(reply["topic"].(string), "replies/test/") {
		t.Fatalf("JSON reply %s", body)
	}

	began := time.Now()
	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/request/dev/silent?timeout=0.3", []byte("x")))
	wantStatus(t, resp, body, http.StatusGatewayTimeout, bridge.ECodeTimeout)
	if d := time.Since(began); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("504 after %v, want about 0.3s", d)
	}

	for _, c2 := range []struct {
		target, header string
		status         int
		code           string
	}{
		{"/v1/request/dev/echo", "MQTT-Response-Topic", http.StatusBadRequest, bridge.ECodeInvalidRequest},
		{"/v1/request/dev/echo", "MQTT-Correlation-Data", http.StatusBadRequest, bridge.ECodeInvalidRequest},
		{"/v1/request/dev/echo?retain=true", "", http.StatusBadRequest, bridge.ECodeInvalidRequest},
		{"/v1/request/dev/down", "", http.StatusServiceUnavailable, bridge.ECodeBrokerUnavailable},
		{"/v1/request/other/topic", "", http.StatusNotFound, bridge.ECodeNotBridged},
		{"/v1/request/demo/no-replies", "", http.StatusBadRequest, bridge.ECodeInvalidRequest},
	} {
		var hdr []string
		if c2.header != "" {
			hdr = []string{c2.header, "eA=="}
		}
		resp, body := e.v.DoUnchecked(t, c, e.req(t, http.MethodPost, c2.target, []byte("x"), hdr...))
		wantStatus(t, resp, body, c2.status, c2.code)
	}
	for _, target := range []string{"/v1/request/dev/echo?timeout=0", "/v1/request/dev/echo?timeout=abc", "/v1/request/dev/a%2Bb"} {
		resp, body := e.v.DoInvalid(t, c, e.req(t, http.MethodPost, target, []byte("x")))
		wantStatus(t, resp, body, http.StatusBadRequest, "")
	}
	resp, body = e.v.DoUnchecked(t, c, e.req(t, http.MethodPost, "/v1/request/dev/echo?timeout=6", []byte("x")))
	wantStatus(t, resp, body, http.StatusBadRequest, bridge.ECodeInvalidRequest)

	st := e.b.RequestStats()
	if st.Replied != 2 || st.TimedOut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpecMatchesDeadLetters(t *testing.T) {
	hooks := &fakeWebhooks{}
	e := newRequestEnv(t, hooks)
	c := e.srv.Client()
	resp, body := e.v.Do(t, c, e.req(t, http.MethodGet, "/v1/webhooks/erp/dead-letters?limit=1", nil))
	wantStatus(t, resp, body, http.StatusOK, "")
	var page struct {
		DeadLetters []struct {
			ID       string
			Attempts int
			Message  struct{ ID, Topic, Payload string }
		} `json:"dead_letters"`
		Next string `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.DeadLetters) != 1 || page.Next != theDeadLetter.ID ||
		page.DeadLetters[0].Message.Payload != "shipped" || page.DeadLetters[0].Attempts != 9 {
		t.Fatalf("page %s (%v)", body, err)
	}
	resp, body = e.v.Do(t, c, e.req(t, http.MethodGet, "/v1/webhooks/erp/dead-letters?cursor="+page.Next, nil))
	wantStatus(t, resp, body, http.StatusOK, "")
	if string(body) != `{"dead_letters":[]}` {
		t.Fatalf("last page %s", body)
	}
	resp, body = e.v.Do(t, c, e.req(t, http.MethodGet, "/v1/webhooks/nope/dead-letters", nil))
	wantStatus(t, resp, body, http.StatusNotFound, bridge.ECodeNotFound)
	resp, body = e.v.DoInvalid(t, c, e.req(t, http.MethodGet, "/v1/webhooks/erp/dead-letters?limit=0", nil))
	wantStatus(t, resp, body, http.StatusBadRequest, bridge.ECodeInvalidRequest)

	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/webhooks/erp/dead-letters/replay", nil))
	wantStatus(t, resp, body, http.StatusOK, "")
	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/webhooks/erp/dead-letters/replay", []byte(`{"ids":["1767225700000-0"]}`), "Content-Type", "application/json"))
	wantStatus(t, resp, body, http.StatusOK, "")
	if string(body) != `{"replayed":1}` {
		t.Fatalf("replay %s", body)
	}
	resp, body = e.v.DoInvalid(t, c, e.req(t, http.MethodPost, "/v1/webhooks/erp/dead-letters/replay", []byte(`{"id":"x"}`), "Content-Type", "application/json"))
	wantStatus(t, resp, body, http.StatusBadRequest, bridge.ECodeInvalidRequest)
	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/webhooks/erp/dead-letters/1767225700000-0/replay", nil))
	wantStatus(t, resp, body, http.StatusOK, "")
	resp, body = e.v.Do(t, c, e.req(t, http.MethodPost, "/v1/webhooks/erp/dead-letters/1-1/replay", nil))
	wantStatus(t, resp, body, http.StatusNotFound, bridge.ECodeNotFound)
	if len(hooks.replayed) != 4 || hooks.replayed[0] != nil {
		t.Fatalf("replays %q", hooks.replayed)
	}

	none := newRequestEnv(t, nil)
	resp, body = none.v.Do(t, c, none.req(t, http.MethodGet, "/v1/webhooks/erp/dead-letters", nil))
	wantStatus(t, resp, body, http.StatusNotFound, bridge.ECodeNotFound)
}
