package bridge

import (
	"context"
	"time"
)

// errTailNotStarted: the store is shared, and this instance has not yet
// read where its history ends, so it cannot deliver live messages.
var errTailNotStarted = &Error{Code: ECodeStoreUnavailable,
	Message: "the store has not answered since this instance started; retry when it does"}

// runTail waits until the store tells the newest message id, retrying with
// backoff (up to 2 s apart) while it does not answer, and then tails the
// history from there until ctx ends, handing every recorded message to the
// local subscribers. Until then Problems reports it and streams are
// refused (StoreReady).
func (b *Bridge) runTail(ctx context.Context, t Tailer) {
	after, err := b.cfg.Store.LastID(ctx)
	for pause := 100 * time.Millisecond; err != nil; pause = min(pause*2, 2*time.Second) {
		if pause == 100*time.Millisecond {
			b.log.Warn("the store does not answer; streams start when it does", "err", err)
		}
		sleep(ctx, pause)
		if ctx.Err() != nil {
			return
		}
		if after, err = b.cfg.Store.LastID(ctx); err == nil {
			b.log.Info("the store answers; streams start")
		}
	}
	b.tailAt.Store(&after)
	_ = t.Tail(ctx, after, func(msgs []Message) {
		for _, m := range msgs {
			b.hub.publish(NewEvent(m))
		}
		b.wakeAlarms()
		if n := len(msgs); n > 0 {
			last := msgs[n-1].ID // a copy: a pointer into msgs would keep the whole batch alive
			b.tailAt.Store(&last)
			if !msgs[n-1].ReceivedAt.IsZero() {
				b.cfg.Metrics.TailLag(time.Since(msgs[n-1].ReceivedAt))
			}
		}
	}, b.tailGap)
}

// tailDown is errTailNotStarted while the store is shared and its history
// tail has not started, else nil.
func (b *Bridge) tailDown() error {
	if _, tailed := b.cfg.Store.(Tailer); tailed && b.tailAt.Load() == nil {
		return errTailNotStarted
	}
	return nil
}

// StoreReady reports whether reads and streams can be served now: the
// store answers, and when it is shared the history tail runs. Handlers
// that answer before the store is used (a stream's header, a WebSocket
// upgrade) call it first, so that the client gets a 503 with Retry-After
// instead of a stream that fails.
func (b *Bridge) StoreReady(ctx context.Context) error {
	if err := b.tailDown(); err != nil {
		return err
	}
	_, err := timeStore(b, "ping", func() (struct{}, error) { return struct{}{}, b.cfg.Store.Ping(ctx) })
	return err
}

// Gap is a hole in the history tail: the messages recorded after After and
// before Next left the history window before this instance's tail read
// them, so its clients never got them.
type Gap struct {
	// After is the id of the last message the tail read before the hole.
	After string
	// Next is the id of the oldest message still in the window, the first
	// one the tail reads after the hole.
	Next string
	// Lost is how many messages (of every topic) fell into the hole:
	// exactly that many when Exact, else at least that many.
	Lost  int64
	Exact bool
}

// tailGap reports a hole in the history tail (Tailer) and tells every local
// feed, in order with the messages around it.
func (b *Bridge) tailGap(g Gap) {
	b.cfg.Metrics.TailGap(g.Lost)
	lost := "exactly"
	if !g.Exact {
		lost = "at least"
	}
	b.log.Warn("the history tail fell behind the history window: messages were lost to this instance's clients (raise history.size or history.age, or give the instance more CPU)",
		"lost", g.Lost, "count", lost, "after_id", g.After, "next_id", g.Next)
	b.hub.publishGap(&Event{Message: Message{ID: g.Next}, gap: &g})
}
