package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Notify: func() { notified.Add(1) }})
	defer f.Close()
	if f.Ready() != nil {
		t.Fatal("a Notify feed has a Ready channel")
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
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Notify: func() {}})
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
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{QueueMessages: 3, Notify: func() { notified.Add(1) }})
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

// The byte budget bounds the queue: a burst of thousands of small messages
// (more than the 1,024 slots the queue once had) waits for a consumer that
// is merely behind, and only going over the budget fails the feed.
func TestFeedBurstWithinBytes(t *testing.T) {
	b := notifyBridge(t)
	const n, size = 4000, 64
	budget := n * (size + bridge.DeliveryOverhead)
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{QueueBytes: budget, Notify: func() {}})
	defer f.Close()
	if err := f.Subscribe(context.Background(), []string{"#"}, bridge.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	for i := 0; i < n; i++ {
		b.Ingest(bridge.Message{Topic: "t", Payload: payload})
	}
	if f.Err() != nil || f.Len() != n {
		t.Fatalf("after the burst: err %v, %d queued", f.Err(), f.Len())
	}
	b.Ingest(bridge.Message{Topic: "t", Payload: payload})
	if bridge.ErrorCode(f.Err()) != bridge.ECodeSlowConsumer {
		t.Fatalf("over the budget: err %v", f.Err())
	}
}

// A consumer whose oldest queued message waited longer than MaxLag fails
// when the next one arrives, though within the budget; one that keeps
// taking does not.
func TestFeedMaxLag(t *testing.T) {
	b := notifyBridge(t)
	const lag = 50 * time.Millisecond
	slow := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{MaxLag: lag, Notify: func() {}})
	defer slow.Close()
	reading := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{MaxLag: lag, Notify: func() {}})
	defer reading.Close()
	for _, f := range []*bridge.Feed{slow, reading} {
		if err := f.Subscribe(context.Background(), []string{"#"}, bridge.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Ingest(bridge.Message{Topic: "t", Payload: []byte("1")})
	for _, d := range reading.Take(nil, 10) {
		reading.Took(d)
	}
	time.Sleep(2 * lag)
	b.Ingest(bridge.Message{Topic: "t", Payload: []byte("2")})
	if bridge.ErrorCode(slow.Err()) != bridge.ECodeSlowConsumer {
		t.Fatalf("the feed behind by %s: err %v", 2*lag, slow.Err())
	}
	if reading.Err() != nil || reading.Len() != 1 {
		t.Fatalf("the reading feed: err %v, %d queued", reading.Err(), reading.Len())
	}
}
