package frametest_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/frametest"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// recorder is a testing.TB that records failures instead of failing the
// test; Fatal and FailNow end the calling goroutine, as in a real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.record(fmt.Sprint(args...)) }
func (r *recorder) Fail()                             { r.record("Fail") }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)                 { r.Error(args...); runtime.Goexit() }
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors) > 0
}

func (r *recorder) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, s)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.errors
	r.errors = nil
	return e
}

// run calls f with a recorder in its own goroutine (so that Fatal can end
// it) and returns what was recorded.
func run(t *testing.T, f func(tb testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.take()
}

func validator(t *testing.T) *frametest.Validator {
	t.Helper()
	return frametest.New(t, mqttbridge.AsyncAPI)
}

func TestTypes(t *testing.T) {
	v := validator(t)
	if got, want := v.ServerTypes(), []string{"alarm", "error", "gap", "message", "ok", "pong", "welcome"}; !slices.Equal(got, want) {
		t.Errorf("server→client types %v, want %v", got, want)
	}
	if got, want := v.ClientTypes(), []string{"ack", "ping", "publish", "request", "subscribe", "unsubscribe"}; !slices.Equal(got, want) {
		t.Errorf("client→server types %v, want %v", got, want)
	}
}

// Every example in the document matches its own schema.
func TestDocumentExamples(t *testing.T) {
	v := validator(t)
	var doc struct {
		Components struct {
			Messages map[string]struct {
				Payload  map[string]string `yaml:"payload"`
				Examples []struct {
					Payload any `yaml:"payload"`
				} `yaml:"examples"`
			} `yaml:"messages"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(mqttbridge.AsyncAPI, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, m := range doc.Components.Messages {
		if len(m.Examples) == 0 {
			t.Errorf("message %s has no example", name)
		}
		for _, ex := range m.Examples {
			b, err := json.Marshal(ex.Payload)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if slices.Contains(v.ServerTypes(), name) {
				v.Server(t, b)
			} else {
				v.Client(t, b)
			}
			n++
		}
	}
	if n < 11 {
		t.Errorf("%d examples checked", n)
	}
}

// The JSON the server's building blocks produce (internal/wire) matches.
func TestWireOutput(t *testing.T) {
	v := validator(t)
	pf, expiry := byte(1), uint32(30)
	now := time.Now()
	msgs := []bridge.Message{
		{ID: "1764162000000-0", Topic: "a/b", Payload: []byte("21.5"), QoS: 1, Retain: true, ReceivedAt: now},
		{ID: "1764162000000-1", Topic: "a/b", Payload: []byte{0, 0xff}, ReceivedAt: now},
		{ID: "1764162000000-2", Topic: "a/b", Payload: nil, QoS: 2, ReceivedAt: now,
			Properties: bridge.Properties{ContentType: "text/plain", PayloadFormat: &pf, MessageExpiry: &expiry,
				ResponseTopic: "a/reply", CorrelationData: []byte{1, 0xfe},
				UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}},
		{ID: "1764162000000-3", Topic: "a/b", Payload: []byte("{}"), ReceivedAt: now,
			Properties: bridge.Properties{CorrelationData: []byte("req-1")}},
	}
	type messageFrame struct { // as wsproxy's
		Type string `json:"type"`
		wire.Envelope
		Snapshot bool `json:"snapshot,omitempty"`
		Ack      bool `json:"ack,omitempty"`
	}
	for i, m := range msgs {
		b, err := json.Marshal(messageFrame{Type: "message", Envelope: wire.NewEnvelope(&m, now), Snapshot: i%2 == 0, Ack: i%3 == 0})
		if err != nil {
			t.Fatal(err)
		}
		v.Server(t, b)
	}

	type okFrame struct {
		Type   string `json:"type"`
		Ref    string `json:"ref,omitempty"`
		Result any    `json:"result,omitempty"`
	}
	for _, qos := range []byte{0, 1, 2} {
		m := bridge.Message{Topic: "a/b", QoS: qos}
		b, _ := json.Marshal(okFrame{Type: "ok", Ref: "p", Result: wire.NewPublishResponse(&m, bridge.PublishResult{ReasonCode: 0x10, Reason: "nobody"})})
		v.Server(t, b)
	}

	type errorFrame struct {
		Type string `json:"type"`
		Ref  string `json:"ref,omitempty"`
		wire.ErrorDetail
	}
	for _, err := range []error{
		bridge.ReasonError(0x87, "no"), bridge.ErrTimeout, bridge.ErrUnavailable, bridge.ErrSlowConsumer,
		bridge.ErrFeedClosed, fmt.Errorf("boom"), bridge.Errorf(bridge.ECodeInvalidTopic, "bad"),
	} {
		d, _ := wire.Detail(err)
		b, _ := json.Marshal(errorFrame{Type: "error", Ref: "x", ErrorDetail: d})
		v.Server(t, b)
		b, _ = json.Marshal(errorFrame{Type: "error", ErrorDetail: d})
		v.Server(t, b)
	}
}

func TestGoodFrames(t *testing.T) {
	v := validator(t)
	server := []string{
		`{"type":"welcome","session":"s_AbCdEfGhIjKlMnOpQrStUv-_","resumed":true,"last_id":"0-0"}`,
		`{"type":"message","id":"1-0","topic":"t","payload":"","qos":0,"retain":false,"received_at":"2026-01-01T00:00:00.123456789Z"}`,
		`{"type":"message","id":"1-1","topic":"t","payload_base64":"AA==","qos":1,"retain":true,"properties":{"correlation_data_base64":"AQ=="},"received_at":"2026-01-01T00:00:00Z","snapshot":true,"ack":true}`,
		`{"type":"ok","ref":"1"}`,
		`{"type":"ok","ref":"2","result":{"topic":"t","qos":0}}`,
		`{"type":"error","code":"invalid_request","message":"malformed JSON"}`,
		`{"type":"error","ref":"3","code":"broker_rejected","message":"no","reason_code":153}`,
		`{"type":"pong"}`,
		`{"type":"pong","ref":"4"}`,
		`{"type":"gap","last_id":"5-0","message":"gone"}`,
		`{"type":"gap","ref":"s","last_id":"5-0","message":"gone"}`,
	}
	client := []string{
		`{"type":"subscribe","filters":["#"]}`,
		`{"type":"subscribe","id":"1","filters":["a/+/b","c/#"],"qos":1,"snapshot":false,"last_id":"17-3"}`,
		`{"type":"unsubscribe","filters":["a/+/b"]}`,
		`{"type":"unsubscribe","id":"x"}`,
		`{"type":"publish","topic":"a","payload":"x"}`,
		`{"type":"publish","id":"p","topic":"a","payload_base64":"AP8=","qos":0,"retain":true,"properties":{"content_type":"x/y","payload_format":0,"message_expiry":60,"response_topic":"r","correlation_data":"c","user_properties":[{"key":"k","value":"v"}]}}`,
		`{"type":"publish","topic":"a","payload_json":null}`,
		`{"type":"publish","topic":"a","payload_json":{"x":[1,2]}}`,
		`{"type":"ack","ids":["1-0"]}`,
		`{"type":"ack","id":"a","ids":[]}`,
		`{"type":"ping"}`,
		`{"type":"ping","id":"` + strings.Repeat("i", 64) + `"}`,
	}
	for _, f := range server {
		if errs := run(t, func(tb testing.TB) { v.Server(tb, []byte(f)) }); len(errs) > 0 {
			t.Errorf("server frame %s refused:\n%s", f, strings.Join(errs, "\n"))
		}
	}
	for _, f := range client {
		if errs := run(t, func(tb testing.TB) { v.Client(tb, []byte(f)) }); len(errs) > 0 {
			t.Errorf("client frame %s refused:\n%s", f, strings.Join(errs, "\n"))
		}
	}
}

func TestBadFrames(t *testing.T) {
	v := validator(t)
	const welcome = `"type":"welcome","session":"s_AbCdEfGhIjKlMnOpQrStUv-_","resumed":false`
	const msg = `"type":"message","id":"1-0","topic":"t","qos":0,"retain":false,"received_at":"2026-01-01T00:00:00Z"`
	for _, c := range []struct {
		server bool
		frame  string
		want   string // in the failure message
	}{
		// Not a frame at all.
		{true, `{not json`, "not JSON"},
		{true, `[]`, "not a JSON object"},
		{true, `{"ref":"1"}`, `no string "type"`},
		{true, `{"type":1}`, `no string "type"`},
		{true, `{"type":"hello"}`, `unknown frame type "hello"`},
		{true, `{"type":"ping"}`, `unknown frame type "ping"`},  // a client frame
		{false, `{"type":"pong"}`, `unknown frame type "pong"`}, // a server frame
		{false, `{"type":"launch","id":"e5"}`, `unknown frame type "launch"`},

		// Server frames.
		{true, `{` + welcome + `}`, "missing property 'last_id'"},
		{true, `{` + welcome + `,"last_id":"0-0","extra":1}`, "additional properties 'extra'"},
		{true, `{` + welcome + `,"last_id":"latest"}`, "/last_id"},
		{true, `{"type":"welcome","session":"x","resumed":false,"last_id":"0-0"}`, "/session"},
		{true, `{` + msg + `}`, "oneOf"},
		{true, `{` + msg + `,"payload":"a","payload_base64":"YQ=="}`, "oneOf"},
		{true, `{` + msg + `,"payload":"a","snapshot":false}`, "/snapshot"},
		{true, `{` + msg + `,"payload":"a","ack":"yes"}`, "/ack"},
		{true, `{` + msg + `,"payload_base64":"!!"}`, "base64"},
		{true, `{"type":"message","id":"1-0","topic":"t","payload":"a","qos":0,"retain":false,"received_at":"yesterday"}`, "date-time"},
		{true, `{"type":"message","id":"1-0","topic":"t","payload":"a","qos":3,"retain":false,"received_at":"2026-01-01T00:00:00Z"}`, "/qos"},
		{true, `{` + msg + `,"payload":"a","properties":{"correlation_data":"a","correlation_data_base64":"YQ=="}}`, "/properties"},
		{true, `{` + msg + `,"payload":"a","properties":{"user_properties":[{"key":"k"}]}}`, "missing property 'value'"},
		{true, `{` + msg + `,"payload":"a","properties":{"expiry":1}}`, "additional properties 'expiry'"},
		{true, `{"type":"ok"}`, "missing property 'ref'"},
		{true, `{"type":"ok","ref":"1","result":{"topic":"t"}}`, "missing property 'qos'"},
		{true, `{"type":"ok","ref":"1","result":{"topic":"t","qos":1,"reason_code":135}}`, "/result/reason_code"},
		{true, `{"type":"error","code":"oops","message":"m"}`, "/code"},
		{true, `{"type":"error","ref":"1","code":"timeout"}`, "missing property 'message'"},
		{true, `{"type":"error","code":"forbidden","message":"m","reason_code":16}`, "/reason_code"},
		{true, `{"type":"error","ref":"","code":"timeout","message":"m"}`, "/ref"},
		{true, `{"type":"pong","id":"1"}`, "additional properties 'id'"},
		{true, `{"type":"gap","last_id":"1-0"}`, "missing property 'message'"},

		// Client frames.
		{false, `{"type":"subscribe","id":"1"}`, "missing property 'filters'"},
		{false, `{"type":"subscribe","filters":[]}`, "/filters"},
		{false, `{"type":"subscribe","filters":[` + strings.Repeat(`"a",`, 100) + `"a"]}`, "/filters"},
		{false, `{"type":"subscribe","filters":[""]}`, "/filters/0"},
		{false, `{"type":"subscribe","filters":["a"],"qos":2}`, "/qos"},
		{false, `{"type":"subscribe","filters":["a"],"snapshot":"true"}`, "/snapshot"},
		{false, `{"type":"subscribe","filters":["a"],"last_id":"abc"}`, "/last_id"},
		{false, `{"type":"subscribe","id":"e4","filters":["x"],"bogus":1}`, "additional properties 'bogus'"},
		{false, `{"type":"subscribe","id":"","filters":["x"]}`, "/id"},
		{false, `{"type":"subscribe","id":"` + strings.Repeat("i", 65) + `","filters":["x"]}`, "/id"},
		{false, `{"type":"subscribe","id":7,"filters":["x"]}`, "/id"},
		{false, `{"type":"unsubscribe","filters":"a"}`, "/filters"},
		{false, `{"type":"publish","topic":"a"}`, "oneOf"},
		{false, `{"type":"publish","topic":"a","payload":"x","payload_json":1}`, "oneOf"},
		{false, `{"type":"publish","payload":"x"}`, "missing property 'topic'"},
		{false, `{"type":"publish","topic":"a/+","payload":"x"}`, "/topic"},
		{false, `{"type":"publish","topic":"a","payload":"x","qos":3}`, "/qos"},
		{false, `{"type":"publish","topic":"a","payload_base64":"not base64!"}`, "base64"},
		{false, `{"type":"publish","topic":"a","payload":"x","properties":{"payload_format":2}}`, "/properties/payload_format"},
		{false, `{"type":"publish","topic":"a","payload":"x","ttl":5}`, "additional properties 'ttl'"},
		{false, `{"type":"ack","ids":"1-0"}`, "/ids"},
		{false, `{"type":"ping","id":"k","ref":"k"}`, "additional properties 'ref'"},
	} {
		check, dir := v.Client, "client→server"
		if c.server {
			check, dir = v.Server, "server→client"
		}
		errs := run(t, func(tb testing.TB) { check(tb, []byte(c.frame)) })
		if len(errs) != 1 {
			t.Errorf("%s frame %s: %d failures, want 1: %q", dir, c.frame, len(errs), errs)
			continue
		}
		if e := errs[0]; !strings.Contains(e, dir) || !strings.Contains(e, c.frame) || !strings.Contains(e, c.want) {
			t.Errorf("%s frame %s: failure %q, want it to name the direction, the frame and %q", dir, c.frame, e, c.want)
		}
	}
}

func TestLongFrameClipped(t *testing.T) {
	v := validator(t)
	f := `{"type":"hello","pad":"` + strings.Repeat("x", 100<<10) + `"}`
	errs := run(t, func(tb testing.TB) { v.Server(tb, []byte(f)) })
	if len(errs) != 1 || len(errs[0]) > 4000 || !strings.Contains(errs[0], fmt.Sprintf("(%d bytes)", len(f))) {
		t.Fatalf("failure for a long frame: %d failures, first %.300q", len(errs), errs)
	}
}

// Frames are checked from many goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	v := validator(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				v.Server(t, fmt.Appendf(nil, `{"type":"message","id":"%d-%d","topic":"t","payload":"x","qos":1,"retain":false,"received_at":"2026-01-01T00:00:00Z","ack":true}`, i, j))
				v.Client(t, fmt.Appendf(nil, `{"type":"ack","ids":["%d-%d"]}`, i, j))
			}
		})
	}
	wg.Wait()
}

func TestNewRefusesBrokenDocuments(t *testing.T) {
	const ops = `
operations:
  sendPing:
    action: send
    channel: {$ref: '#/channels/ws'}
    messages: [{$ref: '#/channels/ws/messages/ping'}]
  receivePong:
    action: receive
    channel: {$ref: '#/channels/ws'}
    messages: [{$ref: '#/channels/ws/messages/pong'}]
`
	const channels = `
channels:
  ws:
    address: /v1/ws
    messages:
      ping: {$ref: '#/components/messages/ping'}
      pong: {$ref: '#/components/messages/pong'}
`
	const head = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\n"
	msgs := func(ping, pong string) string {
		return "components:\n  messages:\n    ping:\n      payload: " + ping + "\n    pong:\n      payload: " + pong + "\n"
	}
	const pingSchema = `{type: object, required: [type], properties: {type: {const: ping}}}`
	const pongSchema = `{type: object, required: [type], properties: {type: {enum: [pong]}}}`

	// The minimal document works, with messages inline or taken from the
	// channel when an operation lists none.
	good := head + ops + channels + msgs(pingSchema, pongSchema)
	if errs := run(t, func(tb testing.TB) {
		v := frametest.New(tb, []byte(good))
		v.Client(tb, []byte(`{"type":"ping"}`))
		v.Server(tb, []byte(`{"type":"pong"}`))
	}); len(errs) > 0 {
		t.Fatalf("minimal document: %q", errs)
	}
	implicit := strings.Replace(good, "    messages: [{$ref: '#/channels/ws/messages/pong'}]\n", "", 1)
	implicit = strings.Replace(implicit, "    messages: [{$ref: '#/channels/ws/messages/ping'}]\n", "", 1)
	if errs := run(t, func(tb testing.TB) {
		v := frametest.New(tb, []byte(implicit))
		if got := v.ClientTypes(); !slices.Equal(got, []string{"ping", "pong"}) {
			tb.Errorf("client types %v", got)
		}
	}); len(errs) > 0 {
		t.Errorf("operations without messages: %q", errs)
	}

	for _, c := range []struct{ name, doc, want string }{
		{"not YAML", "asyncapi: [3.0.0", "yaml"},
		{"version 2", strings.Replace(good, "3.0.0", "2.6.0", 1), "2.6.0"},
		{"no operations", head + channels + msgs(pingSchema, pongSchema), "no operations"},
		{"bad action", strings.Replace(good, "action: send", "action: publish", 1), "action publish"},
		{"dangling ref", strings.Replace(good, "'#/components/messages/pong'", "'#/components/messages/nope'", 1), `no "nope"`},
		{"external ref", strings.Replace(good, "'#/components/messages/pong'", "'other.yaml#/pong'", 1), "only references into this document"},
		{"no type const", head + ops + channels + msgs(`{type: object, required: [type], properties: {type: {type: string}}}`, pongSchema), "string const"},
		{"type not required", head + ops + channels + msgs(`{type: object, properties: {type: {const: ping}}}`, pongSchema), `does not require "type"`},
		{"bad schema", head + ops + channels + msgs(`{type: 5, required: [type], properties: {type: {const: ping}}}`, pongSchema), "/type"},
		{"one direction only", strings.Replace(good, "action: receive", "action: send", 1), "both directions"},
	} {
		errs := run(t, func(tb testing.TB) { frametest.New(tb, []byte(c.doc)) })
		if len(errs) != 1 || !strings.Contains(errs[0], c.want) {
			t.Errorf("%s: failures %q, want one with %q", c.name, errs, c.want)
		}
	}

	// The same type twice in one direction, with different schemas.
	dup := head + `
operations:
  a:
    action: send
    channel: {$ref: '#/channels/ws'}
    messages: [{$ref: '#/channels/ws/messages/ping'}]
  b:
    action: send
    channel: {$ref: '#/channels/ws'}
    messages: [{$ref: '#/channels/ws/messages/ping2'}]
  c:
    action: receive
    channel: {$ref: '#/channels/ws'}
    messages: [{$ref: '#/channels/ws/messages/pong'}]
channels:
  ws:
    messages:
      ping: {$ref: '#/components/messages/ping'}
      ping2: {payload: ` + pingSchema + `}
      pong: {$ref: '#/components/messages/pong'}
` + msgs(pingSchema, pongSchema)
	if errs := run(t, func(tb testing.TB) { frametest.New(tb, []byte(dup)) }); len(errs) != 1 || !strings.Contains(errs[0], `two send schemas for frame type "ping"`) {
		t.Errorf("duplicate type: %q", errs)
	}
}
