package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
)

type nopUpstream struct{}

func (nopUpstream) Name() string       { return "nop" }
func (nopUpstream) Problems() []string { return nil }
func (nopUpstream) Publish(_ context.Context, _ bridge.Message) (bridge.PublishResult, error) {
	return bridge.PublishResult{}, nil
}

// newAlarmBridge is a started bridge on the memory store with the alarm
// "a" on alarm/#.
func newAlarmBridge(t *testing.T) *bridge.Bridge {
	t.Helper()
	store, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{Store: store, Alarms: []bridge.AlarmConfig{{Name: "a", Filters: []string{"alarm/#"}, Clear: []string{"OK"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute(bridge.Route{Filters: []string{"#"}, Upstream: nopUpstream{}}); err != nil {
		t.Fatal(err)
	}
	b.Start(t.Context())
	t.Cleanup(b.Close)
	for len(b.Problems(t.Context())) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	return b
}

// take waits up to d for the next delivery of f (Ready, Take, Took).
func take(f *bridge.Feed, d time.Duration) (bridge.Delivery, bool) {
	deadline := time.After(d)
	for {
		if ds := f.Take(nil, 1); len(ds) == 1 {
			f.Took(ds[0])
			return ds[0], true
		}
		select {
		case <-f.Ready():
		case <-deadline:
			return bridge.Delivery{}, false
		}
	}
}

// next waits for the next delivery of f.
func next(t *testing.T, f *bridge.Feed) bridge.Delivery {
	t.Helper()
	d, ok := take(f, 5*time.Second)
	if !ok {
		t.Fatal("no delivery")
	}
	return d
}

// nextAlarm waits for the next delivery of f, which must be an alarm.
func nextAlarm(t *testing.T, f *bridge.Feed) bridge.Delivery {
	t.Helper()
	d := next(t, f)
	if d.Alarm == nil {
		t.Fatalf("delivery %+v, want an alarm", d)
	}
	return d
}

func noDelivery(t *testing.T, f *bridge.Feed) {
	t.Helper()
	if d, ok := take(f, 200*time.Millisecond); ok {
		t.Fatalf("unexpected delivery %+v", d)
	}
}

// TestFeedAlarms: feeds that take alarms get the transitions of their
// topics; others (long-poll) do not; a subscribe with a snapshot or a
// replay gets the open alarms of its new filters first.
func TestFeedAlarms(t *testing.T) {
	b := newAlarmBridge(t)
	ctx := t.Context()
	f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{Alarms: true})
	defer f.Close()
	plain := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{})
	defer plain.Close()
	for _, feed := range []*bridge.Feed{f, plain} {
		if err := feed.Subscribe(ctx, []string{"alarm/1"}, bridge.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Ingest(bridge.Message{Topic: "alarm/1", Payload: []byte("hot")})
	// The message first (the ingest), then the alarm (the applier).
	if d := next(t, f); d.Event == nil || d.Event.Topic != "alarm/1" {
		t.Fatalf("first delivery %+v, want the message", d)
	}
	if d := nextAlarm(t, f); d.Snapshot || d.Alarm.Topic != "alarm/1" || !d.Alarm.Active || d.Alarm.Rev != 1 {
		t.Fatalf("raised: %+v", d.Alarm)
	}
	if d := next(t, plain); d.Event == nil {
		t.Fatalf("plain feed: %+v, want the message", d)
	}
	noDelivery(t, plain)

	// A second filter with a snapshot: the open alarms first, newest
	// first, then the current values.
	b.Ingest(bridge.Message{Topic: "alarm/2", Payload: []byte("low")})
	for {
		as, _, err := b.ListAlarms(ctx, bridge.Identity{}, bridge.AlarmQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.Subscribe(ctx, []string{"alarm/#"}, bridge.SubscribeOptions{Snapshot: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alarm/2", "alarm/1"} {
		if d := nextAlarm(t, f); !d.Snapshot || d.Alarm.Topic != want {
			t.Fatalf("snapshot %+v (%v), want the open alarm of %s", d.Alarm, d.Snapshot, want)
		}
	}
	for range 2 {
		if d := next(t, f); d.Event == nil || !d.Snapshot {
			t.Fatalf("%+v, want a current value", d)
		}
	}
	noDelivery(t, f)

	// Acknowledged: the transition, live.
	as, _, _ := b.ListAlarms(ctx, bridge.Identity{}, bridge.AlarmQuery{Filter: "alarm/1"})
	if _, err := b.AckAlarm(ctx, bridge.Identity{}, as[0].ID, ""); err != nil {
		t.Fatal(err)
	}
	if d := nextAlarm(t, f); d.Snapshot || !d.Alarm.Acknowledged || d.Alarm.Rev != 2 {
		t.Fatalf("acknowledged: %+v", d.Alarm)
	}
	noDelivery(t, plain)
}
