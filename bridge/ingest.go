package bridge

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// IngestConn is a broker's ingest subscription, held by the instance that
// holds the broker's ingest lease.
type IngestConn interface {
	// Problems lists why the subscription is not working; empty when it is.
	Problems() []string
	// Close ends the subscription; unacknowledged messages stay with the
	// broker for the next holder.
	Close(ctx context.Context) error
}

// IngestFunc opens a broker's ingest subscription: a connection subscribed
// to the route's filters that hands every message to handle, in order, in
// batches of those that arrived while handle was busy with the last batch
// (a group commit: they are written in one store call), and acknowledges
// them to the broker only when handle returns true. handle must not keep
// the slice.
type IngestFunc func(ctx context.Context, handle func([]Message) bool) (IngestConn, error)

// BatchStore is a Store that records several messages in one atomic step
// (the Redis store: one script call). With lease not "", it records
// nothing and returns ErrFenced unless token holds the lease, as
// FencedStore does.
type BatchStore interface {
	PutBatch(ctx context.Context, msgs []Message, lease, token string) ([]Message, error)
}

// putBatch records msgs for the ingest, fenced by the lease when the store
// is shared: all in one call on a BatchStore, else one at a time. It
// returns what it recorded, a prefix of msgs, and the error that stopped
// it.
func (b *Bridge) putBatch(ctx context.Context, msgs []Message, lease, token string) ([]Message, error) {
	fenced, isFenced := b.cfg.Store.(FencedStore)
	if bs, ok := b.cfg.Store.(BatchStore); ok {
		if !isFenced {
			lease, token = "", ""
		}
		return timeStore(b, "put", func() ([]Message, error) { return bs.PutBatch(ctx, msgs, lease, token) })
	}
	stored := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out, err := timeStore(b, "put", func() (Message, error) {
			if isFenced {
				return fenced.PutFenced(ctx, m, lease, token)
			}
			return b.cfg.Store.Put(ctx, m)
		})
		if err != nil {
			return stored, err
		}
		stored = append(stored, out)
	}
	return stored, nil
}

// ingestState is what one route's ingest loop shares with Problems.
type ingestState struct {
	mu      sync.Mutex
	holding bool
	conn    IngestConn
	lastErr string
}

// Start runs the background work: for each route with an Ingest, the loop
// that takes the broker's ingest lease and, while holding it, writes what
// the broker delivers; and, when the store is shared (a Tailer), the tail
// that hands every recorded message to the local subscribers. Close stops
// it.
func (b *Bridge) Start(ctx context.Context) {
	ctx, b.stop = context.WithCancel(ctx)
	for i := range b.routes {
		if b.routes[i].Ingest != nil {
			b.wg.Add(1)
			go b.runIngest(ctx, &b.routes[i])
		}
	}
	if len(b.al.cfgs) > 0 {
		b.wg.Add(1)
		go b.runAlarms(ctx)
		if b.al.tail != nil {
			b.wg.Add(1)
			go b.runAlarmTail(ctx)
		}
	}
	if t, ok := b.cfg.Store.(Tailer); ok {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.runTail(ctx, t)
		}()
	}
}

// Close stops what Start started, releasing held leases, and waits.
func (b *Bridge) Close() {
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
}

// runIngest takes the route's ingest lease whenever it is free and holds
// it until it is lost or ctx ends.
func (b *Bridge) runIngest(ctx context.Context, r *Route) {
	defer b.wg.Done()
	name := "ingest:" + r.Upstream.Name()
	ttl := b.cfg.LeaseTTL
	for ctx.Err() == nil {
		token, ok, err := b.leases.Acquire(ctx, name, ttl)
		switch {
		case err != nil:
			r.state.set(false, nil, "taking the ingest lease: "+err.Error())
		case ok:
			b.log.Info("holding the ingest lease", "broker", r.Upstream.Name())
			b.holdIngest(ctx, r, name, token)
			b.log.Info("gave up the ingest lease", "broker", r.Upstream.Name())
			continue // try again at once: it may be free
		default:
			r.state.set(false, nil, "") // another instance ingests
		}
		// Someone else holds it; try again a little after it could expire.
		sleep(ctx, ttl/3+time.Duration(rand.Int64N(int64(ttl/6)+1)))
	}
}

// holdIngest runs the ingest subscription while token holds the lease.
func (b *Bridge) holdIngest(ctx context.Context, r *Route, name, token string) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ttl := b.cfg.LeaseTTL
	_, tailed := b.cfg.Store.(Tailer)

	broker := r.Upstream.Name()
	var spans []trace.Span
	handle := func(ms []Message) bool {
		spans = spans[:0]
		for i := range ms {
			spans = append(spans, b.startIngest(broker, &ms[i]))
		}
		defer func() {
			for i, span := range spans {
				span.End() // after ingested or spanError; ending twice is a no-op
				spans[i] = nil
			}
		}()
		pause := 50 * time.Millisecond
		for done := 0; hctx.Err() == nil; {
			sctx, scancel := context.WithTimeout(hctx, b.cfg.StoreTimeout)
			stored, err := b.putBatch(sctx, ms[done:], name, token)
			scancel()
			for i := range stored {
				ingested(spans[done+i], &stored[i])
				b.cfg.Metrics.Ingested(broker)
				if !tailed {
					b.hub.publish(NewEvent(stored[i]))
					b.wakeAlarms()
				}
			}
			b.ingested.Add(uint64(len(stored)))
			done += len(stored)
			switch {
			case err == nil:
				return true
			case errors.Is(err, ErrFenced):
				for _, span := range spans[done:] {
					spanError(span, err)
				}
				b.log.Warn("another instance holds the ingest lease; stopping ingest", "broker", broker)
				cancel()
				return false
			}
			// The store is down: hold the messages (and the broker's flow)
			// until it answers or the lease is lost.
			b.cfg.Metrics.IngestStoreError(broker)
			if span := spans[done]; span.IsRecording() {
				span.AddEvent("store failed; retrying", trace.WithAttributes(attribute.String("error", err.Error())))
			}
			if b.ingestErrs.Add(1)%50 == 1 {
				b.log.Warn("storing an incoming message failed; retrying", "broker", broker, "err", err)
			}
			r.state.set(true, nil, "storing an incoming message: "+err.Error())
			sleep(hctx, pause)
			pause = min(pause*2, time.Second)
		}
		for _, span := range spans {
			spanError(span, context.Cause(hctx))
		}
		return false
	}
	conn, err := r.Ingest(hctx, handle)
	if err != nil {
		r.state.set(false, nil, "opening the ingest subscription: "+err.Error())
		b.release(name, token)
		sleep(ctx, ttl/3)
		return
	}
	r.state.set(true, conn, "")
	b.cfg.Metrics.IngestLease(r.Upstream.Name(), true)
	defer b.cfg.Metrics.IngestLease(r.Upstream.Name(), false)

	switch err := keepLease(hctx, b.leases, name, token, ttl); {
	case errors.Is(err, errLeaseLost):
		b.log.Warn("the ingest lease was lost", "broker", r.Upstream.Name())
	case err != nil:
		b.log.Warn("cannot renew the ingest lease; stopping ingest", "broker", r.Upstream.Name(), "err", err)
	}
	cancel()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = conn.Close(cctx)
	ccancel()
	r.state.set(false, nil, "")
	b.release(name, token)
}

func (b *Bridge) release(name, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = b.leases.Release(ctx, name, token)
}

func (s *ingestState) set(holding bool, conn IngestConn, lastErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding, s.conn, s.lastErr = holding, conn, lastErr
}

// problems are the ingest problems of a route on this instance.
func (s *ingestState) problems(broker string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if s.lastErr != "" {
		out = append(out, "ingest of broker "+broker+": "+s.lastErr)
	}
	if s.holding && s.conn != nil {
		for _, p := range s.conn.Problems() {
			out = append(out, "ingest: "+p)
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// BacklogLimit bounds the count TailBacklog reports: beyond it a tail is
// simply far behind.
const BacklogLimit = 1000

// TailBacklog reports how far this instance's history tail is behind: the
// number of messages recorded after the last one it delivered (at most
// BacklogLimit) and the received_at of the oldest of them (zero when there
// are none). ok is false when the store is not shared or cannot tell
// (Backlogger), or before the tail started.
func (b *Bridge) TailBacklog(ctx context.Context) (n int, oldest time.Time, ok bool, err error) {
	bl, isBacklogger := b.cfg.Store.(Backlogger)
	at := b.tailAt.Load()
	if !isBacklogger || at == nil {
		return 0, time.Time{}, false, nil
	}
	n, oldest, err = bl.Backlog(ctx, *at, BacklogLimit)
	return n, oldest, err == nil, err
}
