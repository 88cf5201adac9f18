package bridge_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// A batch is all or nothing at the checks: one refused message (or one the
// caller could not decode) and nothing is sent; otherwise every message
// is published in order.
func TestPublishBatch(t *testing.T) {
	up := &recorder{}
	b, _ := testenv.NewBridge(t, bridge.Config{Authorizer: authorizeAC{}}, bridge.Route{Filters: []string{"#"}, Upstream: up})
	ctx, id := context.Background(), bridge.Identity{Name: "alice"}
	msgs := []bridge.Message{{Topic: "a/1"}, {Topic: "b/2"}, {Topic: "c/3"}}

	_, err := b.PublishBatch(ctx, id, msgs, nil)
	r, ok := errors.AsType[*bridge.BatchRefused](err)
	if !ok || len(r.Errs) != 3 || r.Errs[0] != nil || bridge.ErrorCode(r.Errs[1]) != bridge.ECodeForbidden || r.Errs[2] != nil {
		t.Fatalf("a batch with b/2: %v, want refused at index 1 only", err)
	}
	undecodable := errors.New("bad base64")
	_, err = b.PublishBatch(ctx, id, []bridge.Message{{Topic: "a/1"}, {}}, []error{nil, undecodable})
	if r, ok := errors.AsType[*bridge.BatchRefused](err); !ok || r.Errs[1] != undecodable {
		t.Fatalf("a batch with an undecodable item: %v", err)
	}
	if len(up.sent) != 0 {
		t.Fatalf("refused batches sent %d messages", len(up.sent))
	}

	out, err := b.PublishBatch(ctx, id, []bridge.Message{msgs[0], msgs[2]}, nil)
	if err != nil || len(out) != 2 || out[0].Err != nil || out[1].Err != nil {
		t.Fatalf("allowed batch: %v %v", out, err)
	}
	if len(up.sent) != 2 || up.sent[0].Topic != "a/1" || up.sent[1].Topic != "c/3" {
		t.Fatalf("sent %v, want a/1 then c/3", up.sent)
	}
}
