package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Config configures a Bridge. Zero values get the documented defaults.
type Config struct {
	// Store keeps last values; required.
	Store Store
	// Sessions keeps WebSocket sessions between connections (Resume,
	// Checkpoint); default NoSessions.
	Sessions Sessions
	// Authorizer checks every operation; default AllowAll.
	Authorizer Authorizer
	// MaxPayload is the largest payload accepted for publishing, in bytes;
	// default 1 MiB.
	MaxPayload int
	// StoreTimeout bounds each store call made while ingesting; default 2s.
	StoreTimeout time.Duration
	// Limiter rate-limits publishes and requests; default NoLimit.
	Limiter Limiter
	// Limits bound topics and connections (limits.go); zero values mean
	// the MQTT maximum or no limit.
	Limits Limits
	// Leases grants the ingest lease of each broker; default: the Store,
	// when it implements Leases (both stores do).
	Leases Leases
	// LeaseTTL is how long an ingest lease lasts without renewal: the
	// longest a dead holder delays ingest. Default 5s.
	LeaseTTL time.Duration
	// Metrics counts publishes, store calls, ingest and streams; default
	// NoMetrics.
	Metrics Metrics
	// TracerProvider makes the spans of publishes, requests and ingested
	// messages that carry a traceparent (trace.go); nil: tracing is off,
	// no span is made and no traceparent is added to a message.
	TracerProvider trace.TracerProvider
	// Logger; default discards.
	Logger *slog.Logger
}

// Route is one upstream broker and the topic filters it owns.
type Route struct {
	Filters  []string
	Upstream Upstream
	// Ingest opens the subscription to Filters that records the broker's
	// messages; the bridge runs it only while it holds the broker's ingest
	// lease. nil: the route is not ingested.
	Ingest IngestFunc

	state *ingestState
}

// Bridge is the core service: it validates and authorizes every operation,
// routes publishes to the broker that owns the topic, and records what the
// brokers deliver as last values.
type Bridge struct {
	cfg    Config
	routes []Route
	owners *topic.Trie[int] // route filters → index in routes
	hub    *hub
	conns  connCounter
	leases Leases
	log    *slog.Logger
	stop   context.CancelFunc
	wg     sync.WaitGroup

	replies replies // requests waiting for their reply (request.go)
	cursors cursors // seals List's cursors (cursor.go)

	ingested   atomic.Uint64
	ingestErrs atomic.Uint64

	tailAt atomic.Pointer[string] // the id of the last message the tail delivered (ingest.go)

	tracer trace.Tracer // trace.go
	traced bool         // Config.TracerProvider was given

	draining  chan struct{} // closed by Drain (metrics.go)
	drainOnce sync.Once
}

// New returns a Bridge with no routes; add them with AddRoute before use.
func New(cfg Config) (*Bridge, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("bridge: Config.Store is required")
	}
	if cfg.Authorizer == nil {
		cfg.Authorizer = AllowAll{}
	}
	if cfg.Sessions == nil {
		cfg.Sessions = NoSessions{}
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NoLimit{}
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Leases == nil {
		cfg.Leases, _ = cfg.Store.(Leases)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NoMetrics{}
	}
	b := &Bridge{cfg: cfg, owners: topic.NewTrie[int](), hub: newHub(), leases: cfg.Leases, log: cfg.Logger,
		draining: make(chan struct{})}
	if cfg.TracerProvider != nil {
		b.tracer, b.traced = cfg.TracerProvider.Tracer(tracerName), true
	}
	return b, nil
}

// AddRoute makes up the owner of filters. It must be called before the
// Bridge is used concurrently; filters must be valid and must not overlap
// those of another route (the configuration checks both).
func (b *Bridge) AddRoute(r Route) error {
	for _, f := range r.Filters {
		if err := topic.ValidateFilter(f); err != nil {
			return fmt.Errorf("bridge: route %q: filter %q: %w", r.Upstream.Name(), f, err)
		}
		for _, other := range b.routes {
			for _, g := range other.Filters {
				if topic.Overlap(f, g) {
					return fmt.Errorf("bridge: filter %q of %q overlaps %q of %q", f, r.Upstream.Name(), g, other.Upstream.Name())
				}
			}
		}
	}
	if r.Ingest != nil && b.leases == nil {
		return fmt.Errorf("bridge: route %q ingests, but there are no Leases", r.Upstream.Name())
	}
	for _, f := range r.Filters {
		b.owners.Add(f, len(b.routes))
	}
	r.state = &ingestState{}
	b.routes = append(b.routes, r)
	return nil
}

// MaxPayload is the configured payload limit in bytes.
func (b *Bridge) MaxPayload() int { return b.cfg.MaxPayload }

// route finds the upstream that owns a topic name.
func (b *Bridge) route(name string) (Upstream, error) {
	idx := -1
	b.owners.Match(name, func(_ string, i int) { idx = i })
	if idx < 0 {
		return nil, Errorf(ECodeNotBridged, "no configured broker bridges the topic %q", name)
	}
	return b.routes[idx].Upstream, nil
}

// Publish validates, authorizes and publishes msg to the broker that owns its
// topic, and returns the broker's answer (see Upstream.Publish).
func (b *Bridge) Publish(ctx context.Context, id Identity, msg Message) (PublishResult, error) {
	up, err := b.checkPublish(ctx, id, &msg)
	if err != nil {
		return PublishResult{}, err
	}
	if err := b.cfg.Limiter.Allow(id, ActionPublish); err != nil {
		return PublishResult{}, err
	}
	if msg.ReceivedAt.IsZero() {
		msg.ReceivedAt = time.Now()
	}
	res, err := b.send(ctx, up, msg)
	outcome := "ok"
	if err != nil {
		outcome = ErrorCode(err)
	}
	b.cfg.Metrics.Published(msg.QoS, outcome)
	return res, err
}

// CheckPublish runs every check Publish runs, without publishing. Batch
// publishing uses it to refuse a batch before any of it is sent.
func (b *Bridge) CheckPublish(ctx context.Context, id Identity, msg Message) error {
	_, err := b.checkPublish(ctx, id, &msg)
	return err
}

func (b *Bridge) checkPublish(ctx context.Context, id Identity, msg *Message) (Upstream, error) {
	if err := b.validateName(msg.Topic); err != nil {
		return nil, err
	}
	if msg.QoS > 2 {
		return nil, Errorf(ECodeInvalidRequest, "qos must be 0, 1 or 2")
	}
	if len(msg.Payload) > b.cfg.MaxPayload {
		return nil, Errorf(ECodePayloadTooLarge, "payload of %d bytes exceeds the limit of %d bytes", len(msg.Payload), b.cfg.MaxPayload)
	}
	if err := validateProperties(msg); err != nil {
		return nil, err
	}
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionPublish, msg.Topic); err != nil {
		return nil, err
	}
	// Whoever answers publishes to the response topic on the caller's
	// behalf: the caller must be allowed to publish there itself.
	if rt := msg.Properties.ResponseTopic; rt != "" {
		if err := b.cfg.Authorizer.Authorize(ctx, id, ActionPublish, rt); err != nil {
			if e, ok := errors.AsType[*Error](err); ok && e.Code == ECodeForbidden {
				return nil, Errorf(ECodeForbidden, "the response topic: %s", e.Message)
			}
			return nil, err
		}
	}
	return b.route(msg.Topic)
}

// Last returns the last value of an exact topic. It takes a read from the
// identity's budget (Limiter, ActionSubscribe).
func (b *Bridge) Last(ctx context.Context, id Identity, name string) (Message, error) {
	if err := b.validateName(name); err != nil {
		return Message{}, err
	}
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, name); err != nil {
		return Message{}, err
	}
	if _, err := b.route(name); err != nil {
		return Message{}, err
	}
	if err := b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
		return Message{}, err
	}
	return timeStore(b, "get", func() (Message, error) { return b.cfg.Store.Get(ctx, name) })
}

// List returns a page of last values of topics matching filter, ordered
// by topic name, and the cursor of the next page ("" when there is none);
// cursor is that of the previous page ("" for the first). limit is clamped
// to 1..1000 (0 means 100). Topics the identity may not read are left out
// (see listAllowed), so a page may hold fewer than limit messages, even
// none, and still have a next cursor.
//
// A cursor is opaque (cursors): it reveals no topic name, and is good only
// for the same identity and filter; any other is an *Error with
// ECodeInvalidCursor. Each call takes a read from the identity's budget
// (Limiter, ActionSubscribe).
func (b *Bridge) List(ctx context.Context, id Identity, filter, cursor string, limit int) ([]Message, string, error) {
	if err := b.validateFilter(filter); err != nil {
		return nil, "", err
	}
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	after := ""
	if cursor != "" {
		var err error
		if after, err = b.cursors.open(ctx, b.cfg.Store, id, filter, cursor); err != nil {
			return nil, "", err
		}
	}
	var (
		msgs []Message
		next string
	)
	err := b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, filter)
	switch {
	case err == nil:
		if err = b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
			return nil, "", err
		}
		msgs, err = timeStore(b, "list", func() (msgs []Message, err error) {
			msgs, next, err = b.cfg.Store.List(ctx, filter, after, limit)
			return msgs, err
		})
	case ErrorCode(err) == ECodeForbidden:
		msgs, next, err = b.listAllowed(ctx, id, filter, after, limit)
	}
	if err != nil || next == "" {
		return msgs, "", err
	}
	if next, err = b.cursors.seal(ctx, b.cfg.Store, id, filter, next); err != nil {
		return nil, "", err
	}
	return msgs, next, nil
}

// Delete clears the retained message of a topic on its broker (an empty
// retained QoS 1 publish) and its last value in the store.
func (b *Bridge) Delete(ctx context.Context, id Identity, name string) (PublishResult, error) {
	res, err := b.Publish(ctx, id, Message{Topic: name, QoS: 1, Retain: true})
	if err != nil {
		return res, err
	}
	return res, b.cfg.Store.Delete(ctx, name)
}

// Ingest records a message delivered by a broker. Adapters call it from
// their delivery goroutine; it never panics on store failure, it logs and
// counts.
func (b *Bridge) Ingest(msg Message) {
	span := b.startIngest("", &msg)
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.StoreTimeout)
	defer cancel()
	stored, err := b.cfg.Store.Put(ctx, msg)
	if err != nil {
		b.ingestErrs.Add(1)
		b.log.Warn("storing an incoming message failed", "topic", msg.Topic, "err", err)
		spanError(span, err)
		span.End()
		return
	}
	ingested(span, &stored)
	b.ingested.Add(1)
	if _, tailed := b.cfg.Store.(Tailer); !tailed {
		b.hub.publish(NewEvent(stored))
	}
}

// CheckSubscribe checks that id may subscribe to filter: a valid filter,
// inside what one configured broker bridges, and allowed by the authorizer.
func (b *Bridge) CheckSubscribe(ctx context.Context, id Identity, filter string) error {
	if err := b.validateFilter(filter); err != nil {
		return err
	}
	bridged := false
	for _, r := range b.routes {
		for _, f := range r.Filters {
			bridged = bridged || topic.Covers(f, filter)
		}
	}
	if !bridged {
		return Errorf(ECodeNotBridged, "the filter %q reaches beyond the bridged topics %v", truncate(filter), b.bridgedFilters())
	}
	return b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, filter)
}

func (b *Bridge) bridgedFilters() []string {
	var out []string
	for _, r := range b.routes {
		out = append(out, r.Filters...)
	}
	return out
}

// LastID is the newest message id the store has assigned ("0-0" when none).
func (b *Bridge) LastID(ctx context.Context) (string, error) { return b.cfg.Store.LastID(ctx) }

// Problems lists why the bridge is not ready: a broker not connected or
// not subscribed, a store that does not answer, or (shared store) a
// history tail not started yet. Empty means ready.
func (b *Bridge) Problems(ctx context.Context) []string {
	var out []string
	if b.IsDraining() {
		out = append(out, "draining: this instance is shutting down")
	}
	if len(b.routes) == 0 {
		out = append(out, "no broker configured")
	}
	for _, r := range b.routes {
		out = append(out, r.Upstream.Problems()...)
		out = append(out, r.state.problems(r.Upstream.Name())...)
	}
	if _, err := timeStore(b, "ping", func() (struct{}, error) { return struct{}{}, b.cfg.Store.Ping(ctx) }); err != nil {
		out = append(out, "store: "+err.Error())
	} else if b.tailDown() != nil {
		out = append(out, "store: the history tail has not started yet")
	}
	return out
}

func validateName(name string) error {
	if err := topic.ValidateName(name); err != nil {
		return Errorf(ECodeInvalidTopic, "topic %q: %v", truncate(name), err)
	}
	return nil
}

// validateProperties enforces the MQTT v5 rules on the properties a client
// can set: UTF-8 strings without U+0000 of at most 65,535 bytes, a valid
// response topic, a payload format of 0 or 1 with a UTF-8 payload for 1.
func validateProperties(m *Message) error {
	p := &m.Properties
	if err := checkString("properties.content_type", p.ContentType); err != nil {
		return err
	}
	if p.PayloadFormat != nil {
		switch *p.PayloadFormat {
		case 0:
		case 1:
			if !utf8.Valid(m.Payload) {
				return Errorf(ECodeInvalidRequest, "payload_format 1 (UTF-8) but the payload is not valid UTF-8")
			}
		default:
			return Errorf(ECodeInvalidRequest, "payload_format must be 0 or 1")
		}
	}
	if p.ResponseTopic != "" {
		if err := topic.ValidateName(p.ResponseTopic); err != nil {
			return Errorf(ECodeInvalidRequest, "properties.response_topic %q: %v", truncate(p.ResponseTopic), err)
		}
	}
	if len(p.CorrelationData) > topic.MaxLen {
		return Errorf(ECodeInvalidRequest, "properties.correlation_data is longer than 65535 bytes")
	}
	for i, up := range p.UserProperties {
		if err := checkString(fmt.Sprintf("properties.user_properties[%d].key", i), up.Key); err != nil {
			return err
		}
		if err := checkString(fmt.Sprintf("properties.user_properties[%d].value", i), up.Value); err != nil {
			return err
		}
	}
	return nil
}

func checkString(field, s string) error {
	switch {
	case len(s) > topic.MaxLen:
		return Errorf(ECodeInvalidRequest, "%s is longer than 65535 bytes", field)
	case !utf8.ValidString(s):
		return Errorf(ECodeInvalidRequest, "%s is not valid UTF-8", field)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return Errorf(ECodeInvalidRequest, "%s must not contain U+0000", field)
		}
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
