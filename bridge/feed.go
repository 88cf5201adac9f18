package bridge

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// FeedConfig bounds a feed's queue. Zero values get the defaults.
type FeedConfig struct {
	// QueueBytes bounds what waits for the consumer: each delivery counts
	// its payload and DeliveryOverhead, so that the byte budget bounds
	// small messages too; default 8 MiB. A feed whose queue would go over
	// it fails with ErrSlowConsumer.
	QueueBytes int
	// QueueMessages, when above 0, also bounds how many deliveries may
	// wait; 0 (the default): the byte budget alone.
	QueueMessages int
	// MaxLag, when above 0, fails the feed (ErrSlowConsumer) when a
	// delivery arrives while the oldest one waiting has waited longer:
	// the consumer fell too far behind in time, though within the budget.
	MaxLag time.Duration
	// Kind labels the feed in the metrics ("ws", "sse", "longpoll"): open
	// feeds, deliveries and queue drops. "" counts nothing.
	Kind string
	// Notify, when set, is called after each delivery is queued and when
	// the feed fails, with the feed's lock held: it must not block or
	// call back into the feed. Without it, Ready is signalled instead.
	Notify func()
	// Alarms, when set, makes the feed take the transitions of the alarms
	// whose topic its filters match (Delivery.Alarm), and, on a subscribe
	// with a snapshot or a replay, the open alarms of the new filters
	// first.
	Alarms bool
}

// DeliveryOverhead is what a queued delivery counts against
// FeedConfig.QueueBytes besides its payload: the queue slot, the event
// and its frame.
const DeliveryOverhead = 128

// Delivery is one message for a feed's consumer, a gap, or an alarm.
type Delivery struct {
	// Event is the message; nil for a gap or an alarm.
	Event *Event
	// Alarm, for a feed with FeedConfig.Alarms, is an alarm as a
	// transition left it (or, with Snapshot, an open alarm sent before a
	// replay or snapshot).
	Alarm *AlarmEvent
	// Gap, when set, says that this instance's history tail lost messages
	// at this point of the flow (Tailer): some of them may have matched.
	// The consumer tells its client (a gap frame or event).
	Gap *Gap
	// Ack is set when the message was delivered on a QoS 1 subscription and
	// has QoS >= 1: the client must acknowledge it.
	Ack bool
	// Snapshot marks a current value sent on subscribe.
	Snapshot bool
}

// SubscribeOptions are the per-call settings of Feed.Subscribe.
type SubscribeOptions struct {
	// QoS is 0 (at most once) or 1 (acknowledged by the client).
	QoS byte
	// Snapshot sends the current value of every matching topic first.
	Snapshot bool
	// After replays the history after this message id first (and then
	// Snapshot is not done).
	After string
}

// Feed is one consumer's view of the message flow: a connection's
// subscriptions and its bounded queue. Live messages are queued without ever
// waiting; when the queue is over its budget (or too old, MaxLag) the feed
// fails with ErrSlowConsumer and Done is closed. Snapshot and replay are
// queued in between without a gap or a duplicate at the seam with the live
// flow, at the pace the consumer takes them.
//
// Every consumer uses the same queue: it waits for Notify (or Ready),
// takes deliveries in bulk with Take, calls Took for each once it is
// written, and calls Close at the end. The queue grows as deliveries
// arrive and is let go once drained, so that an idle feed holds none.
// Subscribe and Unsubscribe must not be called concurrently with each
// other.
type Feed struct {
	b     *Bridge
	id    Identity
	cfg   FeedConfig
	seq   uint64      // orders feeds for deduplication in the hub
	multi atomic.Bool // the feed has more than one filter
	bytes atomic.Int64
	done  chan struct{}
	ready chan struct{} // without Notify: something was queued
	// waiting is set while a snapshot or replay waits for the consumer to
	// take the queue under half its budget (enqueueWait); room is closed
	// then.
	waiting atomic.Bool

	mu        sync.Mutex
	q         []queued // q[qhead:] wait
	qhead     int
	room      chan struct{}
	subs      map[string]*feedSub
	list      []*feedSub        // subs in a slice: deliver ranges over it
	held      []*Event          // live messages that wait for a snapshot or replay
	heldBytes int64             // counted as the queue's
	snapIDs   map[string]string // topic → id of the snapshot value sent
	err       error
	closed    bool

	// While a subscription holds (alarm_feed.go): the alarm transitions
	// that wait, and the newest revision of each alarm queued.
	heldAlarms []*AlarmEvent
	alarmRevs  map[string]int
}

// queued is a delivery in the queue and when it arrived (mono).
type queued struct {
	d  Delivery
	at int64
}

type feedSub struct {
	filter string
	qos    byte
	hold   bool   // a snapshot or replay is under way: live messages wait
	floor  string // live messages up to this id were replayed already
	since  string // the newest id when the subscription went live
}

var feedSeq atomic.Uint64

// NewFeed starts a feed for identity id with no subscriptions.
func (b *Bridge) NewFeed(id Identity, cfg FeedConfig) *Feed {
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 8 << 20
	}
	if cfg.Kind != "" {
		b.cfg.Metrics.StreamOpened(cfg.Kind)
	}
	f := &Feed{
		b: b, id: id, cfg: cfg, seq: feedSeq.Add(1),
		done: make(chan struct{}),
	}
	if cfg.Notify == nil {
		f.ready = make(chan struct{}, 1)
	}
	return f
}

// Ready receives a value when deliveries were queued (or the feed failed)
// since the last one, for a feed without FeedConfig.Notify: take them all
// with Take before waiting again. Nil with Notify.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

// keepQueue is the most queue slots a drained feed keeps for the next
// deliveries; a longer slice is let go.
const keepQueue = 64

// Take appends up to max queued deliveries to dst, oldest first, and
// returns it. A failed feed has none.
func (f *Feed) Take(dst []Delivery, max int) []Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(max, len(f.q)-f.qhead)
	if n <= 0 {
		return dst
	}
	for _, e := range f.q[f.qhead : f.qhead+n] {
		dst = append(dst, e.d)
	}
	clear(f.q[f.qhead : f.qhead+n]) // the events may go
	f.qhead += n
	switch {
	case f.qhead == len(f.q) && cap(f.q) > keepQueue:
		f.q, f.qhead = nil, 0
	case f.qhead == len(f.q):
		f.q, f.qhead = f.q[:0], 0
	case f.qhead >= len(f.q)/2:
		// Move the rest to the front so that the slice does not creep.
		m := copy(f.q, f.q[f.qhead:])
		clear(f.q[m:])
		f.q, f.qhead = f.q[:m], 0
	}
	if f.waiting.Load() {
		f.wakeLocked()
	}
	return dst
}

// Len is how many deliveries wait in the queue.
func (f *Feed) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.q) - f.qhead
}

// Done is closed when the feed fails or is closed; Err says why.
func (f *Feed) Done() <-chan struct{} { return f.done }

// Err is ErrSlowConsumer, ErrFeedClosed, or nil while the feed runs.
func (f *Feed) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Took tells the feed that d has left the queue (its bytes are free).
func (f *Feed) Took(d Delivery) {
	f.bytes.Add(-d.size())
	if f.cfg.Kind != "" && d.Event != nil {
		f.b.cfg.Metrics.Delivered(f.cfg.Kind)
	}
	if f.waiting.Load() {
		f.mu.Lock()
		f.wakeLocked()
		f.mu.Unlock()
	}
}

// Subscriptions returns the feed's filters and their QoS.
func (f *Feed) Subscriptions() map[string]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]byte, len(f.subs))
	for flt, s := range f.subs {
		out[flt] = s.qos
	}
	return out
}

// Subscribe adds filters (or changes their QoS). Every filter is checked
// first (CheckSubscribe); if one fails nothing changes. With opts.After the
// history after that id is queued first: an error with ECodeGap means the
// window no longer covers it, and the subscriptions are live anyway. With
// opts.Snapshot the current values are queued first. With either, a feed
// with FeedConfig.Alarms gets the open alarms of the added filters before
// all of that.
func (f *Feed) Subscribe(ctx context.Context, filters []string, opts SubscribeOptions) error {
	if opts.QoS > 1 {
		return Errorf(ECodeInvalidRequest, "qos must be 0 or 1")
	}
	if opts.After != "" {
		if _, _, err := ParseID(opts.After); err != nil {
			return Errorf(ECodeInvalidRequest, "last_id %q is not a message id", truncate(opts.After))
		}
	}
	for _, flt := range filters {
		if err := f.b.CheckSubscribe(ctx, f.id, flt); err != nil {
			return err
		}
	}
	if err := f.b.tailDown(); err != nil {
		return err // no live message would come
	}
	hold := opts.After != "" || opts.Snapshot
	var added []string
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return f.err
	}
	if err := f.checkSubscriptionsLocked(filters); err != nil {
		f.mu.Unlock()
		return err
	}
	for _, flt := range filters {
		if s, ok := f.subs[flt]; ok {
			s.qos = opts.QoS
			continue
		}
		s := &feedSub{filter: flt, qos: opts.QoS, hold: hold}
		if f.subs == nil {
			f.subs = map[string]*feedSub{}
		}
		f.subs[flt] = s
		f.list = append(f.list, s)
		f.b.hub.add(flt, f)
		added = append(added, flt)
	}
	f.multi.Store(len(f.subs) > 1)
	f.mu.Unlock()
	if len(added) == 0 {
		return nil
	}

	since, err := f.b.cfg.Store.LastID(ctx)
	if err != nil {
		f.Unsubscribe(added)
		return err
	}
	var floor string
	if hold {
		err = f.alarmSnapshot(ctx, added)
	}
	switch {
	case err != nil:
	case opts.After != "":
		floor, err = f.replay(ctx, added, opts.After)
	case opts.Snapshot:
		err = f.snapshot(ctx, added)
	}
	if err != nil && ErrorCode(err) != ECodeGap {
		f.Unsubscribe(added)
		f.release(nil, "", "")
		return err
	}
	f.release(added, floor, since)
	return err
}

// Unsubscribe removes filters; unknown ones are ignored.
func (f *Feed) Unsubscribe(filters []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, flt := range filters {
		if s, ok := f.subs[flt]; ok {
			delete(f.subs, flt)
			f.list = slices.DeleteFunc(f.list, func(x *feedSub) bool { return x == s })
			f.b.hub.remove(flt, f)
		}
	}
	f.multi.Store(len(f.subs) > 1)
}

// Close removes every subscription and ends the feed; safe to call twice.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for flt := range f.subs {
		f.b.hub.remove(flt, f)
	}
	f.subs, f.list = nil, nil
	f.failLocked(ErrFeedClosed)
	if !f.closed && f.cfg.Kind != "" {
		f.b.cfg.Metrics.StreamClosed(f.cfg.Kind)
	}
	f.closed = true
}

// deliver is called by the hub for each live message matching the feed.
func (f *Feed) deliver(ev *Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliverLocked(ev)
}

func (f *Feed) deliverLocked(ev *Event) {
	if f.err != nil {
		return
	}
	if id, ok := f.snapIDs[ev.Topic]; ok && compareIDs(ev.ID, id) <= 0 {
		return // the snapshot already carried it, or something newer
	}
	var live, held, ack bool
	for _, s := range f.list {
		if ev.gap == nil && !topic.Match(s.filter, ev.Topic) {
			continue
		}
		switch {
		case s.hold:
			held = true
		case s.floor != "" && compareIDs(ev.ID, s.floor) <= 0:
			// replayed already (a gap: the replay read past it, so it
			// got those messages or reported a gap itself)
		default:
			live = true
			ack = ack || s.qos > 0 && ev.QoS > 0
		}
	}
	switch {
	case live && ev.gap != nil:
		f.enqueueLocked(Delivery{Gap: ev.gap}, ev.at)
	case live:
		f.enqueueLocked(Delivery{Event: ev, Ack: ack}, ev.at)
	case held:
		// They count as queued: the consumer is behind by them too.
		n := int64(len(ev.Payload) + DeliveryOverhead)
		if f.bytes.Load()+f.heldBytes+n > int64(f.cfg.QueueBytes) {
			f.dropLocked()
			return
		}
		f.held = append(f.held, ev)
		f.heldBytes += n
	}
}

// size is what d counts against FeedConfig.QueueBytes.
func (d *Delivery) size() int64 {
	switch {
	case d.Event != nil:
		return int64(len(d.Event.Payload) + DeliveryOverhead)
	case d.Alarm != nil:
		return int64(len(d.Alarm.Message.Payload) + DeliveryOverhead)
	}
	return DeliveryOverhead
}

// mono is the time on the monotonic clock, for the ages of deliveries.
func mono() int64 { return int64(time.Since(monoStart)) }

var monoStart = time.Now()

// enqueueLocked queues d, which arrived at (mono), or fails the feed when
// it has no room for it or its oldest delivery waited longer than MaxLag.
func (f *Feed) enqueueLocked(d Delivery, at int64) {
	n := d.size()
	waiting := len(f.q) - f.qhead
	switch {
	case waiting > 0 && f.bytes.Load()+n > int64(f.cfg.QueueBytes),
		f.cfg.QueueMessages > 0 && waiting >= f.cfg.QueueMessages,
		f.cfg.MaxLag > 0 && waiting > 0 && at-f.q[f.qhead].at > int64(f.cfg.MaxLag):
		f.dropLocked()
		return
	}
	f.q = append(f.q, queued{d, at})
	f.bytes.Add(n)
	f.notifyLocked()
}

func (f *Feed) notifyLocked() {
	if f.cfg.Notify != nil {
		f.cfg.Notify()
		return
	}
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// fullLocked reports whether the queue is more than half its budget, so
// that a snapshot or replay waits and live messages keep room.
func (f *Feed) fullLocked() bool {
	return f.bytes.Load() > int64(f.cfg.QueueBytes/2) ||
		f.cfg.QueueMessages > 0 && len(f.q)-f.qhead > f.cfg.QueueMessages/2
}

// wakeLocked lets a waiting snapshot or replay go on once the consumer
// took the queue under half its budget.
func (f *Feed) wakeLocked() {
	if f.room != nil && !f.fullLocked() {
		close(f.room)
		f.room = nil
		f.waiting.Store(false)
	}
}

// enqueueWait queues a snapshot or replay delivery, waiting while the queue
// is more than half full until the consumer takes (Take) or writes (Took)
// enough.
func (f *Feed) enqueueWait(ctx context.Context, d Delivery) error {
	return f.queueWait(ctx, func() { f.enqueueLocked(d, mono()) })
}

// queueWait waits while the queue is more than half full, then calls
// queue with the feed's lock held (unless the feed failed).
func (f *Feed) queueWait(ctx context.Context, queue func()) error {
	f.mu.Lock()
	for f.err == nil {
		// Set before looking, so that a Took after the look sees it.
		f.waiting.Store(true)
		if !f.fullLocked() {
			f.waiting.Store(f.room != nil)
			break
		}
		if f.room == nil {
			f.room = make(chan struct{})
		}
		room := f.room
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.done:
			return f.Err()
		case <-room:
		}
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	queue()
	return f.err
}

// dropLocked fails the feed whose queue has no room for a message.
func (f *Feed) dropLocked() {
	if f.cfg.Kind != "" {
		f.b.cfg.Metrics.QueueDropped(f.cfg.Kind)
	}
	f.failLocked(ErrSlowConsumer)
}

func (f *Feed) failLocked(err error) {
	if f.err != nil {
		return
	}
	f.err = err
	f.held, f.heldBytes = nil, 0
	clear(f.q)
	f.q, f.qhead = nil, 0
	close(f.done)
	f.notifyLocked()
}

// replay queues the history after `after` that matches the added filters,
// skipping what other live subscriptions delivered already. It returns the
// newest id it read.
func (f *Feed) replay(ctx context.Context, added []string, after string) (string, error) {
	cursor, newest := after, ""
	for {
		msgs, err := f.b.cfg.Store.After(ctx, cursor, 500)
		if err != nil {
			return newest, err
		}
		if len(msgs) == 0 {
			return newest, nil
		}
		for _, m := range msgs {
			cursor, newest = m.ID, m.ID
			match, ack, seen := f.classify(&m, added)
			if !match || seen {
				continue
			}
			if err := f.enqueueWait(ctx, Delivery{Event: NewEvent(m), Ack: ack}); err != nil {
				return newest, err
			}
		}
	}
}

// classify says whether m matches one of the added filters, whether it
// needs an ack there, and whether another live subscription has delivered
// it already.
func (f *Feed) classify(m *Message, added []string) (match, ack, seen bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, flt := range added {
		if s, ok := f.subs[flt]; ok && topic.Match(flt, m.Topic) {
			match = true
			ack = ack || s.qos > 0 && m.QoS > 0
		}
	}
	for flt, s := range f.subs {
		if s.hold || !topic.Match(flt, m.Topic) {
			continue
		}
		// Live since `since`, and replayed up to `floor`.
		if compareIDs(m.ID, s.since) > 0 || s.floor != "" && compareIDs(m.ID, s.floor) <= 0 {
			seen = true
		}
	}
	return match, ack, seen
}

// snapshot queues the current value of every topic the added filters match.
func (f *Feed) snapshot(ctx context.Context, added []string) error {
	sent := map[string]bool{}
	for _, flt := range added {
		after := ""
		for {
			msgs, next, err := f.b.cfg.Store.List(ctx, flt, after, 1000)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if sent[m.Topic] {
					continue
				}
				sent[m.Topic] = true
				f.mu.Lock()
				if f.snapIDs == nil {
					f.snapIDs = map[string]string{}
				}
				f.snapIDs[m.Topic] = m.ID
				f.mu.Unlock()
				if err := f.enqueueWait(ctx, Delivery{Event: NewEvent(m), Snapshot: true}); err != nil {
					return err
				}
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	return nil
}

// release makes the added subscriptions live and hands over the messages
// that waited meanwhile.
func (f *Feed) release(added []string, floor, since string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, flt := range added {
		if s, ok := f.subs[flt]; ok {
			s.hold, s.floor, s.since = false, floor, since
		}
	}
	held := f.held
	f.held, f.heldBytes = nil, 0
	for _, ev := range held {
		f.deliverLocked(ev)
	}
	f.releaseAlarmsLocked()
}

// compareIDs compares two message ids; ids that do not parse sort first.
func compareIDs(a, b string) int {
	c, _ := CompareIDs(a, b)
	return c
}

// checkSubscriptionsLocked refuses filters that would take the feed over
// Limits.SubscriptionsPerFeed.
func (f *Feed) checkSubscriptionsLocked(filters []string) error {
	max := f.b.cfg.Limits.SubscriptionsPerFeed
	if max <= 0 {
		return nil
	}
	n := len(f.subs)
	seen := map[string]bool{}
	for _, flt := range filters {
		if _, ok := f.subs[flt]; !ok && !seen[flt] {
			seen[flt] = true
			n++
		}
	}
	if n > max {
		return Errorf(ECodeInvalidRequest, "at most %d subscriptions per connection; this one would have %d", max, n)
	}
	return nil
}
