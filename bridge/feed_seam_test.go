package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// The seam between a snapshot or replay and the live flow, against the
// memory store: messages recorded before the subscription, messages that
// arrive while its snapshot or replay waits for the consumer (they are
// held, and some of them are read by the replay too), and messages after
// it went live. Every case checks that no message comes twice, that each
// topic's messages come in order, and that nothing is missing: every
// message expected is delivered, or (snapshot) a value of its topic at
// least as new.
func TestFeedSeam(t *testing.T) {
	const slot = bridge.DeliveryOverhead + 2 // a delivery of these payloads
	cases := []struct {
		name    string
		mode    string // "live", "snapshot" or "replay"
		topics  int    // messages go round-robin to t/0 … t/<topics-1>
		before  int    // recorded before Subscribe
		during  int    // arrive while the snapshot or replay waits
		after   int    // arrive once Subscribe returned
		replay0 int    // replay after the id of before[replay0-1] (0: from the start)
		// duringTopic, when set, is the topic of the "during" messages.
		duringTopic string
	}{
		{name: "live only", mode: "live", topics: 2, before: 5, after: 5},
		{name: "replay all, none during", mode: "replay", topics: 1, before: 30, after: 3},
		{name: "replay all, some during", mode: "replay", topics: 3, before: 30, during: 4, after: 3},
		{name: "replay from the middle", mode: "replay", topics: 2, before: 40, during: 3, after: 2, replay0: 10},
		{name: "replay from the newest", mode: "replay", topics: 2, before: 5, after: 4, replay0: 5},
		{name: "snapshot, none during", mode: "snapshot", topics: 30, before: 60, after: 5},
		{name: "snapshot, same topics during", mode: "snapshot", topics: 30, before: 30, during: 4, after: 3},
		{name: "snapshot of one topic, new values during", mode: "snapshot", topics: 1, before: 3, after: 3},
		// The snapshot reads 1,000 topics a page: values that arrive while
		// it waits on the first page are held, and the second page reads
		// them as current values.
		{name: "snapshot, held values on its next page", mode: "snapshot", topics: 1100, before: 1100, during: 3, after: 2, duringTopic: "t/999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := notifyBridge(t)
			// Room for 20 deliveries: a snapshot or replay waits once 10
			// are queued, so that "during" arrives while it waits.
			f := b.NewFeed(bridge.Identity{}, bridge.FeedConfig{QueueBytes: 20 * slot})
			defer f.Close()
			var all []bridge.Message // everything recorded, in order
			ingest := func(n int, topic string) {
				for i := 0; i < n; i++ {
					m := bridge.Message{Topic: fmt.Sprintf("t/%d", len(all)%tc.topics), Payload: fmt.Appendf(nil, "%02d", len(all)%100)}
					if topic != "" {
						m.Topic = topic
					}
					b.Ingest(m)
					id, err := b.LastID(ctx)
					if err != nil {
						t.Fatal(err)
					}
					m.ID = id
					all = append(all, m)
				}
			}
			ingest(tc.before, "")
			opts := bridge.SubscribeOptions{Snapshot: tc.mode == "snapshot"}
			if tc.mode == "replay" {
				opts.After = "0-1"
				if tc.replay0 > 0 {
					opts.After = all[tc.replay0-1].ID
				}
			}
			subscribed := make(chan error, 1)
			go func() { subscribed <- f.Subscribe(ctx, []string{"t/#"}, opts) }()

			var got []bridge.Delivery
			take := func() int {
				ds := f.Take(nil, 1000)
				for _, d := range ds {
					f.Took(d)
				}
				got = append(got, ds...)
				return len(ds)
			}
			if tc.during > 0 {
				// The snapshot or replay waits for the consumer now.
				waitUntil(t, "the queue half full", func() bool { return f.Len() > 10 })
				ingest(tc.during, tc.duringTopic)
			}
			// The consumer takes until Subscribe returned.
			for done := false; !done; {
				select {
				case err := <-subscribed:
					if err != nil {
						t.Fatal(err)
					}
					done = true
				case <-time.After(time.Millisecond):
				}
				take()
			}
			ingest(tc.after, "")
			take()

			// Expected: what the mode covers, of everything recorded.
			var want []bridge.Message
			switch tc.mode {
			case "live":
				want = all[tc.before:]
			case "replay":
				want = all[tc.replay0:]
			case "snapshot":
				last := map[string]bridge.Message{}
				for _, m := range all[:tc.before] {
					last[m.Topic] = m
				}
				for _, m := range last {
					want = append(want, m)
				}
				want = append(want, all[tc.before:]...)
			}
			checkSeam(t, got, want)
			if err := f.Err(); err != nil {
				t.Fatalf("feed failed: %v", err)
			}
		})
	}
}

// checkSeam checks got against want: no id twice, each topic in order,
// every wanted message there or covered by a newer snapshot value of its
// topic, nothing else but snapshot values.
func checkSeam(t *testing.T, got []bridge.Delivery, want []bridge.Message) {
	t.Helper()
	seen := map[string]bool{}
	lastOf := map[string]string{} // topic → newest id delivered
	snapOf := map[string]string{} // topic → id of its snapshot value
	wanted := map[string]bool{}
	for _, m := range want {
		wanted[m.ID] = true
	}
	for _, d := range got {
		if d.Event == nil {
			t.Fatalf("a gap: %+v", d)
		}
		m := d.Event.Message
		if seen[m.ID] {
			t.Fatalf("%s (%s) twice", m.ID, m.Topic)
		}
		seen[m.ID] = true
		if prev, ok := lastOf[m.Topic]; ok {
			if c, _ := bridge.CompareIDs(m.ID, prev); c <= 0 {
				t.Fatalf("%s: %s after %s", m.Topic, m.ID, prev)
			}
		}
		lastOf[m.Topic] = m.ID
		if d.Snapshot {
			snapOf[m.Topic] = m.ID
		} else if !wanted[m.ID] {
			t.Fatalf("%s (%s) was not expected", m.ID, m.Topic)
		}
	}
	for _, m := range want {
		if seen[m.ID] {
			continue
		}
		if s, ok := snapOf[m.Topic]; ok {
			if c, _ := bridge.CompareIDs(s, m.ID); c >= 0 {
				continue
			}
		}
		t.Fatalf("%s (%s) is missing; got %d deliveries of %d wanted", m.ID, m.Topic, len(got), len(want))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}
