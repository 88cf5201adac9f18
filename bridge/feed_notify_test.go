package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

func notifyBridge(t *testing.T) *bridge.Bridge {
	t.Helper()
	b, _ := testenv.NewBridge(t, bridge.Config{}, bridge.Route{Filters: []string{"#"}, Upstream: &recorder{}})
	return b
}

// A feed with Notify queues without a channel: the consumer is told of
// each delivery and takes them in order, in bulk.
func TestFeedNotifyTake(t *testing.T) {
	b := notifyBridge(t)
	var notified atomic.Int64
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Queue: 100, Notify: func() { notified.Add(1) }})
	defer f.Close()
	if f.C() != nil {
		t.Fatal("a Notify feed has a channel")
	}
	if err := f.Subscribe(context.Background(), []string{"a/#"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b.Ingest(bridge.Message{Topic: "a/b", Payload: fmt.Appendf(nil, "%d", i)})
	}
	b.Ingest(bridge.Message{Topic: "elsewhere", Payload: []byte("x")})
	if notified.Load() != 5 || f.Len() != 5 {
		t.Fatalf("notified %d times, %d queued; want 5 and 5", notified.Load(), f.Len())
	}
	got := f.Take(nil, 2)
	got = f.Take(got, 10)
	if len(got) != 5 || f.Len() != 0 || len(f.Take(nil, 10)) != 0 {
		t.Fatalf("took %d, %d left", len(got), f.Len())
	}
	for i, d := range got {
		if string(d.Event.Payload) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %q", i, d.Event.Payload)
		}
		f.Took(d)
	}
	// Snapshot values are queued the same way.
	if err := f.Subscribe(context.Background(), []string{"elsewhere"}, bridge.SubscribeOptions{Snapshot: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.Take(nil, 10); len(got) != 1 || !got[0].Snapshot || string(got[0].Event.Payload) != "x" {
		t.Fatalf("snapshot %v", got)
	}
}

// Taking part of the queue while more arrive keeps the order.
func TestFeedNotifyInterleaved(t *testing.T) {
	b := notifyBridge(t)
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Queue: 1000, Notify: func() {}})
	defer f.Close()
	if err := f.Subscribe(context.Background(), []string{"#"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	next, want := 0, 0
	for round := 0; round < 50; round++ {
		for i := 0; i < 7; i++ {
			b.Ingest(bridge.Message{Topic: "t", Payload: fmt.Appendf(nil, "%d", next)})
			next++
		}
		for _, d := range f.Take(nil, 5) {
			if string(d.Event.Payload) != fmt.Sprint(want) {
				t.Fatalf("got %q, want %d", d.Event.Payload, want)
			}
			want++
		}
	}
	for _, d := range f.Take(nil, 1000) {
		if string(d.Event.Payload) != fmt.Sprint(want) {
			t.Fatalf("got %q, want %d", d.Event.Payload, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("took %d of %d", want, next)
	}
}

// A full queue fails the feed as a slow consumer, tells the consumer, and
// lets the queue go.
func TestFeedNotifyFull(t *testing.T) {
	b := notifyBridge(t)
	var notified atomic.Int64
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Queue: 3, Notify: func() { notified.Add(1) }})
	defer f.Close()
	if err := f.Subscribe(context.Background(), []string{"#"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		b.Ingest(bridge.Message{Topic: "t", Payload: []byte("x")})
	}
	select {
	case <-f.Done():
	default:
		t.Fatal("the feed did not fail")
	}
	if bridge.ErrorCode(f.Err()) != bridge.ECodeSlowConsumer || notified.Load() != 4 || f.Len() != 0 {
		t.Fatalf("err %v, notified %d, %d queued", f.Err(), notified.Load(), f.Len())
	}
}
