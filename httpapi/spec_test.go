package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
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
	"github.com/mqttbridge/mqttbridge/internal/testenv"
	"github.com/mqttbridge/mqttbridge/internal/wire"
	"github.com/mqttbridge/mqttbridge/web"
)

// ginToOpenAPI turns a gin path into an OpenAPI path template:
// /v1/topics/*topic → /v1/topics/{topic}, /a/:id → /a/{id}.
func ginToOpenAPI(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if len(s) > 1 && (s[0] == ':' || s[0] == '*') {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

// diffRoutes returns the "METHOD path" routes only in spec and only in
// server, sorted.
func diffRoutes(spec, server [][2]string) (onlySpec, onlyServer []string) {
	key := func(r [2]string) string { return strings.ToUpper(r[0]) + " " + r[1] }
	in := func(rs [][2]string, k string) bool {
		return slices.ContainsFunc(rs, func(r [2]string) bool { return key(r) == k })
	}
	for _, r := range spec {
		if !in(server, key(r)) {
			onlySpec = append(onlySpec, key(r))
		}
	}
	for _, r := range server {
		if !in(spec, key(r)) {
			onlyServer = append(onlyServer, key(r))
		}
	}
	slices.Sort(onlySpec)
	slices.Sort(onlyServer)
	return onlySpec, onlyServer
}

func TestDiffRoutes(t *testing.T) {
	spec := [][2]string{{"GET", "/healthz"}, {"POST", "/v1/topics/{topic}"}}
	cases := []struct {
		name                 string
		server               [][2]string
		onlySpec, onlyServer []string
	}{
		{"same", [][2]string{{"POST", "/v1/topics/{topic}"}, {"GET", "/healthz"}}, nil, nil},
		{"server lacks one", [][2]string{{"GET", "/healthz"}}, []string{"POST /v1/topics/{topic}"}, nil},
		{"spec lacks one", [][2]string{{"GET", "/healthz"}, {"POST", "/v1/topics/{topic}"}, {"GET", "/metrics"}}, nil, []string{"GET /metrics"}},
		{"other method", [][2]string{{"GET", "/healthz"}, {"PUT", "/v1/topics/{topic}"}}, []string{"POST /v1/topics/{topic}"}, []string{"PUT /v1/topics/{topic}"}},
		{"gin syntax not mapped", [][2]string{{"GET", "/healthz"}, {"POST", "/v1/topics/*topic"}}, []string{"POST /v1/topics/{topic}"}, []string{"POST /v1/topics/*topic"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			onlySpec, onlyServer := diffRoutes(spec, c.server)
			if !slices.Equal(onlySpec, c.onlySpec) || !slices.Equal(onlyServer, c.onlyServer) {
				t.Errorf("diffRoutes = %q, %q; want %q, %q", onlySpec, onlyServer, c.onlySpec, c.onlyServer)
			}
		})
	}
	if got := ginToOpenAPI("/v1/topics/*topic"); got != "/v1/topics/{topic}" {
		t.Errorf("ginToOpenAPI(/v1/topics/*topic) = %q", got)
	}
	if got := ginToOpenAPI("/a/:id/b"); got != "/a/{id}/b" {
		t.Errorf("ginToOpenAPI(/a/:id/b) = %q", got)
	}
}

// TestSpecCoversEveryRoute fails when the server serves a route that
// openapi.yaml lacks, or openapi.yaml has an operation the server lacks.
func TestSpecCoversEveryRoute(t *testing.T) {
	v := apitest.New(t, mqttbridge.OpenAPI)
	b, _ := testenv.NewBridge(t, bridge.Config{})
	api := httpapi.New(httpapi.Config{Bridge: b, Spec: mqttbridge.OpenAPI,
		WebSocket: http.NotFoundHandler(), Web: http.NotFoundHandler(), WebPaths: web.Paths()})
	var server [][2]string
	for _, r := range api.Routes() {
		server = append(server, [2]string{r.Method, ginToOpenAPI(r.Path)})
	}
	if len(server) == 0 {
		t.Fatal("the server has no routes")
	}
	onlySpec, onlyServer := diffRoutes(v.Routes(), server)
	for _, r := range onlyServer {
		t.Errorf("the server serves %s, which openapi.yaml lacks", r)
	}
	for _, r := range onlySpec {
		t.Errorf("openapi.yaml has %s, which the server does not serve", r)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t, true)
	resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/openapi.yaml", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !bytes.Equal(body, mqttbridge.OpenAPI) {
		t.Errorf("GET /openapi.yaml served %d bytes that differ from the %d bytes of mqttbridge.OpenAPI", len(body), len(mqttbridge.OpenAPI))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", ct)
	}
}

// fakeUpstream answers publishes the way a broker can, by topic: it injects
// the refusals, the outage and the timeout that a real broker does not give
// on demand, so that every status the spec declares can be checked against
// the real handlers. Everything else succeeds.
type fakeUpstream struct{}

func (fakeUpstream) Name() string       { return "fake" }
func (fakeUpstream) Problems() []string { return nil }
func (fakeUpstream) Publish(_ context.Context, msg bridge.Message) (bridge.PublishResult, error) {
	switch msg.Topic {
	case "demo/refused":
		return bridge.PublishResult{}, bridge.ReasonError(0x87, "")
	case "demo/quota":
		return bridge.PublishResult{}, bridge.ReasonError(0x97, "slow down")
	case "demo/huge":
		return bridge.PublishResult{}, bridge.ReasonError(0x95, "")
	case "demo/rejected":
		return bridge.PublishResult{}, bridge.ReasonError(0x90, "")
	case "demo/down":
		return bridge.PublishResult{}, bridge.ErrUnavailable
	case "demo/slow":
		return bridge.PublishResult{}, bridge.ErrTimeout
	case "demo/nobody":
		if msg.QoS > 0 {
			return bridge.PublishResult{ReasonCode: 0x10}, nil
		}
	}
	return bridge.PublishResult{}, nil
}

const maxPayload = 64

type env struct {
	v     *apitest.Validator
	srv   *httptest.Server
	b     *bridge.Bridge
	store *memory.Store
}

// newEnv serves the real handlers over a bridge with the memory store and,
// when routed, the fake upstream owning demo/#.
func newEnv(t *testing.T, routed bool) *env {
	t.Helper()
	var routes []bridge.Route
	if routed {
		routes = append(routes, bridge.Route{Filters: []string{"demo/#"}, Upstream: fakeUpstream{}})
	}
	b, store := testenv.NewBridge(t, bridge.Config{MaxPayload: maxPayload}, routes...)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Bridge: b, Spec: mqttbridge.OpenAPI, MaxBatch: 3}))
	t.Cleanup(srv.Close)
	return &env{v: apitest.New(t, mqttbridge.OpenAPI), srv: srv, b: b, store: store}
}

// req builds a request; header is "Name", "value" pairs.
func (e *env) req(t *testing.T, method, target string, body []byte, header ...string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+target, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// ingest records msg as if its broker had delivered it, and returns it as
// stored.
func (e *env) ingest(t *testing.T, msg bridge.Message) bridge.Message {
	t.Helper()
	e.b.Ingest(msg)
	got, err := e.store.Get(t.Context(), msg.Topic)
	if err != nil {
		t.Fatalf("ingesting %q: %v", msg.Topic, err)
	}
	return got
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if code == "" {
		return
	}
	var e struct{ Error struct{ Code string } }
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code {
		t.Fatalf("error code %q (%v), want %q; body %s", e.Error.Code, err, code, body)
	}
}

// TestSpecMatchesPublish sends publishes the spec allows (Do) or forbids
// (DoInvalid) and checks that the answers match the spec and the status
// mapping.
func TestSpecMatchesPublish(t *testing.T) {
	e := newEnv(t, true)
	text := "text/plain"
	cases := []struct {
		name    string
		invalid bool // the request breaks the spec on purpose
		method  string
		target  string
		body    string
		header  []string
		status  int
		code    string
	}{
		{name: "QoS 1", target: "/v1/topics/demo/temp?qos=1&retain=true&expiry=60", body: "21.5", status: 200,
			header: []string{"Content-Type", text, "MQTT-Payload-Format", "1", "MQTT-Response-Topic", "demo/reply",
				"MQTT-Correlation-Data", "cmVxLTE=", "MQTT-User-Property", "a=1,b=%2C", "MQTT-User-Property", "a=2"}},
		{name: "QoS 2, no subscribers", target: "/v1/topics/demo/nobody?qos=2", body: "x", status: 200},
		{name: "QoS 0", target: "/v1/topics/demo/temp?qos=0", body: "21.5", status: 202},
		{name: "escaped slash", target: "/v1/topics/demo%2Ftemp", body: "1", status: 200},
		{name: "binary", target: "/v1/topics/demo/bin", body: "\xff\x00", header: []string{"Content-Type", "application/octet-stream"}, status: 200},
		{name: "empty body", target: "/v1/topics/demo/empty", status: 200},
		{name: "refused 0x87", target: "/v1/topics/demo/refused", body: "x", status: 403, code: "forbidden"},
		{name: "refused 0x97", target: "/v1/topics/demo/quota", body: "x", status: 429, code: "rate_limited"},
		{name: "refused 0x95", target: "/v1/topics/demo/huge", body: "x", status: 413, code: "payload_too_large"},
		{name: "refused 0x90", target: "/v1/topics/demo/rejected", body: "x", status: 502, code: "broker_rejected"},
		{name: "broker down", target: "/v1/topics/demo/down", body: "x", status: 503, code: "broker_unavailable"},
		{name: "broker timeout", target: "/v1/topics/demo/slow", body: "x", status: 504, code: "timeout"},
		{name: "not bridged", target: "/v1/topics/other/temp", body: "x", status: 404, code: "topic_not_bridged"},
		{name: "too large", target: "/v1/topics/demo/temp", body: strings.Repeat("x", maxPayload+1), status: 413, code: "payload_too_large"},
		{name: "unknown query parameter", target: "/v1/topics/demo/temp?qso=1", body: "x", status: 400, code: "invalid_request"},
		{name: "bad correlation data", target: "/v1/topics/demo/temp", body: "x", header: []string{"MQTT-Correlation-Data", "%%"}, status: 400, code: "invalid_request"},
		{name: "bad qos", invalid: true, target: "/v1/topics/demo/temp?qos=3", body: "x", status: 400, code: "invalid_request"},
		{name: "wildcard", invalid: true, target: "/v1/topics/demo/+/temp", body: "x", status: 400, code: "invalid_topic"},
		{name: "bad payload format", invalid: true, target: "/v1/topics/demo/temp", body: "x", header: []string{"MQTT-Payload-Format", "2"}, status: 400, code: "invalid_request"},
		{name: "user property without =", invalid: true, target: "/v1/topics/demo/temp", body: "x", header: []string{"MQTT-User-Property", "a"}, status: 400, code: "invalid_request"},

		{name: "JSON", target: "/v1/publish", body: `{"topic":"demo/temp","payload":"21.5","retain":true,"properties":{"user_properties":[{"key":"k","value":"v"}]}}`, status: 200},
		{name: "JSON payload, QoS 0", target: "/v1/publish", body: `{"topic":"demo/cmd","payload_json":{"on":true},"qos":0}`, status: 202},
		{name: "JSON base64", target: "/v1/publish", body: `{"topic":"demo/bin","payload_base64":"/wA=","properties":{"correlation_data_base64":"/w=="}}`, status: 200},
		{name: "JSON refused", target: "/v1/publish", body: `{"topic":"demo/refused","payload":"x"}`, status: 403, code: "forbidden"},
		{name: "JSON broker down", target: "/v1/publish", body: `{"topic":"demo/down","payload":"x"}`, status: 503, code: "broker_unavailable"},
		{name: "JSON not bridged", target: "/v1/publish", body: `{"topic":"other/x","payload":"x"}`, status: 404, code: "topic_not_bridged"},
		{name: "JSON payload too large", target: "/v1/publish", body: `{"topic":"demo/x","payload":"` + strings.Repeat("x", maxPayload+1) + `"}`, status: 413, code: "payload_too_large"},
		{name: "JSON two payloads", invalid: true, target: "/v1/publish", body: `{"topic":"demo/x","payload":"x","payload_json":1}`, status: 400, code: "invalid_request"},
		{name: "JSON unknown field", invalid: true, target: "/v1/publish", body: `{"topic":"demo/x","payload":"x","qso":1}`, status: 400, code: "invalid_request"},
		{name: "JSON wildcard", invalid: true, target: "/v1/publish", body: `{"topic":"demo/#","payload":"x"}`, status: 400, code: "invalid_topic"},

		{name: "delete", method: http.MethodDelete, target: "/v1/topics/demo/gone", status: 200},
		{name: "delete, broker down", method: http.MethodDelete, target: "/v1/topics/demo/down", status: 503, code: "broker_unavailable"},
		{name: "delete, not bridged", method: http.MethodDelete, target: "/v1/topics/other/x", status: 404, code: "topic_not_bridged"},
		{name: "delete, unknown query parameter", method: http.MethodDelete, target: "/v1/topics/demo/x?retain=true", status: 400, code: "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			var body []byte
			if method == http.MethodPost {
				body = []byte(c.body)
			}
			header := c.header
			if strings.HasPrefix(c.target, "/v1/publish") {
				header = append(header, "Content-Type", "application/json")
			}
			req := e.req(t, method, c.target, body, header...)
			do := e.v.Do
			if c.invalid {
				do = e.v.DoInvalid
			}
			resp, got := do(t, e.srv.Client(), req)
			wantStatus(t, resp, got, c.status, c.code)
			if c.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
		})
	}
}

func TestSpecMatchesBatch(t *testing.T) {
	e := newEnv(t, true)
	cases := []struct {
		name    string
		invalid bool
		body    string
		status  int
		items   []int // the status of each result
	}{
		{name: "sent", body: `[{"topic":"demo/a","payload":"1"},{"topic":"demo/b","payload":"2","qos":0},{"topic":"demo/down","payload":"3"}]`,
			status: 200, items: []int{200, 202, 503}},
		{name: "an item refused", invalid: true, body: `[{"topic":"demo/a","payload":"1"},{"topic":"other/b","payload":"2"},{"topic":"demo/c","payload":"3","payload_base64":"AA=="}]`,
			status: 400, items: []int{404, 400}},
		{name: "too many", body: `[{"topic":"demo/a","payload":"1"},{"topic":"demo/a","payload":"1"},{"topic":"demo/a","payload":"1"},{"topic":"demo/a","payload":"1"}]`,
			status: 400},
		{name: "empty", invalid: true, body: `[]`, status: 400},
		{name: "not an array", invalid: true, body: `{"topic":"demo/a","payload":"1"}`, status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := e.req(t, http.MethodPost, "/v1/publish/batch", []byte(c.body), "Content-Type", "application/json")
			do := e.v.Do
			if c.invalid {
				do = e.v.DoInvalid
			}
			resp, body := do(t, e.srv.Client(), req)
			wantStatus(t, resp, body, c.status, "")
			var got struct{ Results []struct{ Status int } }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			var statuses []int
			for _, r := range got.Results {
				statuses = append(statuses, r.Status)
			}
			if !slices.Equal(statuses, c.items) {
				t.Errorf("item statuses %v, want %v", statuses, c.items)
			}
		})
	}
}

func TestSpecMatchesRead(t *testing.T) {
	e := newEnv(t, true)
	expiry, format := uint32(3600), byte(1)
	temp := e.ingest(t, bridge.Message{Topic: "demo/temp", Payload: []byte("21.5"), QoS: 1, Retain: true, Properties: bridge.Properties{
		ContentType: "text/plain", PayloadFormat: &format, MessageExpiry: &expiry, ResponseTopic: "demo/reply",
		CorrelationData: []byte("req-1"), UserProperties: []bridge.UserProperty{{Key: "a", Value: "1,2"}, {Key: "a", Value: "3"}},
	}})
	e.ingest(t, bridge.Message{Topic: "demo/bin", Payload: []byte{0xff, 0, 1}, Properties: bridge.Properties{CorrelationData: []byte{0xff}}})
	e.ingest(t, bridge.Message{Topic: "demo/json", Payload: []byte(`{"on":true}`), QoS: 1, Properties: bridge.Properties{ContentType: "application/json"}})
	e.ingest(t, bridge.Message{Topic: "demo/plain", Payload: []byte("plain")})
	etag := `"` + temp.ID + `"`

	t.Run("raw", func(t *testing.T) {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/v1/topics/demo/temp", nil))
		wantStatus(t, resp, body, 200, "")
		if string(body) != "21.5" || resp.Header.Get("ETag") != etag || resp.Header.Get("MQTT-Message-Id") != temp.ID {
			t.Errorf("body %q, ETag %q, MQTT-Message-Id %q; want 21.5, %s, %s", body, resp.Header.Get("ETag"), resp.Header.Get("MQTT-Message-Id"), etag, temp.ID)
		}
		if got := resp.Header.Values("MQTT-User-Property"); !slices.Equal(got, []string{"a=1%2C2", "a=3"}) {
			t.Errorf("MQTT-User-Property %q", got)
		}
	})
	for _, c := range []struct{ name, target, accept, wantType string }{
		{"raw binary", "/v1/topics/demo/bin", "", "application/octet-stream"},
		{"raw JSON payload", "/v1/topics/demo/json", "", "application/json"},
		{"raw without content type", "/v1/topics/demo/plain", "*/*", "text/plain; charset=utf-8"},
		{"escaped slash", "/v1/topics/demo%2Ftemp", "", "text/plain"},
		{"envelope", "/v1/topics/demo/temp", "text/html, application/json;q=0.9", "application/json; charset=utf-8"},
		{"envelope, binary", "/v1/topics/demo/bin", "application/json", "application/json; charset=utf-8"},
		{"envelope, JSON payload", "/v1/topics/demo/json", "application/json", "application/json; charset=utf-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var header []string
			if c.accept != "" {
				header = []string{"Accept", c.accept}
			}
			resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, c.target, nil, header...))
			wantStatus(t, resp, body, 200, "")
			if got := resp.Header.Get("Content-Type"); got != c.wantType {
				t.Errorf("Content-Type %q, want %q", got, c.wantType)
			}
		})
	}
	t.Run("envelope fields", func(t *testing.T) {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/v1/topics/demo/bin", nil, "Accept", "application/json"))
		wantStatus(t, resp, body, 200, "")
		var env wire.Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		if env.PayloadBase64 == nil || *env.PayloadBase64 != base64.StdEncoding.EncodeToString([]byte{0xff, 0, 1}) || env.Payload != nil {
			t.Errorf("envelope %s: want payload_base64 of ff 00 01 and no payload", body)
		}
	})
	t.Run("not modified", func(t *testing.T) {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/v1/topics/demo/temp", nil, "If-None-Match", `"0-0", W/`+etag))
		wantStatus(t, resp, body, http.StatusNotModified, "")
		if len(body) != 0 || resp.Header.Get("ETag") != etag {
			t.Errorf("body %q, ETag %q", body, resp.Header.Get("ETag"))
		}
	})
	for _, c := range []struct {
		name, target string
		invalid      bool
		status       int
		code         string
	}{
		{"no value", "/v1/topics/demo/none", false, 404, "not_found"},
		{"not bridged", "/v1/topics/other/x", false, 404, "topic_not_bridged"},
		{"unknown query parameter", "/v1/topics/demo/temp?since=30", false, 400, "invalid_request"},
		{"wait too long", "/v1/topics/demo/temp?wait=61", false, 400, "invalid_request"},
		{"wildcard", "/v1/topics/demo/%23", true, 400, "invalid_topic"},
		{"list", "/v1/messages?filter=demo/%2B", false, 200, ""},
		{"list, bad filter", "/v1/messages?filter=demo/%23/x", false, 400, "invalid_topic"},
		{"list, unknown parameter", "/v1/messages?filter=%23&max=1", false, 400, "invalid_request"},
		{"list, bad cursor", "/v1/messages?filter=%23&cursor=!", true, 400, "invalid_cursor"},
		{"list, a topic name as cursor", "/v1/messages?filter=%23&cursor=ZGVtby90ZW1w", false, 400, "invalid_cursor"},
		{"list, no filter", "/v1/messages", true, 400, "invalid_request"},
		{"list, limit 0", "/v1/messages?filter=%23&limit=0", true, 400, "invalid_request"},
		{"healthz", "/healthz", false, 200, ""},
		{"readyz", "/readyz", false, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			do := e.v.Do
			if c.invalid {
				do = e.v.DoInvalid
			}
			resp, body := do(t, e.srv.Client(), e.req(t, http.MethodGet, c.target, nil))
			wantStatus(t, resp, body, c.status, c.code)
		})
	}
	t.Run("pages", func(t *testing.T) {
		var topics []string
		target := "/v1/messages?filter=demo/%23&limit=3"
		for range 3 {
			resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, target, nil))
			wantStatus(t, resp, body, 200, "")
			var page httpapi.MessageList
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				topics = append(topics, m.Topic)
			}
			if page.NextCursor == "" {
				break
			}
			target = "/v1/messages?filter=demo/%23&limit=3&cursor=" + page.NextCursor
		}
		if want := []string{"demo/bin", "demo/json", "demo/plain", "demo/temp"}; !slices.Equal(topics, want) {
			t.Errorf("topics %q, want %q", topics, want)
		}
	})
	t.Run("delete", func(t *testing.T) {
		resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodDelete, "/v1/topics/demo/plain", nil))
		wantStatus(t, resp, body, 200, "")
		resp, body = e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/v1/topics/demo/plain", nil))
		wantStatus(t, resp, body, 404, "not_found")
	})
}

// TestSpecMatchesUnavailable checks the answers of a bridge without
// brokers and with a store that no longer answers.
func TestSpecMatchesUnavailable(t *testing.T) {
	e := newEnv(t, false)
	resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodGet, "/readyz", nil))
	wantStatus(t, resp, body, http.StatusServiceUnavailable, "")
	if !strings.Contains(string(body), "no broker configured") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("readyz: %s, Retry-After %q", body, resp.Header.Get("Retry-After"))
	}

	e = newEnv(t, true)
	e.ingest(t, bridge.Message{Topic: "demo/temp", Payload: []byte("1")})
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, target string }{
		{http.MethodGet, "/v1/topics/demo/temp"},
		{http.MethodGet, "/v1/messages?filter=%23"},
		{http.MethodDelete, "/v1/topics/demo/temp"},
		{http.MethodGet, "/readyz"},
	} {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			code := "store_unavailable"
			if c.target == "/readyz" {
				code = ""
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			resp, body := e.v.Do(t, e.srv.Client(), e.req(t, c.method, c.target, nil).WithContext(ctx))
			wantStatus(t, resp, body, http.StatusServiceUnavailable, code)
			if resp.Header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
		})
	}
}

// TestUndeclaredRoutes checks what the description of openapi.yaml promises
// for requests that no operation declares: 404 not_found for an unknown
// path, 405 method_not_allowed for an unknown method, in the error shape.
func TestUndeclaredRoutes(t *testing.T) {
	e := newEnv(t, true)
	for _, c := range []struct {
		method, target string
		status         int
		code           string
	}{
		{http.MethodGet, "/v2/topics/demo/temp", http.StatusNotFound, "not_found"},
		{http.MethodPut, "/v1/topics/demo/temp", http.StatusMethodNotAllowed, "method_not_allowed"},
		{http.MethodGet, "/v1/publish", http.StatusMethodNotAllowed, "method_not_allowed"},
	} {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			resp, err := e.srv.Client().Do(e.req(t, c.method, c.target, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, resp, body, c.status, c.code)
		})
	}
}
