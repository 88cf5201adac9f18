package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Replier is the capability an Upstream needs for Request: a subscription,
// on the connection that publishes, to ReplyPrefix()+"+", kept across
// reconnects, whose messages the adapter hands to Bridge.HandleReply and
// never to the ingest (they are not recorded as last values nor streamed).
// The MQTT adapter implements it when it is given a reply prefix.
type Replier interface {
	// ReplyPrefix is the topic prefix under which the connection receives
	// replies; it ends with "/". Each request gets its own topic below it.
	ReplyPrefix() string
	// RepliesReady reports whether the reply subscription is active on the
	// current connection (its SUBACK granted).
	RepliesReady() bool
}

// ReplyTokenBytes is the length of the random correlation data of a
// request; the reply topic ends with its hex form.
const ReplyTokenBytes = 16

// RequestStats counts what Request and HandleReply saw.
type RequestStats struct {
	Requests uint64 // requests published
	Replied  uint64 // requests answered by a matching reply
	TimedOut uint64 // requests that got no reply in time
	Late     uint64 // replies to a request that had already ended (answered, timed out or given up)
	Foreign  uint64 // messages under the reply prefix that belong to no request of this instance, or carry other correlation data
}

// replies is the Bridge's table of requests waiting for their reply. Its
// zero value is ready to use.
type replies struct {
	mu      sync.Mutex
	waiting map[string]*waiter // by reply topic
	ended   map[string]time.Time
	order   []string // reply topics of ended, oldest first

	requests, replied, timedOut, late, foreign atomic.Uint64
}

type waiter struct {
	corr []byte
	ch   chan Message // capacity 1
}

// Bounds of the memory of ended requests, which tells a late reply from a
// foreign one.
const (
	endedMax = 10000
	endedAge = 10 * time.Minute
)

func (r *replies) add(topic string, corr []byte) *waiter {
	w := &waiter{corr: corr, ch: make(chan Message, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string]*waiter{}
		r.ended = map[string]time.Time{}
	}
	r.waiting[topic] = w
	return w
}

// end forgets the request on topic and remembers for a while that it ended.
func (r *replies) end(topic string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, topic)
	r.endedLocked(topic, now)
}

func (r *replies) endedLocked(topic string, now time.Time) {
	if _, ok := r.ended[topic]; !ok {
		r.order = append(r.order, topic)
	}
	r.ended[topic] = now
	for len(r.order) > 0 && (len(r.order) > endedMax || now.Sub(r.ended[r.order[0]]) > endedAge) {
		delete(r.ended, r.order[0])
		r.order[0] = ""
		r.order = r.order[1:]
	}
}

// Request publishes msg as an MQTT v5 request and waits up to timeout for
// the reply: it sets the Response Topic to a topic of its own under the
// reply prefix of the broker that owns msg.Topic, and the Correlation Data
// to fresh random bytes, then returns the first message on that topic whose
// correlation data is the same or absent (devices that answer the
// response topic without echoing the correlation data work too). The reply
// is not recorded in the store; its ID is empty.
//
// msg must not set a response topic or correlation data, nor retain. The
// caller needs ActionRequest on the topic. Errors: those of Publish (the
// request was not sent, or its acknowledgement did not come), an *Error
// with ECodeBrokerUnavailable when the broker's reply subscription is not
// active, ECodeInvalidRequest when the broker has no reply prefix, and
// an *Error with ECodeTimeout when no reply came in time. A ctx that ends
// first returns its error.
func (b *Bridge) Request(ctx context.Context, id Identity, msg Message, timeout time.Duration) (Message, error) {
	up, err := b.checkRequest(ctx, id, &msg)
	if err != nil {
		return Message{}, err
	}
	if timeout <= 0 {
		return Message{}, Errorf(ECodeInvalidRequest, "the request timeout must be positive")
	}
	rp, ok := up.(Replier)
	if !ok || rp.ReplyPrefix() == "" {
		return Message{}, Errorf(ECodeInvalidRequest, "broker %q does not take requests: it has no reply topic", up.Name())
	}
	if !rp.RepliesReady() {
		return Message{}, &Error{Code: ECodeBrokerUnavailable, Message: fmt.Sprintf("the reply subscription on broker %q is not active yet", up.Name())}
	}
	if err := b.cfg.Limiter.Allow(id, ActionRequest); err != nil {
		return Message{}, err
	}

	corr := make([]byte, ReplyTokenBytes)
	_, _ = rand.Read(corr) // crypto/rand.Read never fails
	replyTopic := rp.ReplyPrefix() + hex.EncodeToString(corr)
	msg.Properties.ResponseTopic = replyTopic
	msg.Properties.CorrelationData = corr
	if msg.ReceivedAt.IsZero() {
		msg.ReceivedAt = time.Now()
	}

	ctx, span := b.startRequest(ctx, up, &msg)
	defer span.End()
	w := b.replies.add(replyTopic, corr)
	defer b.replies.end(replyTopic)
	timer := time.NewTimer(timeout) // from before the publish: the caller's whole wait
	defer timer.Stop()
	if _, err := b.send(ctx, up, msg); err != nil {
		spanError(span, err)
		return Message{}, err
	}
	b.replies.requests.Add(1)
	select {
	case reply := <-w.ch:
		b.replies.replied.Add(1)
		traceReply(span, &reply)
		return reply, nil
	case <-timer.C:
		b.replies.timedOut.Add(1)
		err := &Error{Code: ECodeTimeout, Message: fmt.Sprintf("no reply within %s", timeout)}
		spanError(span, err)
		return Message{}, err
	case <-ctx.Done():
		spanError(span, ctx.Err())
		return Message{}, ctx.Err()
	}
}

// CheckRequest runs every check Request runs before publishing.
func (b *Bridge) CheckRequest(ctx context.Context, id Identity, msg Message) error {
	_, err := b.checkRequest(ctx, id, &msg)
	return err
}

func (b *Bridge) checkRequest(ctx context.Context, id Identity, msg *Message) (Upstream, error) {
	if err := b.validateName(msg.Topic); err != nil {
		return nil, err
	}
	switch {
	case msg.QoS > 2:
		return nil, Errorf(ECodeInvalidRequest, "qos must be 0, 1 or 2")
	case msg.Retain:
		return nil, Errorf(ECodeInvalidRequest, "a request cannot be retained")
	case msg.Properties.ResponseTopic != "":
		return nil, Errorf(ECodeInvalidRequest, "a request's response topic is chosen by the bridge; do not set it")
	case msg.Properties.CorrelationData != nil:
		return nil, Errorf(ECodeInvalidRequest, "a request's correlation data is chosen by the bridge; do not set it")
	case len(msg.Payload) > b.cfg.MaxPayload:
		return nil, Errorf(ECodePayloadTooLarge, "payload of %d bytes exceeds the limit of %d bytes", len(msg.Payload), b.cfg.MaxPayload)
	}
	if err := validateProperties(msg); err != nil {
		return nil, err
	}
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionRequest, msg.Topic); err != nil {
		return nil, err
	}
	return b.route(msg.Topic)
}

// HandleReply takes a message the broker delivered under a reply prefix.
// Adapters call it from their network goroutine: it never blocks. A
// message that answers a waiting request (its topic, and its correlation
// data when it has any) completes it; any other is dropped and counted,
// as late when its request has ended, else as foreign.
func (b *Bridge) HandleReply(msg Message) {
	r := &b.replies
	r.mu.Lock()
	w := r.waiting[msg.Topic]
	if w != nil && (msg.Properties.CorrelationData == nil || bytes.Equal(msg.Properties.CorrelationData, w.corr)) {
		delete(r.waiting, msg.Topic)
		r.endedLocked(msg.Topic, time.Now())
		r.mu.Unlock()
		w.ch <- msg // capacity 1, and only one message ever completes a waiter
		return
	}
	_, ended := r.ended[msg.Topic]
	r.mu.Unlock()
	if ended && w == nil {
		r.late.Add(1)
		b.log.Debug("a late reply was dropped", "topic", msg.Topic)
		return
	}
	r.foreign.Add(1)
	b.log.Debug("a message under the reply prefix matches no request; dropped", "topic", msg.Topic)
}

// RequestStats returns the request/response counters of this instance.
func (b *Bridge) RequestStats() RequestStats {
	r := &b.replies
	return RequestStats{
		Requests: r.requests.Load(),
		Replied:  r.replied.Load(),
		TimedOut: r.timedOut.Load(),
		Late:     r.late.Load(),
		Foreign:  r.foreign.Load(),
	}
}
