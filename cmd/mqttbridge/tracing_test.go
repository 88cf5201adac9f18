package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
	"github.com/mqttbridge/mqttbridge/internal/tracing/otlptest"
)

// lineLog keeps the lines a JSON logger writes.
type lineLog struct{ testenv.SyncBuffer }

// find returns the first logged record with msg whose attributes include
// every one of want.
func (l *lineLog) find(msg string, want map[string]string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && fmt.Sprint(rec[k]) == v
		}
		if ok {
			return rec
		}
	}
	return nil
}

// startTraced runs Main on the shared Mosquitto, bridging prefix/#, with
// tracing to rcv (nil: tracing off), logging at info into the returned log.
func startTraced(tb testing.TB, rcv *otlptest.Receiver, prefix string, batch time.Duration) (*instance, *lineLog) {
	tb.Helper()
	cfg, err := config.Load([]string{"--http-addr", "127.0.0.1:0", "--mqtt-url", testenv.MosquittoURL(tb), "--topics", prefix + "/#"},
		func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Request.ReplyPrefix = prefix + "/reply/"
	if rcv != nil {
		cfg.Tracing.OTLPEndpoint = rcv.URL
		cfg.Tracing.BatchTimeout = config.Duration(batch)
	}
	logs := &lineLog{}
	in := runInstance(tb, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	in.waitReady(tb)
	return in, logs
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// traceparentOf returns the only traceparent user property of m, split
// into trace id, span id and flags.
func traceparentOf(tb testing.TB, m bridge.Message) (traceID, spanID, flags string) {
	tb.Helper()
	var values []string
	for _, p := range m.Properties.UserProperties {
		if p.Key == bridge.TraceParentProperty {
			values = append(values, p.Value)
		}
	}
	parts := []string{}
	if len(values) == 1 {
		parts = strings.Split(values[0], "-")
	}
	if len(parts) != 4 || parts[0] != "00" {
		tb.Fatalf("message %s: traceparent %q, want one", testenv.String(m), values)
	}
	return parts[1], parts[2], parts[3]
}

// With tracing on, against the real Mosquitto: a publish over HTTP
// continues the caller's trace into the MQTT message (user property
// traceparent, same trace, the publish span's id), the receiver gets the
// server span, the producer span and the consumer span of the bridge's own
// ingest of that message, and the request log names the trace.
func TestTracingPublish(t *testing.T) {
	prefix := testenv.Prefix(t)
	rcv := otlptest.Start(t)
	in, logs := startTraced(t, rcv, prefix, 50*time.Millisecond)
	sub := testenv.Subscribe(t, testenv.MosquittoURL(t), prefix+"/#")

	tid, caller := randomHex(t, 16), randomHex(t, 8)
	resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/lamp?qos=1", []byte("on"),
		"traceparent", "00-"+tid+"-"+caller+"-01", "X-Request-Id", "req-"+tid)
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	msg := testenv.NextMessage(t, sub, 10*time.Second)
	gotTrace, pubSpan, flags := traceparentOf(t, msg)
	if gotTrace != tid || pubSpan == caller || flags != "01" {
		t.Fatalf("the device got trace %s span %s flags %s; want trace %s, a span of the bridge, sampled", gotTrace, pubSpan, flags, tid)
	}

	server := rcv.Wait(t, "server span", func(s otlptest.Span) bool { return s.Kind == "server" && s.TraceID == tid })
	if server.Name != "POST /v1/topics/*topic" || server.ParentSpanID != caller || server.Attributes["http.route"] != "/v1/topics/*topic" ||
		server.Attributes["http.response.status_code"] != "200" || server.Attributes["mqttbridge.request_id"] != "req-"+tid {
		t.Errorf("server span %v", server)
	}
	if r := server.Resource; r["service.name"] != "mqttbridge" || r["service.instance.id"] != in.Config.InstanceID {
		t.Errorf("resource %v", r)
	}
	pub := rcv.Wait(t, "publish span", func(s otlptest.Span) bool { return s.Kind == "producer" && s.TraceID == tid })
	if pub.SpanID != pubSpan || pub.ParentSpanID != server.SpanID || pub.Name != "publish" ||
		pub.Attributes["messaging.system"] != "mqtt" || pub.Attributes["messaging.destination.name"] != prefix+"/lamp" ||
		pub.Attributes["mqtt.qos"] != "1" || pub.Attributes["mqtt.reason_code"] == "" {
		t.Errorf("publish span %v; the device got span %s", pub, pubSpan)
	}
	// The bridge ingests its own message back from the broker.
	ingest := rcv.Wait(t, "ingest span", func(s otlptest.Span) bool { return s.Kind == "consumer" && s.TraceID == tid })
	resp, body = in.do(t, "GET", "/v1/topics/"+prefix+"/lamp", nil, "Accept", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("read back: %d %s", resp.StatusCode, body)
	}
	if id := decode[map[string]any](t, body)["id"]; ingest.ParentSpanID != pubSpan || ingest.Attributes["messaging.message.id"] != id {
		t.Errorf("ingest span %v; stored id %v", ingest, id)
	}

	if logs.find("http request", map[string]string{"trace_id": tid, "request_id": "req-" + tid, "route": "/v1/topics/*topic"}) == nil {
		t.Errorf("no request log line with trace_id %s", tid)
	}

	// A traceparent the caller set as a user property is sent as it is,
	// once.
	theirs := "00-" + randomHex(t, 16) + "-" + randomHex(t, 8) + "-01"
	resp, body = in.do(t, "POST", "/v1/topics/"+prefix+"/lamp", []byte("off"), "MQTT-User-Property", "traceparent="+theirs)
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	msg = testenv.NextMessage(t, sub, 10*time.Second)
	if ups := msg.Properties.UserProperties; len(ups) != 1 || ups[0].Value != theirs {
		t.Errorf("user properties %v, want only traceparent %s", ups, theirs)
	}

	// A publish frame on the WebSocket starts a trace of its own: not one
	// under the connection's span.
	ws, _ := in.wsConnect(t, "")
	if ok := ws.request(fmt.Sprintf(`{"type":"publish","id":"p1","topic":%q,"payload":"ws","qos":1}`, prefix+"/ws"), "p1"); ok["type"] != "ok" {
		t.Fatalf("ws publish: %v", ok)
	}
	msg = testenv.NextMessage(t, sub, 10*time.Second)
	wsTrace, wsSpan, _ := traceparentOf(t, msg)
	wsPub := rcv.Wait(t, "ws publish span", func(s otlptest.Span) bool { return s.Kind == "producer" && s.SpanID == wsSpan })
	if wsPub.TraceID != wsTrace || wsPub.ParentSpanID != "" {
		t.Errorf("ws publish span %v, want a root span", wsPub)
	}
}

// A request over HTTP carries the trace to the device, and the device's
// reply with a traceparent of its own is linked from the request span; a
// device message with a traceparent continues the device's trace into a
// consumer span of the ingest.
func TestTracingRequestAndIngest(t *testing.T) {
	prefix := testenv.Prefix(t)
	rcv := otlptest.Start(t)
	in, _ := startTraced(t, rcv, prefix, 50*time.Millisecond)
	mq := testenv.MosquittoURL(t)

	deviceSpan := randomHex(t, 8)
	got := make(chan bridge.Message, 1)
	testenv.StartDevice(t, mq, prefix+"/dev/+/cmd", func(req bridge.Message) (bridge.Message, bool) {
		got <- req
		var tid string
		for _, p := range req.Properties.UserProperties {
			if p.Key == "traceparent" {
				tid = strings.Split(p.Value, "-")[1]
			}
		}
		return bridge.Message{Payload: []byte("done"), Properties: bridge.Properties{
			UserProperties: []bridge.UserProperty{{Key: "traceparent", Value: "00-" + tid + "-" + deviceSpan + "-01"}}}}, true
	})

	tid, caller := randomHex(t, 16), randomHex(t, 8)
	resp, body := in.do(t, "POST", "/v1/request/"+prefix+"/dev/1/cmd?timeout=5", []byte("go"), "traceparent", "00-"+tid+"-"+caller+"-01")
	if resp.StatusCode != 200 || string(body) != "done" {
		t.Fatalf("request: %d %s", resp.StatusCode, body)
	}
	reqTrace, reqSpan, _ := traceparentOf(t, <-got)
	if reqTrace != tid {
		t.Fatalf("the device got trace %s, want %s", reqTrace, tid)
	}
	server := rcv.Wait(t, "server span", func(s otlptest.Span) bool { return s.Kind == "server" && s.TraceID == tid })
	request := rcv.Wait(t, "request span", func(s otlptest.Span) bool { return s.Kind == "client" && s.TraceID == tid })
	pub := rcv.Wait(t, "publish span", func(s otlptest.Span) bool { return s.Kind == "producer" && s.TraceID == tid })
	if server.Name != "POST /v1/request/*topic" || request.ParentSpanID != server.SpanID || pub.ParentSpanID != request.SpanID || pub.SpanID != reqSpan {
		t.Errorf("server %v\nrequest %v\npublish %v\nthe device got span %s", server, request, pub, reqSpan)
	}
	if !strings.HasPrefix(request.Attributes["mqtt.response_topic"], prefix+"/reply/") {
		t.Errorf("request span %v", request)
	}
	if l := request.Links; len(l) != 1 || l[0].TraceID != tid || l[0].SpanID != deviceSpan {
		t.Errorf("request span links %+v, want the device's span %s", l, deviceSpan)
	}
	if e := request.Events; len(e) != 1 || e[0].Name != "reply" || e[0].Attributes["mqtt.reply.span_id"] != deviceSpan {
		t.Errorf("request span events %+v", e)
	}

	// A device's own message, with its trace context.
	devTrace, devSpan := randomHex(t, 16), randomHex(t, 8)
	testenv.Publish(t, mq, bridge.Message{Topic: prefix + "/sensor/1", Payload: []byte("21.5"), QoS: 1,
		Properties: bridge.Properties{UserProperties: []bridge.UserProperty{{Key: "traceparent", Value: "00-" + devTrace + "-" + devSpan + "-01"}}}})
	ingest := rcv.Wait(t, "ingest span", func(s otlptest.Span) bool { return s.TraceID == devTrace })
	if ingest.Kind != "consumer" || ingest.Name != "ingest" || ingest.ParentSpanID != devSpan ||
		ingest.Attributes["messaging.destination.name"] != prefix+"/sensor/1" || ingest.Attributes["messaging.message.id"] == "" {
		t.Errorf("ingest span %v", ingest)
	}
}

// Spans still waiting to be exported go out when the service closes.
func TestTracingFlushedOnClose(t *testing.T) {
	prefix := testenv.Prefix(t)
	rcv := otlptest.Start(t)
	in, _ := startTraced(t, rcv, prefix, time.Hour)
	tid := randomHex(t, 16)
	if resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/x", []byte("1"), "traceparent", "00-"+tid+"-"+randomHex(t, 8)+"-01"); resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("%d spans exported before the batch timeout", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, s := range rcv.Spans() {
		if s.TraceID == tid {
			kinds[s.Kind] = true
		}
	}
	if !kinds["server"] || !kinds["producer"] {
		t.Fatalf("after Close the receiver has %v of trace %s, want the server and the publish span", kinds, tid)
	}
}

// With tracing off (the default) a traceparent header adds nothing to the
// message, and the request log has no trace id.
func TestTracingOff(t *testing.T) {
	prefix := testenv.Prefix(t)
	in, logs := startTraced(t, nil, prefix, 0)
	sub := testenv.Subscribe(t, testenv.MosquittoURL(t), prefix+"/#")
	tid := randomHex(t, 16)
	resp, body := in.do(t, "POST", "/v1/topics/"+prefix+"/lamp", []byte("on"), "traceparent", "00-"+tid+"-"+randomHex(t, 8)+"-01",
		"X-Request-Id", "req-"+tid)
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if msg := testenv.NextMessage(t, sub, 10*time.Second); len(msg.Properties.UserProperties) != 0 {
		t.Fatalf("user properties %v, want none", msg.Properties.UserProperties)
	}
	rec := logs.find("http request", map[string]string{"request_id": "req-" + tid})
	if rec == nil {
		t.Fatal("no request log line")
	}
	if _, has := rec["trace_id"]; has {
		t.Errorf("the request log has a trace id with tracing off: %v", rec)
	}
}
