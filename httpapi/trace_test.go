package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/apitest"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// sentLog is fakeUpstream that also keeps what it was sent.
type sentLog struct {
	fakeUpstream
	mu   sync.Mutex
	msgs []bridge.Message
}

func (s *sentLog) Publish(ctx context.Context, msg bridge.Message) (bridge.PublishResult, error) {
	s.mu.Lock()
	s.msgs = append(s.msgs, msg)
	s.mu.Unlock()
	return s.fakeUpstream.Publish(ctx, msg)
}

func (s *sentLog) last() bridge.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs[len(s.msgs)-1]
}

type tracedEnv struct {
	*env
	rec  *tracetest.SpanRecorder
	up   *sentLog
	logs *testenv.SyncBuffer
	ws   chan trace.SpanContext // what the WebSocket handler found in its context
}

// newTracedEnv serves the real handlers with a tracer provider recording
// into rec, or with tracing off.
func newTracedEnv(t *testing.T, tracing bool) *tracedEnv {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	var tp trace.TracerProvider
	if tracing {
		tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	}
	up := &sentLog{}
	b, store := testenv.NewBridge(t, bridge.Config{TracerProvider: tp}, bridge.Route{Filters: []string{"demo/#"}, Upstream: up})
	e := &tracedEnv{rec: rec, up: up, logs: &testenv.SyncBuffer{}, ws: make(chan trace.SpanContext, 1)}
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.ws <- trace.SpanContextFromContext(r.Context())
		w.WriteHeader(http.StatusBadRequest)
	})
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Bridge: b, Spec: mqttbridge.OpenAPI, TracerProvider: tp, WebSocket: ws,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))}))
	t.Cleanup(srv.Close)
	e.env = &env{v: apitest.New(t, mqttbridge.OpenAPI), srv: srv, b: b, store: store}
	return e
}

func (e *tracedEnv) server(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range e.rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer && s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d server spans %q, want 1", len(found), name)
	}
	return found[0]
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

const (
	callerTrace = "0af7651916cd43dd8448eb211c80319c"
	callerSpan  = "b7ad6b7169203331"
	traceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// A request is a server span named by its route template, continuing the
// caller's traceparent; the publish under it carries the same trace to the
// broker, and the request log line names the trace.
func TestServerSpan(t *testing.T) {
	e := newTracedEnv(t, true)
	resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodPost, "/v1/topics/demo/lamp", []byte("on"),
		"traceparent", traceparent, "tracestate", "congo=t61rcWkgMzE"))
	wantStatus(t, resp, body, http.StatusOK, "")
	srv := e.server(t, "POST /v1/topics/*topic")
	a := spanAttrs(srv)
	if srv.SpanContext().TraceID().String() != callerTrace || srv.Parent().SpanID().String() != callerSpan || !srv.Parent().IsRemote() ||
		srv.SpanContext().TraceState().Get("congo") != "t61rcWkgMzE" {
		t.Errorf("server span %v under %v", srv.SpanContext(), srv.Parent())
	}
	if a["http.request.method"].AsString() != "POST" || a["http.route"].AsString() != "/v1/topics/*topic" ||
		a["http.response.status_code"].AsInt64() != 200 || a["url.path"].AsString() != "/v1/topics/demo/lamp" ||
		a["mqttbridge.request_id"].AsString() != resp.Header.Get(httpapi.RequestIDHeader) || srv.Status().Code != codes.Unset {
		t.Errorf("server span attributes %v, status %v", srv.Attributes(), srv.Status())
	}
	var pub sdktrace.ReadOnlySpan
	for _, s := range e.rec.Ended() {
		if s.Name() == "publish" {
			pub = s
		}
	}
	if pub == nil || pub.Parent().SpanID() != srv.SpanContext().SpanID() {
		t.Fatalf("no publish span under the server span: %v", e.rec.Ended())
	}
	sent := e.up.last()
	want := []bridge.UserProperty{{Key: "traceparent", Value: "00-" + callerTrace + "-" + pub.SpanContext().SpanID().String() + "-01"},
		{Key: "tracestate", Value: "congo=t61rcWkgMzE"}}
	if got := sent.Properties.UserProperties; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("user properties %v, want %v", got, want)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "trace_id="+callerTrace) || !strings.Contains(logs, "request_id="+resp.Header.Get(httpapi.RequestIDHeader)) {
		t.Errorf("the request log does not name the trace and the request: %s", logs)
	}
}

// A 5xx fails the server span, a 4xx does not; probes and scrapes have no
// span; an unmatched route is named by its method alone.
func TestServerSpanStatus(t *testing.T) {
	e := newTracedEnv(t, true)
	resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodPost, "/v1/publish", []byte(`{"topic":"demo/down","payload":"x"}`), "Content-Type", "application/json"))
	wantStatus(t, resp, body, http.StatusServiceUnavailable, "broker_unavailable")
	resp, body = e.v.DoInvalid(t, e.srv.Client(), e.req(t, http.MethodPost, "/v1/topics/demo/lamp?qos=7", nil))
	wantStatus(t, resp, body, http.StatusBadRequest, "invalid_request")
	for _, path := range []string{"/healthz", "/readyz", "/nowhere"} {
		resp, err := e.srv.Client().Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if s := e.server(t, "POST /v1/publish"); s.Status().Code != codes.Error || spanAttrs(s)["error.type"].AsString() != "503" {
		t.Errorf("503: status %v, attributes %v", s.Status(), s.Attributes())
	}
	if s := e.server(t, "POST /v1/topics/*topic"); s.Status().Code != codes.Unset {
		t.Errorf("400: status %v", s.Status())
	}
	e.server(t, "GET")
	if n := len(e.rec.Ended()); n != 4 { // two servers, a publish, the unmatched GET
		t.Errorf("%d spans, want 4: %v", n, e.rec.Ended())
	}
}

// A WebSocket connection has a span, but what it does is not under it:
// the connection's context carries no span.
func TestWebSocketContextHasNoSpan(t *testing.T) {
	e := newTracedEnv(t, true)
	for _, upgrade := range []bool{true, false} {
		req := e.req(t, http.MethodGet, "/v1/ws", nil, "traceparent", traceparent)
		if upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if sc := <-e.ws; sc.IsValid() == upgrade {
			t.Errorf("upgrade %v: the handler's context has span %v", upgrade, sc)
		}
	}
	if n := len(e.rec.Ended()); n != 2 {
		t.Errorf("%d spans, want 2", n)
	}
}

// With tracing off a traceparent header changes nothing: no span, no
// user property, no trace id in the log.
func TestNoTracingIgnoresTraceparent(t *testing.T) {
	e := newTracedEnv(t, false)
	resp, body := e.v.Do(t, e.srv.Client(), e.req(t, http.MethodPost, "/v1/topics/demo/lamp", []byte("on"), "traceparent", traceparent))
	wantStatus(t, resp, body, http.StatusOK, "")
	if p := e.up.last().Properties.UserProperties; len(p) != 0 {
		t.Errorf("user properties %v, want none", p)
	}
	if logs := e.logs.String(); strings.Contains(logs, "trace_id") || !strings.Contains(logs, "request_id=") {
		t.Errorf("log %s", logs)
	}
}
