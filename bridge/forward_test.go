package bridge_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// named is an Upstream that only has a name: Forward's caller sends.
type named string

func (n named) Name() string       { return string(n) }
func (n named) Problems() []string { return nil }
func (n named) Publish(context.Context, bridge.Message) (bridge.PublishResult, error) {
	return bridge.PublishResult{}, nil
}

// published records Metrics.Published.
type published struct {
	bridge.NoMetrics
	got []string
}

func (p *published) Published(qos byte, outcome string) {
	p.got = append(p.got, string('0'+qos)+" "+outcome)
}

// denyTimes refuses the first n publishes, asking to retry after 10 ms.
type denyTimes struct{ n atomic.Int32 }

func (d *denyTimes) Allow(bridge.Identity, bridge.Action) error {
	if d.n.Add(-1) >= 0 {
		return &bridge.Error{Code: bridge.ECodeRateLimited, RetryAfter: 10 * time.Millisecond, Message: "slow down"}
	}
	return nil
}

// newTwoBrokers is a bridge with broker "one" owning a/# and b/#, and
// broker "two" owning c/#; the identity may act on a/ and c/ only.
func newTwoBrokers(t *testing.T, cfg bridge.Config) *bridge.Bridge {
	t.Helper()
	cfg.Authorizer = authorizeAC{}
	b, _ := testenv.NewBridge(t, cfg, bridge.Route{Filters: []string{"a/#", "b/#"}, Upstream: named("one")},
		bridge.Route{Filters: []string{"c/#"}, Upstream: named("two")})
	return b
}

// authorizeAC allows topics and filters under a/ and c/.
type authorizeAC struct{}

func (authorizeAC) Authorize(_ context.Context, _ bridge.Identity, a bridge.Action, t string) error {
	if strings.HasPrefix(t, "a/") || strings.HasPrefix(t, "c/") {
		return nil
	}
	return bridge.Errorf(bridge.ECodeForbidden, "no rule allows %s on %q", a, t)
}

// The proxy's questions (may this identity publish, subscribe, receive
// this at that broker) are the bridge's rules plus the broker's topics.
func TestOnBroker(t *testing.T) {
	b := newTwoBrokers(t, bridge.Config{})
	ctx, id := context.Background(), bridge.Identity{Name: "alice"}
	for _, tc := range []struct {
		op, topic, broker string
		want              string // the error code, "" for allowed
	}{
		{"publish", "a/x", "one", ""},
		{"publish", "a/x", "two", bridge.ECodeNotBridged},
		{"publish", "b/x", "one", bridge.ECodeForbidden},
		{"publish", "c/x", "one", bridge.ECodeNotBridged},
		{"publish", "a/+", "one", bridge.ECodeInvalidTopic},
		{"publish", "c/x", "two", ""},
		{"subscribe", "a/#", "one", ""},
		{"subscribe", "a/#", "two", bridge.ECodeNotBridged},
		{"subscribe", "#", "one", bridge.ECodeNotBridged},
		{"subscribe", "b/+", "one", bridge.ECodeForbidden},
		{"subscribe", "a/#/x", "one", bridge.ECodeInvalidTopic},
		{"subscribe", "c/+/y", "two", ""},
		{"subscribe", "a/x", "nobody", bridge.ECodeNotBridged},
		{"receive", "a/x", "one", ""},
		{"receive", "a/x", "two", bridge.ECodeNotBridged},
		{"receive", "b/x", "one", bridge.ECodeForbidden},
		{"receive", "c/x", "two", ""},
		{"receive", "c/x", "one", bridge.ECodeNotBridged},
	} {
		var err error
		switch tc.op {
		case "publish":
			err = b.CheckPublishOn(ctx, id, tc.broker, bridge.Message{Topic: tc.topic})
		case "subscribe":
			err = b.CheckSubscribeOn(ctx, id, tc.broker, tc.topic)
		case "receive":
			err = b.MayReceiveOn(ctx, id, tc.broker, tc.topic)
		}
		if got := bridge.ErrorCode(err); err != nil && got != tc.want || err == nil && tc.want != "" {
			t.Errorf("%s %s at %s: %v, want %q", tc.op, tc.topic, tc.broker, err, tc.want)
		}
	}
	// The response topic is a publish of the caller's too.
	msg := bridge.Message{Topic: "a/x", Properties: bridge.Properties{ResponseTopic: "b/reply"}}
	if err := b.CheckPublishOn(ctx, id, "one", msg); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Errorf("response topic b/reply: %v, want forbidden", err)
	}
}

// Forward counts a refusal without sending, waits for publish budget
// instead of refusing, and counts a sent publish.
func TestForward(t *testing.T) {
	m, lim := &published{}, &denyTimes{}
	b := newTwoBrokers(t, bridge.Config{Metrics: m, Limiter: lim})
	ctx, id := context.Background(), bridge.Identity{Name: "alice"}
	sends := 0
	send := func() error { sends++; return nil }

	if err := b.Forward(ctx, id, "one", bridge.Message{Topic: "b/x", QoS: 1}, send); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Fatalf("refused publish: %v", err)
	}
	lim.n.Store(3)
	if err := b.Forward(ctx, id, "one", bridge.Message{Topic: "a/x", QoS: 2}, send); err != nil {
		t.Fatalf("allowed publish: %v", err)
	}
	if sends != 1 || lim.n.Load() >= 0 {
		t.Fatalf("%d sends, limiter left at %d: want 1 send after the budget came", sends, lim.n.Load())
	}
	if want := []string{"1 forbidden", "2 ok"}; strings.Join(m.got, ",") != strings.Join(want, ",") {
		t.Fatalf("metrics %q, want %q", m.got, want)
	}

	// Over the rate until ctx ends: nothing is sent, ctx's error returns.
	lim.n.Store(1 << 30)
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Forward(ctx, id, "one", bridge.Message{Topic: "a/x"}, send); err != context.DeadlineExceeded || sends != 1 {
		t.Fatalf("waiting past ctx: %v, %d sends", err, sends)
	}
}
