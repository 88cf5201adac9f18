package bridge

import "time"

// Metrics receives the events the bridge and its consumers (the WebSocket
// and SSE endpoints) count. internal/metrics implements it with Prometheus;
// the default, NoMetrics, discards everything. Implementations must be
// safe for concurrent use and must not block.
type Metrics interface {
	// Published counts a publish by QoS and outcome: "ok", or the error
	// code of the failure (ErrorCode).
	Published(qos byte, outcome string)
	// StoreCall observes one store call: op is "put", "get", "list",
	// "after" or "ping"; err is its error (ErrNotFound is not an error).
	StoreCall(op string, d time.Duration, err error)
	// Ingested counts a message the ingest wrote to the store;
	// IngestStoreError a failed attempt to write one.
	Ingested(broker string)
	IngestStoreError(broker string)
	// IngestLease reports whether this instance holds a broker's ingest
	// lease.
	IngestLease(broker string, held bool)
	// TailLag observes now − received_at of a message the tail delivered.
	TailLag(d time.Duration)
	// TailGap counts messages the tail lost: they left the history window
	// before it read them (Gap.Lost).
	TailGap(lost int64)
	// StreamOpened and StreamClosed count the open streams of a kind
	// ("ws", "sse"); Delivered counts a message written to one;
	// SlowClosed counts one closed because its queue was full.
	StreamOpened(kind string)
	StreamClosed(kind string)
	Delivered(kind string)
	SlowClosed(kind string)
	// QueueDropped counts a message that did not fit in a feed's queue.
	QueueDropped(kind string)
}

// NoMetrics is the Metrics that counts nothing.
type NoMetrics struct{}

var _ Metrics = NoMetrics{}

func (NoMetrics) Published(byte, string)                 {}
func (NoMetrics) StoreCall(string, time.Duration, error) {}
func (NoMetrics) Ingested(string)                        {}
func (NoMetrics) IngestStoreError(string)                {}
func (NoMetrics) IngestLease(string, bool)               {}
func (NoMetrics) TailLag(time.Duration)                  {}
func (NoMetrics) TailGap(int64)                          {}
func (NoMetrics) StreamOpened(string)                    {}
func (NoMetrics) StreamClosed(string)                    {}
func (NoMetrics) Delivered(string)                       {}
func (NoMetrics) SlowClosed(string)                      {}
func (NoMetrics) QueueDropped(string)                    {}
func (NoMetrics) Subscriptions(int)                      {}

// Subscriptions is the number of live subscriptions (filters of local
// feeds).
func (b *Bridge) Subscriptions() int { return b.hub.len() }

// Metrics is the bridge's metrics sink, for the endpoints that serve
// streams.
func (b *Bridge) Metrics() Metrics { return b.cfg.Metrics }

// Drain starts a graceful shutdown: Problems reports "draining" first, so
// that load balancers stop sending traffic, Draining is closed, so that
// long-lived streams end and new ones are refused. Safe to call twice.
func (b *Bridge) Drain() { b.drainOnce.Do(func() { close(b.draining) }) }

// Draining is closed once Drain was called.
func (b *Bridge) Draining() <-chan struct{} { return b.draining }

// IsDraining reports whether Drain was called.
func (b *Bridge) IsDraining() bool {
	select {
	case <-b.draining:
		return true
	default:
		return false
	}
}

// timeStore runs a store call and reports it to the metrics.
func timeStore[T any](b *Bridge, op string, call func() (T, error)) (T, error) {
	start := time.Now()
	v, err := call()
	b.cfg.Metrics.StoreCall(op, time.Since(start), err)
	return v, err
}
