package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// RunTail runs the conformance suite of bridge.Tailer, for stores whose
// history several instances share. newTailer returns a new, empty store
// with the history window w and its Tailer (usually the same value), for
// one subtest, and arranges its cleanup.
func RunTail(t *testing.T, newTailer func(t *testing.T, w Window) (bridge.Store, bridge.Tailer)) {
	tests := []struct {
		name string
		fn   func(*testing.T, bridge.Store, bridge.Tailer)
		w    Window
	}{
		{"Gap", testTailGap, Window{Size: 10}},
		{"GapBeforeCaughtUp", testTailGapBeforeCaughtUp, Window{Size: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, tl := newTailer(t, tt.w)
			tt.fn(t, s, tl)
		})
	}
}

// tailEvent is what a tail reported: a message id, or a gap.
type tailEvent struct {
	id  string
	gap *bridge.Gap
}

func (e tailEvent) String() string {
	if e.gap != nil {
		return fmt.Sprintf("gap%+v", *e.gap)
	}
	return e.id
}

// pausedTail tails s from after. Its first batch blocks until release is
// closed, as a tail that falls behind (paused, overloaded, cut off).
// events receives every message and gap, in order.
type pausedTail struct {
	events  chan tailEvent
	first   chan struct{} // closed when the first batch arrived
	release chan struct{}
}

func startPausedTail(t *testing.T, tl bridge.Tailer, after string) *pausedTail {
	t.Helper()
	p := &pausedTail{events: make(chan tailEvent, 10000), first: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var once sync.Once
	wg.Go(func() {
		_ = tl.Tail(ctx, after, func(msgs []bridge.Message) {
			for _, m := range msgs {
				p.events <- tailEvent{id: m.ID}
			}
			once.Do(func() {
				close(p.first)
				<-p.release
			})
		}, func(g bridge.Gap) { p.events <- tailEvent{gap: &g} })
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return p
}

// next returns the next n events, failing after 10 s.
func (p *pausedTail) next(t *testing.T, n int) []tailEvent {
	t.Helper()
	var out []tailEvent
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e := <-p.events:
			out = append(out, e)
		case <-timeout:
			t.Fatalf("the tail reported %v, want %d events", out, n)
		}
	}
	return out
}

func putTail(t *testing.T, s bridge.Store, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = put(t, s, bridge.Message{Topic: fmt.Sprintf("tail/%d", i%3), Payload: []byte{byte(i)}}).ID
	}
	return out
}

// testTailGap: a tail that falls behind the window (10 messages) by 40
// reports a gap of exactly 40 between the last message it delivered and
// the oldest one left, and continues from there.
func testTailGap(t *testing.T, s bridge.Store, tl bridge.Tailer) {
	putTail(t, s, 3)
	p := startPausedTail(t, tl, lastID(t, s))
	first := putTail(t, s, 1)[0]
	<-p.first // the tail holds the first batch: it is paused
	lost := putTail(t, s, 40)
	kept := putTail(t, s, 10)
	close(p.release)

	want := []tailEvent{{id: first}, {gap: &bridge.Gap{After: first, Next: kept[0], Lost: int64(len(lost)), Exact: true}}}
	for _, id := range kept {
		want = append(want, tailEvent{id: id})
	}
	if got := p.next(t, len(want)); !slices.EqualFunc(got, want, sameEvent) {
		t.Fatalf("the tail reported\n%v\nwant\n%v", got, want)
	}
	later := putTail(t, s, 2)
	if got := p.next(t, 2); got[0].id != later[0] || got[1].id != later[1] {
		t.Fatalf("then the tail reported %v, want %q", got, later)
	}
}

// testTailGapBeforeCaughtUp: a tail that falls behind the window before it
// ever read up to the end of the history reports the gap where messages
// went missing, and how many.
func testTailGapBeforeCaughtUp(t *testing.T, s bridge.Store, tl bridge.Tailer) {
	after := putTail(t, s, 1)[0]
	backlog := putTail(t, s, 600) // more than one read of the tail
	p := startPausedTail(t, tl, after)
	<-p.first
	more := putTail(t, s, 1000) // the window (1000) no longer holds the backlog
	close(p.release)
	later := putTail(t, s, 1)
	all := slices.Concat(backlog, more, later)

	var got []tailEvent
	for len(got) == 0 || got[len(got)-1].id != later[0] {
		got = append(got, p.next(t, 1)...)
	}
	isGap := func(e tailEvent) bool { return e.gap != nil }
	i := slices.IndexFunc(got, isGap)
	if i < 1 || slices.IndexFunc(got[i+1:], isGap) >= 0 {
		t.Fatalf("the tail reported %v, want one gap after the first message", got)
	}
	// The window may have dropped the first of more too, before the tail
	// read again.
	lost := slices.Index(all, got[i+1].id) - slices.Index(all, got[i-1].id) - 1
	if want := (bridge.Gap{After: got[i-1].id, Next: got[i+1].id, Lost: int64(lost), Exact: true}); *got[i].gap != want {
		t.Fatalf("gap %+v, want %+v", *got[i].gap, want)
	}
	var before []string
	for _, e := range got[:i] {
		before = append(before, e.id)
	}
	if !slices.Equal(before, backlog[:i]) {
		t.Fatalf("before the gap the tail delivered %q, want the backlog's first %d", before, i)
	}
}

func sameEvent(a, b tailEvent) bool {
	if (a.gap == nil) != (b.gap == nil) {
		return false
	}
	if a.gap != nil {
		return *a.gap == *b.gap
	}
	return a.id == b.id
}
