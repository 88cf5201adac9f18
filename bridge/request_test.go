package bridge_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// device is an Upstream with a reply prefix that hands every request to
// answer, which plays the device.
type device struct {
	b      *bridge.Bridge
	ready  bool
	answer func(b *bridge.Bridge, req bridge.Message)

	mu   sync.Mutex
	sent []bridge.Message
}

func (d *device) Name() string        { return "devices" }
func (d *device) Problems() []string  { return nil }
func (d *device) ReplyPrefix() string { return "replies/i1/" }
func (d *device) RepliesReady() bool  { return d.ready }
func (d *device) Publish(_ context.Context, m bridge.Message) (bridge.PublishResult, error) {
	d.mu.Lock()
	d.sent = append(d.sent, m)
	d.mu.Unlock()
	if d.answer != nil {
		go d.answer(d.b, m)
	}
	return bridge.PublishResult{}, nil
}

func newRequestBridge(t *testing.T, auth bridge.Authorizer, answer func(*bridge.Bridge, bridge.Message)) (*bridge.Bridge, *device, *memory.Store) {
	t.Helper()
	b, store := testenv.NewBridge(t, bridge.Config{Authorizer: auth})
	d := &device{b: b, ready: true, answer: answer}
	if err := b.AddRoute(bridge.Route{Filters: []string{"dev/#"}, Upstream: d}); err != nil {
		t.Fatal(err)
	}
	return b, d, store
}

func echo(b *bridge.Bridge, req bridge.Message) {
	b.HandleReply(bridge.Message{Topic: req.Properties.ResponseTopic, Payload: append([]byte("re:"), req.Payload...),
		Properties: bridge.Properties{CorrelationData: req.Properties.CorrelationData}})
}

// Each request gets its own response topic and random correlation data,
// and the reply with the same ones answers it; many at once.
func TestRequestReply(t *testing.T) {
	b, d, store := newRequestBridge(t, nil, echo)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			reply, err := b.Request(t.Context(), bridge.Identity{}, bridge.Message{Topic: "dev/1/cmd", Payload: []byte(fmt.Sprint(i)), QoS: 1}, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			if want := fmt.Sprint("re:", i); string(reply.Payload) != want || reply.ID != "" {
				t.Errorf("reply %q (id %q), want %q", reply.Payload, reply.ID, want)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, m := range d.sent {
		p := m.Properties
		token := strings.TrimPrefix(p.ResponseTopic, "replies/i1/")
		if len(p.CorrelationData) != bridge.ReplyTokenBytes || token != hex.EncodeToString(p.CorrelationData) || seen[token] {
			t.Fatalf("request %q: response topic %q, correlation data %x", m.Payload, p.ResponseTopic, p.CorrelationData)
		}
		seen[token] = true
	}
	if st := b.RequestStats(); st.Requests != 100 || st.Replied != 100 || st.Late+st.Foreign+st.TimedOut != 0 {
		t.Fatalf("stats %+v", st)
	}
	if msgs, _ := store.After(t.Context(), "0-0", 1000); len(msgs) != 0 {
		t.Fatalf("replies were recorded: %d messages in the history", len(msgs))
	}
}

// A reply without correlation data (a device that only answers the
// response topic) answers; one with other correlation data does not, and
// is counted as foreign, and so is a message on an unknown topic. A reply
// after the request ended is late.
func TestRequestMatching(t *testing.T) {
	var reqs = make(chan bridge.Message, 10)
	b, _, _ := newRequestBridge(t, nil, func(_ *bridge.Bridge, m bridge.Message) { reqs <- m })
	res := make(chan error, 1)
	go func() {
		reply, err := b.Request(t.Context(), bridge.Identity{}, bridge.Message{Topic: "dev/1/cmd", Payload: []byte("x")}, 5*time.Second)
		if err == nil && string(reply.Payload) != "plain" {
			err = fmt.Errorf("reply %q", reply.Payload)
		}
		res <- err
	}()
	req := <-reqs
	rt := req.Properties.ResponseTopic
	b.HandleReply(bridge.Message{Topic: rt, Payload: []byte("wrong"), Properties: bridge.Properties{CorrelationData: []byte("other")}})
	b.HandleReply(bridge.Message{Topic: "replies/i1/unknown", Payload: []byte("who?")})
	b.HandleReply(bridge.Message{Topic: rt, Payload: []byte("plain")})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	b.HandleReply(bridge.Message{Topic: rt, Payload: []byte("again"), Properties: bridge.Properties{CorrelationData: req.Properties.CorrelationData}})
	if st := b.RequestStats(); st.Replied != 1 || st.Foreign != 2 || st.Late != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Timed out, then the reply comes: late.
	began := time.Now()
	_, err := b.Request(t.Context(), bridge.Identity{}, bridge.Message{Topic: "dev/2/cmd"}, 100*time.Millisecond)
	if bridge.ErrorCode(err) != bridge.ECodeTimeout {
		t.Fatalf("no reply: %v, want timeout", err)
	}
	if d := time.Since(began); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("timed out after %v", d)
	}
	late := <-reqs
	b.HandleReply(bridge.Message{Topic: late.Properties.ResponseTopic, Properties: bridge.Properties{CorrelationData: late.Properties.CorrelationData}})
	if st := b.RequestStats(); st.TimedOut != 1 || st.Late != 2 {
		t.Fatalf("stats %+v", st)
	}

	// The caller gives up: its context error.
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-reqs; cancel() }()
	if _, err := b.Request(ctx, bridge.Identity{}, bridge.Message{Topic: "dev/3/cmd"}, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request: %v", err)
	}
}

// The checks: the request permission, the MQTT rules, and what the bridge
// sets itself; nothing refused is published.
func TestRequestChecks(t *testing.T) {
	auth := &denyAll{}
	b, d, _ := newRequestBridge(t, auth, echo)
	ctx := t.Context()
	_, err := b.Request(ctx, bridge.Identity{Name: "x"}, bridge.Message{Topic: "dev/1/cmd"}, time.Second)
	if bridge.ErrorCode(err) != bridge.ECodeForbidden || len(auth.calls) != 1 || auth.calls[0] != "request dev/1/cmd" {
		t.Fatalf("refused request: %v, authorizer calls %q", err, auth.calls)
	}

	b, d, _ = newRequestBridge(t, nil, echo)
	for name, c := range map[string]struct {
		msg  bridge.Message
		code string
	}{
		"wildcard":       {bridge.Message{Topic: "dev/+"}, bridge.ECodeInvalidTopic},
		"retain":         {bridge.Message{Topic: "dev/1", Retain: true}, bridge.ECodeInvalidRequest},
		"response topic": {bridge.Message{Topic: "dev/1", Properties: bridge.Properties{ResponseTopic: "x"}}, bridge.ECodeInvalidRequest},
		"correlation":    {bridge.Message{Topic: "dev/1", Properties: bridge.Properties{CorrelationData: []byte{}}}, bridge.ECodeInvalidRequest},
		"qos":            {bridge.Message{Topic: "dev/1", QoS: 3}, bridge.ECodeInvalidRequest},
		"not bridged":    {bridge.Message{Topic: "other/1"}, bridge.ECodeNotBridged},
		"too large":      {bridge.Message{Topic: "dev/1", Payload: bytes.Repeat([]byte("x"), 1<<20+1)}, bridge.ECodePayloadTooLarge},
	} {
		if _, err := b.Request(ctx, bridge.Identity{}, c.msg, time.Second); bridge.ErrorCode(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}
	d.ready = false
	if _, err := b.Request(ctx, bridge.Identity{}, bridge.Message{Topic: "dev/1"}, time.Second); bridge.ErrorCode(err) != bridge.ECodeBrokerUnavailable {
		t.Errorf("replies not ready: %v", err)
	}
	if len(d.sent) != 0 {
		t.Fatalf("%d refused requests were published", len(d.sent))
	}

	// A broker without a reply prefix takes no requests.
	store, _ := memory.New(memory.Config{})
	plain, _ := bridge.New(bridge.Config{Store: store})
	if err := plain.AddRoute(bridge.Route{Filters: []string{"#"}, Upstream: &recorder{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Request(ctx, bridge.Identity{}, bridge.Message{Topic: "a"}, time.Second); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
		t.Errorf("no reply prefix: %v", err)
	}
}
