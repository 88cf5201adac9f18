package bridge_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// recorder is an Upstream that records what reaches it; the real adapter
// is tested against Mosquitto in bridge/mqtt.
type recorder struct{ sent []bridge.Message }

func (r *recorder) Name() string       { return "recorder" }
func (r *recorder) Problems() []string { return nil }
func (r *recorder) Publish(_ context.Context, m bridge.Message) (bridge.PublishResult, error) {
	r.sent = append(r.sent, m)
	return bridge.PublishResult{}, nil
}

// denyAll refuses everything, like an authorizer with no matching rule.
type denyAll struct{ calls []string }

func (d *denyAll) Authorize(_ context.Context, _ bridge.Identity, a bridge.Action, topic string) error {
	d.calls = append(d.calls, string(a)+" "+topic)
	return bridge.Errorf(bridge.ECodeForbidden, "no rule allows %s on %q", a, topic)
}

// Every operation goes through the authorizer, and nothing it refuses
// reaches the broker or the store.
func TestEveryOperationIsAuthorized(t *testing.T) {
	auth := &denyAll{}
	up := &recorder{}
	b, store := testenv.NewBridge(t, bridge.Config{Authorizer: auth}, bridge.Route{Filters: []string{"#"}, Upstream: up})
	b.Ingest(bridge.Message{Topic: "a/b", Payload: []byte("v"), Retain: true})
	ctx := context.Background()
	id := bridge.Identity{Name: "someone"}

	_, errPub := b.Publish(ctx, id, bridge.Message{Topic: "a/b", Payload: []byte("x")})
	errCheck := b.CheckPublish(ctx, id, bridge.Message{Topic: "a/b"})
	_, errLast := b.Last(ctx, id, "a/b")
	listed, _, errList := b.List(ctx, id, "a/+", "", 10)
	_, errDel := b.Delete(ctx, id, "a/b")
	// A list returns only the topics the caller may read: none here.
	if errList != nil || len(listed) != 0 {
		t.Errorf("list: %v %v, want nothing", listed, errList)
	}
	for name, err := range map[string]error{"publish": errPub, "check": errCheck, "last": errLast, "delete": errDel} {
		var e *bridge.Error
		if !errors.As(err, &e) || e.Code != bridge.ECodeForbidden {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	want := []string{"publish a/b", "publish a/b", "subscribe a/b", "subscribe a/+", "subscribe a/b", "publish a/b"}
	if len(auth.calls) != len(want) {
		t.Fatalf("authorizer calls %q, want %q", auth.calls, want)
	}
	for i := range want {
		if auth.calls[i] != want[i] {
			t.Fatalf("authorizer calls %q, want %q", auth.calls, want)
		}
	}
	if len(up.sent) != 0 {
		t.Fatalf("the broker received %d messages", len(up.sent))
	}
	if _, err := store.Get(ctx, "a/b"); err != nil {
		t.Fatalf("the refused delete removed the last value: %v", err)
	}
}
