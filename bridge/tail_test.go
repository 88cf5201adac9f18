package bridge_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// scriptedTail is a shared store whose tail reports what the test sends.
type scriptedTail struct {
	*memory.Store
	items chan any // []bridge.Message or bridge.Gap
}

func (s *scriptedTail) Tail(ctx context.Context, _ string, fn func([]bridge.Message), gap func(bridge.Gap)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it := <-s.items:
			switch it := it.(type) {
			case []bridge.Message:
				fn(it)
			case bridge.Gap:
				gap(it)
			}
		}
	}
}

type gapMetrics struct {
	bridge.NoMetrics
	lost atomic.Int64
}

func (m *gapMetrics) TailGap(n int64) { m.lost.Add(n) }

// A gap in the tail reaches every feed, whatever its filters, in order
// between the messages around it; the metric and a warning count it.
func TestTailGapReachesFeeds(t *testing.T) {
	mem, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &scriptedTail{Store: mem, items: make(chan any)}
	var logs testenv.SyncBuffer
	metrics := &gapMetrics{}
	b, err := bridge.New(bridge.Config{Store: store, Metrics: metrics, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute(bridge.Route{Filters: []string{"#"}, Upstream: &recorder{}}); err != nil {
		t.Fatal(err)
	}
	b.Start(t.Context())
	defer b.Close()
	for b.StoreReady(t.Context()) != nil { // the tail starts in the background
		time.Sleep(time.Millisecond)
	}

	a := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{})
	defer a.Close()
	other := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{})
	defer other.Close()
	idle := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{}) // no subscription
	defer idle.Close()
	for f, filter := range map[*bridge.Feed]string{a: "a/#", other: "b"} {
		if err := f.Subscribe(t.Context(), []string{filter}, bridge.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gap := bridge.Gap{After: "5-0", Next: "9-0", Lost: 3, Exact: true}
	store.items <- []bridge.Message{{ID: "5-0", Topic: "a/1"}}
	store.items <- gap
	store.items <- []bridge.Message{{ID: "9-0", Topic: "a/2"}}

	next := func(f *bridge.Feed) bridge.Delivery {
		t.Helper()
		select {
		case d := <-f.C():
			f.Took(d)
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
			return bridge.Delivery{}
		}
	}
	if d := next(a); d.Event == nil || d.Event.ID != "5-0" {
		t.Fatalf("first %+v, want 5-0", d)
	}
	if d := next(a); d.Gap == nil || *d.Gap != gap || d.Event != nil {
		t.Fatalf("second %+v, want the gap", d)
	}
	if d := next(a); d.Event == nil || d.Event.ID != "9-0" {
		t.Fatalf("third %+v, want 9-0", d)
	}
	if d := next(other); d.Gap == nil || *d.Gap != gap {
		t.Fatalf("the feed on b got %+v, want the gap", d)
	}
	if idle.Len() != 0 || other.Len() != 0 {
		t.Fatalf("queued: idle %d, other %d", idle.Len(), other.Len())
	}
	if n := metrics.lost.Load(); n != 3 {
		t.Fatalf("TailGap counted %d, want 3", n)
	}
	if log := logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "lost=3") ||
		!strings.Contains(log, "after_id=5-0") || !strings.Contains(log, "next_id=9-0") {
		t.Fatalf("log:\n%s", log)
	}
}
