package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
)

const ns = "mqttbridge"

// Broker is an upstream connection as the metrics read it (bridge/mqtt's
// Conn).
type Broker interface {
	Name() string
	Connected() bool
	Reconnects() uint64
}

// Webhooks are the webhooks as the metrics read them (webhook.Manager).
type Webhooks interface {
	Names() []string
	Stats(name string) (webhook.Stats, bool)
}

// Metrics is one instance's registry and the metrics in it. It implements
// bridge.Metrics.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	published    *prometheus.CounterVec
	storeDur     *prometheus.HistogramVec
	storeErrs    *prometheus.CounterVec
	ingested     *prometheus.CounterVec
	ingestErrs   *prometheus.CounterVec
	leaseHeld    *prometheus.GaugeVec
	tailLag      prometheus.Gauge
	tailGap      prometheus.Counter
	streams      *prometheus.GaugeVec
	delivered    *prometheus.CounterVec
	drops        *prometheus.CounterVec
	slowClosed   *prometheus.CounterVec
	deliveredBy  map[string]prometheus.Counter // delivered's counters of the known kinds; read-only after New

	bridge atomic.Pointer[bridge.Bridge]
	ext    *external
}

var _ bridge.Metrics = (*Metrics)(nil)

// New returns the metrics in a new registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, ext: &external{}}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
		Help: "HTTP requests by method, route template and status."}, []string{"method", "route", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
		Help: "HTTP request latency by method and route template (streams: their whole life).", Buckets: prometheus.DefBuckets},
		[]string{"method", "route"})
	m.published = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "publishes_total",
		Help: "Publishes to the brokers by QoS and outcome (ok, or the error code); HTTP and /v1/ws publishes are ok once the broker acknowledged them, /mqtt publishes once passed to the broker."}, []string{"qos", "outcome"})
	m.storeDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "store_call_duration_seconds",
		Help: "Store call latency by operation.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
		[]string{"op"})
	m.storeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_errors_total",
		Help: "Store calls that failed, by operation (not found is no failure)."}, []string{"op"})
	m.ingested = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ingest_messages_total",
		Help: "Messages the ingest wrote to the store, by broker."}, []string{"broker"})
	m.ingestErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ingest_store_errors_total",
		Help: "Failed attempts of the ingest to write a message, by broker."}, []string{"broker"})
	m.leaseHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "ingest_lease_held",
		Help: "1 while this instance holds the broker's ingest lease."}, []string{"broker"})
	m.tailLag = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "tail_lag_seconds",
		Help: "Now minus received_at of the last message the history tail delivered."})
	m.tailGap = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tail_gap_messages_total",
		Help: "Messages the history tail lost: they left the history window before it read them (at least this many). Only with Redis."})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "stream_connections",
		Help: "Open streams by kind (ws, sse, longpoll, mqtt)."}, []string{"kind"})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_delivered_total",
		Help: "Messages written to stream clients, by kind."}, []string{"kind"})
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "queue_drops_total",
		Help: "Messages that did not fit in a client's queue, by kind."}, []string{"kind"})
	m.slowClosed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "slow_client_disconnects_total",
		Help: "Stream clients closed because their queue was full, by kind."}, []string{"kind"})
	subs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "subscriptions",
		Help: "Live subscriptions (filters of open streams) on this instance."}, func() float64 {
		if b := m.bridge.Load(); b != nil {
			return float64(b.Subscriptions())
		}
		return 0
	})
	m.deliveredBy = map[string]prometheus.Counter{}
	for _, s := range []string{"ws", "sse", "longpoll", "mqtt"} { // present from the start
		m.streams.WithLabelValues(s)
		m.deliveredBy[s] = m.delivered.WithLabelValues(s)
		m.drops.WithLabelValues(s)
		m.slowClosed.WithLabelValues(s)
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.published, m.storeDur, m.storeErrs, m.ingested, m.ingestErrs,
		m.leaseHeld, m.tailLag, m.tailGap, m.streams, m.delivered, m.drops, m.slowClosed, subs, m.ext, backlog{&m.bridge},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the instance's registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// WatchBridge reads the number of subscriptions from b.
func (m *Metrics) WatchBridge(b *bridge.Bridge) { m.bridge.Store(b) }

// AddBroker reads the connection state and reconnects of a broker.
func (m *Metrics) AddBroker(b Broker) {
	m.ext.mu.Lock()
	defer m.ext.mu.Unlock()
	m.ext.brokers = append(m.ext.brokers, b)
}

// WatchWebhooks reads the webhooks' statistics.
func (m *Metrics) WatchWebhooks(w Webhooks) {
	m.ext.mu.Lock()
	defer m.ext.mu.Unlock()
	m.ext.webhooks = w
}

// ObserveHTTP counts an HTTP request; route is the route template ("" for
// no route: counted as "unmatched").
func (m *Metrics) ObserveHTTP(method, route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(d.Seconds())
}

// Published implements bridge.Metrics.
func (m *Metrics) Published(qos byte, outcome string) {
	m.published.WithLabelValues(strconv.Itoa(int(qos)), outcome).Inc()
}

// StoreCall implements bridge.Metrics.
func (m *Metrics) StoreCall(op string, d time.Duration, err error) {
	m.storeDur.WithLabelValues(op).Observe(d.Seconds())
	if err != nil && bridge.ErrorCode(err) != bridge.ECodeNotFound {
		m.storeErrs.WithLabelValues(op).Inc()
	}
}

// Ingested implements bridge.Metrics.
func (m *Metrics) Ingested(broker string) { m.ingested.WithLabelValues(broker).Inc() }

// IngestStoreError implements bridge.Metrics.
func (m *Metrics) IngestStoreError(broker string) { m.ingestErrs.WithLabelValues(broker).Inc() }

// IngestLease implements bridge.Metrics.
func (m *Metrics) IngestLease(broker string, held bool) {
	v := 0.0
	if held {
		v = 1
	}
	m.leaseHeld.WithLabelValues(broker).Set(v)
}

// TailLag implements bridge.Metrics.
func (m *Metrics) TailLag(d time.Duration) { m.tailLag.Set(max(d, 0).Seconds()) }

// TailGap implements bridge.Metrics.
func (m *Metrics) TailGap(lost int64) { m.tailGap.Add(float64(lost)) }

// StreamOpened implements bridge.Metrics.
func (m *Metrics) StreamOpened(kind string) { m.streams.WithLabelValues(kind).Inc() }

// StreamClosed implements bridge.Metrics.
func (m *Metrics) StreamClosed(kind string) { m.streams.WithLabelValues(kind).Dec() }

// Delivered implements bridge.Metrics.
func (m *Metrics) Delivered(kind string) {
	if c, ok := m.deliveredBy[kind]; ok { // once per message per client: no label hashing
		c.Inc()
		return
	}
	m.delivered.WithLabelValues(kind).Inc()
}

// SlowClosed implements bridge.Metrics.
func (m *Metrics) SlowClosed(kind string) { m.slowClosed.WithLabelValues(kind).Inc() }

// QueueDropped implements bridge.Metrics.
func (m *Metrics) QueueDropped(kind string) { m.drops.WithLabelValues(kind).Inc() }

// external collects, when scraped, the state other parts keep: broker
// connections and webhook statistics.
type external struct {
	mu       sync.Mutex
	brokers  []Broker
	webhooks Webhooks
}

var (
	descConnected = prometheus.NewDesc(ns+"_upstream_connected", "1 while the connection to the broker is up.", []string{"broker"}, nil)
	descReconn    = prometheus.NewDesc(ns+"_upstream_reconnects_total", "Connections to the broker made after the first.", []string{"broker"}, nil)
	descWHAttempt = prometheus.NewDesc(ns+"_webhook_attempts_total", "Webhook requests sent by this instance.", []string{"webhook"}, nil)
	descWHFail    = prometheus.NewDesc(ns+"_webhook_failures_total", "Webhook attempts that failed (not 2xx, timeout, no connection).", []string{"webhook"}, nil)
	descWHDead    = prometheus.NewDesc(ns+"_webhook_dead_letters_total", "Messages given up on and dead-lettered.", []string{"webhook"}, nil)
	descWHOK      = prometheus.NewDesc(ns+"_webhook_delivered_total", "Messages delivered with a 2xx answer.", []string{"webhook"}, nil)
	descWHHolding = prometheus.NewDesc(ns+"_webhook_lease_held", "1 while this instance delivers the webhook.", []string{"webhook"}, nil)
)

func (e *external) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descReconn, descWHAttempt, descWHFail, descWHDead, descWHOK, descWHHolding} {
		ch <- d
	}
}

func (e *external) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	brokers, wh := e.brokers, e.webhooks
	e.mu.Unlock()
	for _, b := range brokers {
		up := 0.0
		if b.Connected() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, up, b.Name())
		ch <- prometheus.MustNewConstMetric(descReconn, prometheus.CounterValue, float64(b.Reconnects()), b.Name())
	}
	if wh == nil {
		return
	}
	for _, name := range wh.Names() {
		st, ok := wh.Stats(name)
		if !ok {
			continue
		}
		holding := 0.0
		if st.Holding {
			holding = 1
		}
		ch <- prometheus.MustNewConstMetric(descWHAttempt, prometheus.CounterValue, float64(st.Attempts), name)
		ch <- prometheus.MustNewConstMetric(descWHFail, prometheus.CounterValue, float64(st.Failures), name)
		ch <- prometheus.MustNewConstMetric(descWHDead, prometheus.CounterValue, float64(st.DeadLettered), name)
		ch <- prometheus.MustNewConstMetric(descWHOK, prometheus.CounterValue, float64(st.Delivered), name)
		ch <- prometheus.MustNewConstMetric(descWHHolding, prometheus.GaugeValue, holding, name)
	}
}

var (
	descBacklog = prometheus.NewDesc(ns+"_tail_backlog_messages",
		"History entries recorded (by any instance's ingest) that this instance's tail has not delivered yet, counted up to 1000. Only with Redis.", nil, nil)
	descOldest = prometheus.NewDesc(ns+"_tail_oldest_undelivered_seconds",
		"Age (now minus received_at) of the oldest history entry this instance's tail has not delivered yet; 0 when it is caught up. Only with Redis.", nil, nil)
)

// backlog reads, when scraped, how far the bridge's history tail is
// behind (bridge.TailBacklog); it exposes nothing without a shared store
// or when the store does not answer in time.
type backlog struct {
	b *atomic.Pointer[bridge.Bridge]
}

func (backlog) Describe(ch chan<- *prometheus.Desc) { ch <- descBacklog; ch <- descOldest }

func (l backlog) Collect(ch chan<- prometheus.Metric) {
	b := l.b.Load()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, oldest, ok, _ := b.TailBacklog(ctx)
	if !ok {
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest), 0).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
}
