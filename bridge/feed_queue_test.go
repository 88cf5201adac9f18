package bridge

import "testing"

// A drained Notify feed keeps at most keepQueue slots, and none after a
// burst: an idle connection holds no queue.
func TestFeedNotifyLetsQueueGo(t *testing.T) {
	b := &Bridge{hub: newHub()}
	f := b.NewFeed(Identity{}, FeedConfig{Notify: func() {}})
	defer f.Close()
	if f.q != nil {
		t.Fatal("a new Notify feed holds a queue")
	}
	s := &feedSub{filter: "t"}
	f.subs, f.list = map[string]*feedSub{"t": s}, []*feedSub{s}
	ev := NewEvent(Message{Topic: "t", ID: "1-0"})
	for _, n := range []int{10, 500} {
		for i := 0; i < n; i++ {
			f.deliver(ev)
		}
		if got := len(f.Take(nil, n)); got != n {
			t.Fatalf("took %d of %d", got, n)
		}
		if cap(f.q) > keepQueue {
			t.Fatalf("after %d deliveries the drained feed keeps %d slots", n, cap(f.q))
		}
	}
	if f.q != nil {
		t.Fatal("the queue of a burst was kept")
	}
}
