package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// tracedBridge is a bridge with a route "#" to up whose spans go to the
// returned recorder.
func tracedBridge(t *testing.T, up bridge.Upstream, tp trace.TracerProvider) (*bridge.Bridge, *memory.Store) {
	t.Helper()
	return testenv.NewBridge(t, bridge.Config{TracerProvider: tp}, bridge.Route{Filters: []string{"#"}, Upstream: up})
}

func newRecorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

// property returns every value of the user property key.
func property(m bridge.Message, key string) []string {
	var out []string
	for _, p := range m.Properties.UserProperties {
		if p.Key == key {
			out = append(out, p.Value)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// spanNamed returns the only ended span called name.
func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended spans %q, want 1 (of %d)", len(found), name, len(rec.Ended()))
	}
	return found[0]
}

// A publish is a producer span under the caller's span, and the broker
// gets its trace context as the user property traceparent after the
// caller's own properties, which stay as they were.
func TestPublishCarriesTraceContext(t *testing.T) {
	rec, tp := newRecorder()
	up := &recorder{}
	b, _ := tracedBridge(t, up, tp)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "http")
	props := make([]bridge.UserProperty, 1, 8) // room to append into
	props[0] = bridge.UserProperty{Key: "by", Value: "test"}
	if _, err := b.Publish(ctx, bridge.Identity{}, bridge.Message{Topic: "plant/1/set", Payload: []byte("22"), QoS: 1, Retain: true,
		Properties: bridge.Properties{UserProperties: props}}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	pub := spanNamed(t, rec, "publish")
	sent := up.sent[0]
	want := "00-" + parent.SpanContext().TraceID().String() + "-" + pub.SpanContext().SpanID().String() + "-01"
	if got := property(sent, bridge.TraceParentProperty); len(got) != 1 || got[0] != want {
		t.Fatalf("traceparent %q, want [%s]", got, want)
	}
	if sent.Properties.UserProperties[0] != props[0] || len(props) != 1 || props[:2][1] != (bridge.UserProperty{}) {
		t.Errorf("the caller's properties changed: %v", props[:2])
	}
	if pub.SpanKind() != trace.SpanKindProducer || pub.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("publish span kind %v parent %v", pub.SpanKind(), pub.Parent().SpanID())
	}
	for k, v := range map[string]string{"messaging.system": "mqtt", "messaging.destination.name": "plant/1/set",
		"messaging.operation.name": "publish", "messaging.operation.type": "send", "mqtt.broker": "recorder"} {
		if got := attr(pub, k).AsString(); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if attr(pub, "mqtt.qos").AsInt64() != 1 || !attr(pub, "mqtt.retain").AsBool() || attr(pub, "messaging.message.body.size").AsInt64() != 2 ||
		attr(pub, "mqtt.reason_code").Type() != attribute.INT64 {
		t.Errorf("attributes %v", pub.Attributes())
	}
}

// A traceparent the caller set is sent unchanged, and with no span in the
// context the publish span continues it.
func TestPublishKeepsTheCallersTraceParent(t *testing.T) {
	rec, tp := newRecorder()
	up := &recorder{}
	b, _ := tracedBridge(t, up, tp)
	const theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	msg := bridge.Message{Topic: "a", Properties: bridge.Properties{UserProperties: []bridge.UserProperty{{Key: "Traceparent", Value: theirs}}}}
	if _, err := b.Publish(context.Background(), bridge.Identity{}, msg); err != nil {
		t.Fatal(err)
	}
	sent := up.sent[0].Properties.UserProperties
	if len(sent) != 1 || sent[0].Value != theirs {
		t.Fatalf("user properties %v, want only the caller's traceparent", sent)
	}
	pub := spanNamed(t, rec, "publish")
	if pub.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || pub.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("publish span %v under %v", pub.SpanContext(), pub.Parent())
	}
}

// Without a TracerProvider nothing is added, even under a span made
// elsewhere.
func TestNoTracingAddsNothing(t *testing.T) {
	_, tp := newRecorder()
	up := &recorder{}
	b, _ := tracedBridge(t, up, nil)
	ctx, span := tp.Tracer("elsewhere").Start(context.Background(), "http")
	defer span.End()
	if _, err := b.Publish(ctx, bridge.Identity{}, bridge.Message{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if p := up.sent[0].Properties.UserProperties; len(p) != 0 {
		t.Fatalf("user properties %v, want none", p)
	}
}

// A failed publish marks its span failed with the error code.
func TestPublishSpanRecordsFailure(t *testing.T) {
	rec, tp := newRecorder()
	b, _ := tracedBridge(t, failing{}, tp)
	if _, err := b.Publish(context.Background(), bridge.Identity{}, bridge.Message{Topic: "a"}); err == nil {
		t.Fatal("no error")
	}
	pub := spanNamed(t, rec, "publish")
	if pub.Status().Code != codes.Error || attr(pub, "error.type").AsString() != bridge.ECodeBrokerUnavailable {
		t.Errorf("status %v, error.type %v", pub.Status(), attr(pub, "error.type"))
	}
}

type failing struct{}

func (failing) Name() string       { return "failing" }
func (failing) Problems() []string { return nil }
func (failing) Publish(context.Context, bridge.Message) (bridge.PublishResult, error) {
	return bridge.PublishResult{}, bridge.ErrUnavailable
}

// A request is a client span; its publish, a child, carries the trace
// context to the device, and the device's traceparent in the reply becomes
// a link and an event of the request span.
func TestRequestLinksTheReply(t *testing.T) {
	rec, tp := newRecorder()
	b, _ := testenv.NewBridge(t, bridge.Config{TracerProvider: tp})
	const deviceSpan = "1111222233334444"
	d := &device{b: b, ready: true, answer: func(b *bridge.Bridge, req bridge.Message) {
		tid := strings.Split(property(req, bridge.TraceParentProperty)[0], "-")[1]
		b.HandleReply(bridge.Message{Topic: req.Properties.ResponseTopic, Payload: []byte("ok"), Properties: bridge.Properties{
			CorrelationData: req.Properties.CorrelationData,
			UserProperties:  []bridge.UserProperty{{Key: "traceparent", Value: "00-" + tid + "-" + deviceSpan + "-01"}}}})
	}}
	if err := b.AddRoute(bridge.Route{Filters: []string{"dev/#"}, Upstream: d}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Request(context.Background(), bridge.Identity{}, bridge.Message{Topic: "dev/1/cmd", QoS: 1}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	req, pub := spanNamed(t, rec, "request"), spanNamed(t, rec, "publish")
	tid := req.SpanContext().TraceID()
	if req.SpanKind() != trace.SpanKindClient || pub.Parent().SpanID() != req.SpanContext().SpanID() || pub.SpanContext().TraceID() != tid {
		t.Fatalf("request %v, publish %v under %v", req.SpanContext(), pub.SpanContext(), pub.Parent())
	}
	if got := property(d.sent[0], bridge.TraceParentProperty); len(got) != 1 || !strings.Contains(got[0], pub.SpanContext().SpanID().String()) {
		t.Errorf("the device got traceparent %q", got)
	}
	if l := req.Links(); len(l) != 1 || l[0].SpanContext.TraceID() != tid || l[0].SpanContext.SpanID().String() != deviceSpan {
		t.Errorf("links %v", l)
	}
	if e := req.Events(); len(e) != 1 || e[0].Name != "reply" {
		t.Errorf("events %v", e)
	}
	if attr(req, "mqtt.response_topic").AsString() != d.sent[0].Properties.ResponseTopic || attr(req, "messaging.message.conversation_id").AsString() == "" {
		t.Errorf("attributes %v", req.Attributes())
	}
}

// An ingested message with a traceparent continues the device's trace in
// a consumer span that names the stored message; one without gets none.
func TestIngestContinuesTheDevicesTrace(t *testing.T) {
	rec, tp := newRecorder()
	b, store := tracedBridge(t, &recorder{}, tp)
	b.Ingest(bridge.Message{Topic: "plain", Payload: []byte("1")})
	b.Ingest(bridge.Message{Topic: "traced", Payload: []byte("2"), Properties: bridge.Properties{
		UserProperties: []bridge.UserProperty{{Key: "traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}})
	ing := spanNamed(t, rec, "ingest")
	stored, err := store.Get(t.Context(), "traced")
	if err != nil {
		t.Fatal(err)
	}
	if ing.SpanKind() != trace.SpanKindConsumer || ing.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" ||
		ing.Parent().SpanID().String() != "b7ad6b7169203331" || !ing.Parent().IsRemote() {
		t.Errorf("ingest span %v under %v", ing.SpanContext(), ing.Parent())
	}
	if attr(ing, "messaging.message.id").AsString() != stored.ID || attr(ing, "messaging.destination.name").AsString() != "traced" {
		t.Errorf("attributes %v (stored id %s)", ing.Attributes(), stored.ID)
	}
}
