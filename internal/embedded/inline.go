package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Defaults of InlineConfig, the same as bridge/mqtt's.
const (
	DefaultQueueSize = 10000
	DefaultMaxBatch  = 256
)

// InlineConfig configures the bridge's own connection to the embedded
// broker.
type InlineConfig struct {
	// Name is the broker name, in logs, metrics and readiness reasons.
	Name string
	// ClientID is the origin of what the bridge publishes (as a client's
	// id would be); it is not a session and devices cannot take it over.
	ClientID string
	// ReplyPrefix, when set, makes the Inline a bridge.Replier: every
	// message under it goes to OnReply (which must not block), from the
	// publisher's goroutine.
	ReplyPrefix string
	OnReply     func(bridge.Message)
	// IgnorePrefix: messages on topics that start with it (the replies of
	// every instance) are never ingested.
	IgnorePrefix string
	// QueueSize bounds the ingest queue (default 10000) and MaxBatch the
	// batches handed to the ingest (default 256).
	QueueSize, MaxBatch int
	// Logger; default discards.
	Logger *slog.Logger
}

// Inline is the bridge's own connection to the embedded broker through
// mochi's inline client: a publish is handed to the broker in the
// caller's goroutine and the bridge's subscriptions are called by the
// broker directly, so neither costs a socket, an encoding or a decoding.
// Devices keep using the TCP listener and see the same messages. It
// implements bridge.Upstream, bridge.Replier and, with Ingest, the ingest
// subscription.
type Inline struct {
	srv     *mochi.Server
	cl      *mochi.Client // ours, not in srv.Clients: no device can take it over
	b       *Broker
	cfg     InlineConfig
	log     *slog.Logger
	replyID int // the reply subscription's id; 0 without one
	closed  atomic.Bool
}

// Inline returns the bridge's connection to the broker. Close it before
// the broker.
func (b *Broker) Inline(cfg InlineConfig) (*Inline, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.ReplyPrefix == "") != (cfg.OnReply == nil) {
		return nil, errors.New("embedded broker: ReplyPrefix and OnReply go together")
	}
	cl := b.srv.NewClient(nil, mochi.LocalListener, cfg.ClientID, true)
	cl.Properties.ProtocolVersion = 5
	c := &Inline{srv: b.srv, cl: cl, b: b, cfg: cfg, log: cfg.Logger.With("broker", cfg.Name)}
	if cfg.ReplyPrefix != "" {
		c.replyID = b.nextSubID()
		onReply := cfg.OnReply
		err := b.srv.Subscribe(cfg.ReplyPrefix+"+", c.replyID, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			onReply(fromPacket(pk))
		})
		if err != nil {
			return nil, fmt.Errorf("embedded broker: subscribing to the replies: %w", err)
		}
	}
	return c, nil
}

// nextSubID is a new inline subscription id (mochi keys inline
// subscriptions by it).
func (b *Broker) nextSubID() int { return int(b.subIDs.Add(1)) }

// Name is the configured broker name.
func (c *Inline) Name() string { return c.cfg.Name }

// Connected is true until Close (metrics).
func (c *Inline) Connected() bool { return !c.closed.Load() }

// Reconnects is always 0: there is no connection to lose (metrics).
func (c *Inline) Reconnects() uint64 { return 0 }

// Problems is empty until Close.
func (c *Inline) Problems() []string {
	if c.closed.Load() {
		return []string{"the embedded broker connection is closed"}
	}
	return nil
}

// ReplyPrefix implements bridge.Replier.
func (c *Inline) ReplyPrefix() string { return c.cfg.ReplyPrefix }

// RepliesReady implements bridge.Replier: the reply subscription exists
// from the start.
func (c *Inline) RepliesReady() bool { return c.replyID != 0 && !c.closed.Load() }

// Publish hands msg to the broker, which retains it when asked and queues
// it to every subscriber before it returns; that is when a QoS 1 or 2
// message counts as acknowledged, as a PUBACK/PUBCOMP from the broker
// would say. Errors: bridge.ErrUnavailable after Close, a ReasonError
// 0x90 for a topic the broker refuses from clients ($SYS/...).
func (c *Inline) Publish(ctx context.Context, msg bridge.Message) (bridge.PublishResult, error) {
	if msg.QoS > 2 {
		return bridge.PublishResult{}, bridge.Errorf(bridge.ECodeInvalidRequest, "QoS must be 0, 1 or 2, not %d", msg.QoS)
	}
	if err := ctx.Err(); err != nil {
		return bridge.PublishResult{}, err
	}
	if c.closed.Load() {
		return bridge.PublishResult{}, bridge.ErrUnavailable
	}
	// The inline client skips the checks a TCP client gets; this is the
	// one a bridge publish could fail.
	if !mochi.IsValidFilter(msg.Topic, true) {
		return bridge.PublishResult{}, bridge.ReasonError(0x90, "the broker does not accept publishes to "+msg.Topic)
	}
	if err := c.srv.InjectPacket(c.cl, toPacket(msg)); err != nil {
		return bridge.PublishResult{}, fmt.Errorf("%w (%v)", bridge.ErrUnavailable, err)
	}
	return bridge.PublishResult{}, nil
}

// Close removes the reply subscription; later publishes fail with
// bridge.ErrUnavailable. Safe to call twice.
func (c *Inline) Close(context.Context) error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.replyID != 0 {
		_ = c.srv.Unsubscribe(c.cfg.ReplyPrefix+"+", c.replyID)
	}
	return nil
}

// Ingest is the ingest subscription to filters (bridge.IngestFunc). It is
// not a subscription in the broker's topic tree, whose inline
// subscriptions cost a publish several maps and do not follow MQTT's
// matching rules: a hook sees every message the broker publishes (and
// every will it sends), and hands those that match filters (topic.Match)
// to a bounded queue, in the publisher's goroutine, without waiting; one
// goroutine writes the queue to handle in batches. Like the bridge's
// subscription over TCP it takes QoS 1 at most, Retain As Published, and
// the retained messages when it opens (none for a shared filter). When the
// queue is full (the store is stuck), new messages are dropped, counted
// and logged, as the broker drops them for any slow subscriber; a
// publisher never waits for the store. When handle gives up, the
// subscription ends.
func (c *Inline) Ingest(filters []string) bridge.IngestFunc {
	return func(ctx context.Context, handle func([]bridge.Message) bool) (bridge.IngestConn, error) {
		ctx, cancel := context.WithCancel(ctx)
		in := &ingest{c: c, filters: filters, queue: make(chan bridge.Message, c.cfg.QueueSize), cancel: cancel, done: make(chan struct{})}
		go in.dispatch(ctx, handle)
		in.replay.Store(true)
		c.b.hook.add(in)
		// The retained messages, after the hook is in place so that none
		// published meanwhile is missed; a topic published live meanwhile
		// is not replayed (its retained value is older). They may wait
		// for room: this is not a publisher's goroutine.
		for _, pk := range c.srv.Topics.Retained.GetAll() {
			if in.matchesRetained(pk.TopicName) && in.firstFor(pk.TopicName, false) {
				in.enqueue(pk, true)
			}
		}
		in.replay.Store(false)
		in.seenMu.Lock()
		in.seen = nil
		in.seenMu.Unlock()
		return in, nil
	}
}

// ingest is one ingest subscription (bridge.IngestConn).
type ingest struct {
	c       *Inline
	filters []string
	queue   chan bridge.Message
	cancel  context.CancelFunc
	done    chan struct{}
	ended   atomic.Bool // handle gave up
	closed  sync.Once

	replay atomic.Bool // the retained messages are being queued
	seenMu sync.Mutex
	seen   map[string]bool // topics taken while replaying: true live, false retained

	dropped   atomic.Uint64
	dropMu    sync.Mutex
	dropLogAt time.Time
}

// publish is called by the hook for every message the broker publishes.
// It never blocks the publisher.
func (in *ingest) publish(pk packets.Packet) {
	if p := in.c.cfg.IgnorePrefix; p != "" && strings.HasPrefix(pk.TopicName, p) {
		return
	}
	if !in.matches(pk.TopicName) {
		return
	}
	if in.replay.Load() {
		in.firstFor(pk.TopicName, true)
	}
	in.enqueue(pk, false)
}

func (in *ingest) matches(name string) bool {
	for _, f := range in.filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// matchesRetained is matches for the retained messages: a shared
// subscription gets none.
func (in *ingest) matchesRetained(name string) bool {
	for _, f := range in.filters {
		if _, _, shared := topic.IsShared(f); !shared && topic.Match(f, name) {
			return true
		}
	}
	return false
}

// firstFor notes topic while replaying and reports whether it is the
// first time: live, or retained and not yet seen live.
func (in *ingest) firstFor(name string, live bool) bool {
	in.seenMu.Lock()
	defer in.seenMu.Unlock()
	if in.seen == nil {
		in.seen = make(map[string]bool)
	}
	if live {
		in.seen[name] = true
		return true
	}
	if _, ok := in.seen[name]; ok {
		return false
	}
	in.seen[name] = false
	return true
}

// enqueue queues pk; when the queue is full it waits only when wait is
// set, else drops.
func (in *ingest) enqueue(pk packets.Packet, wait bool) {
	msg := fromPacket(pk)
	msg.QoS = min(msg.QoS, 1) // the subscription's QoS
	select {
	case in.queue <- msg:
		return
	default:
	}
	if wait {
		select {
		case in.queue <- msg:
		case <-in.done:
		}
		return
	}
	in.drop(msg.Topic)
}

// drop counts a message the queue had no room for and logs at most every
// 10 seconds.
func (in *ingest) drop(topic string) {
	total := in.dropped.Add(1)
	now := time.Now()
	in.dropMu.Lock()
	defer in.dropMu.Unlock()
	if !in.dropLogAt.IsZero() && now.Sub(in.dropLogAt) < 10*time.Second {
		return
	}
	in.dropLogAt = now
	in.c.log.Warn("embedded broker: ingest queue full; dropping messages", "dropped_total", total, "queue_size", in.c.cfg.QueueSize, "topic", topic)
}

// dispatch hands the queue to handle in batches of what is queued.
func (in *ingest) dispatch(ctx context.Context, handle func([]bridge.Message) bool) {
	defer close(in.done)
	batch := make([]bridge.Message, 0, in.c.cfg.MaxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-in.queue:
			batch = append(batch[:0], m)
		}
	more:
		for len(batch) < in.c.cfg.MaxBatch {
			select {
			case m := <-in.queue:
				batch = append(batch, m)
			default:
				break more
			}
		}
		ok := handle(batch)
		clear(batch)
		if !ok {
			in.ended.Store(true)
			return
		}
	}
}

// Problems is empty while the subscription works.
func (in *ingest) Problems() []string {
	if in.ended.Load() {
		return []string{"the ingest gave up"}
	}
	return nil
}

// Close ends the subscription and waits for the batch being written.
func (in *ingest) Close(ctx context.Context) error {
	in.closed.Do(func() { in.c.b.hook.remove(in) })
	in.cancel()
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// toPacket maps a bridge.Message to the PUBLISH the broker takes.
func toPacket(msg bridge.Message) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: msg.QoS, Retain: msg.Retain},
		TopicName:   msg.Topic,
		Payload:     msg.Payload,
	}
	if msg.QoS > 0 {
		pk.PacketID = 1 // a valid PUBLISH needs one; the inline client has no inflight state
	}
	p, props := msg.Properties, &pk.Properties
	props.ContentType = p.ContentType
	props.ResponseTopic = p.ResponseTopic
	props.CorrelationData = p.CorrelationData
	if p.PayloadFormat != nil {
		props.PayloadFormat, props.PayloadFormatFlag = *p.PayloadFormat, true
	}
	if p.MessageExpiry != nil {
		props.MessageExpiryInterval = *p.MessageExpiry
	}
	if len(p.UserProperties) > 0 {
		props.User = make([]packets.UserProperty, len(p.UserProperties))
		for i, up := range p.UserProperties {
			props.User[i] = packets.UserProperty{Key: up.Key, Val: up.Value}
		}
	}
	return pk
}

// fromPacket maps a PUBLISH the broker delivers to a bridge.Message, with
// the expiry interval that is left, as the broker would send it to a
// client.
func fromPacket(pk packets.Packet) bridge.Message {
	now := time.Now()
	msg := bridge.Message{
		Topic:      pk.TopicName,
		Payload:    pk.Payload,
		QoS:        pk.FixedHeader.Qos,
		Retain:     pk.FixedHeader.Retain,
		ReceivedAt: now,
	}
	if msg.Payload == nil {
		msg.Payload = []byte{}
	}
	p, props := pk.Properties, &msg.Properties
	props.ContentType = p.ContentType
	props.ResponseTopic = p.ResponseTopic
	props.CorrelationData = p.CorrelationData
	if p.PayloadFormatFlag {
		v := p.PayloadFormat
		props.PayloadFormat = &v
	}
	if pk.Expiry > 0 {
		left := max(pk.Expiry-now.Unix(), 1)
		v := uint32(left)
		props.MessageExpiry = &v
	} else if p.MessageExpiryInterval > 0 {
		v := p.MessageExpiryInterval
		props.MessageExpiry = &v
	}
	if len(p.User) > 0 {
		props.UserProperties = make([]bridge.UserProperty, len(p.User))
		for i, up := range p.User {
			props.UserProperties[i] = bridge.UserProperty{Key: up.Key, Value: up.Val}
		}
	}
	return msg
}

// ingestHook hands what the broker publishes to the open ingests.
type ingestHook struct {
	mochi.HookBase
	mu      sync.Mutex
	ingests atomic.Pointer[[]*ingest] // copy on write
}

func (h *ingestHook) ID() string { return "mqttbridge-ingest" }

func (h *ingestHook) Provides(b byte) bool { return b == mochi.OnPublished || b == mochi.OnWillSent }

// OnPublished is called for every PUBLISH the broker accepted and passed to
// its subscribers, from any client or inline.
func (h *ingestHook) OnPublished(_ *mochi.Client, pk packets.Packet) {
	if pk.Ignore {
		return // a hook told the broker not to deliver it
	}
	h.publish(pk)
}

// OnWillSent is called for every will the broker published. Its Expiry
// holds the will delay, not a message expiry.
func (h *ingestHook) OnWillSent(_ *mochi.Client, pk packets.Packet) {
	pk.Expiry = 0
	h.publish(pk)
}

func (h *ingestHook) publish(pk packets.Packet) {
	if p := h.ingests.Load(); p != nil {
		for _, in := range *p {
			in.publish(pk)
		}
	}
}

func (h *ingestHook) add(in *ingest) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var list []*ingest
	if p := h.ingests.Load(); p != nil {
		list = append(list, *p...)
	}
	list = append(list, in)
	h.ingests.Store(&list)
}

func (h *ingestHook) remove(in *ingest) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.ingests.Load()
	if p == nil {
		return
	}
	var list []*ingest
	for _, x := range *p {
		if x != in {
			list = append(list, x)
		}
	}
	h.ingests.Store(&list)
}
