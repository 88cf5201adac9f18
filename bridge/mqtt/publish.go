package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Publish sends msg and maps every field and property of it to the MQTT v5
// PUBLISH. QoS 0 returns once the packet is written to the connection; QoS 1
// and 2 once the broker acknowledged it (PUBACK / PUBCOMP).
//
// Errors: bridge.ErrUnavailable when not connected (immediately; nothing is
// sent or queued), an *bridge.Error with ECodePayloadTooLarge when the
// encoded packet exceeds the broker's Maximum Packet Size (nothing sent),
// bridge.ReasonError for an acknowledgement with a reason code >= 0x80, and
// bridge.ErrTimeout (wrapped) when the acknowledgement did not come within
// PublishTimeout or the connection was lost while waiting for it.
func (c *Conn) Publish(ctx context.Context, msg bridge.Message) (bridge.PublishResult, error) {
	if msg.QoS > 2 {
		return bridge.PublishResult{}, bridge.Errorf(bridge.ECodeInvalidRequest, "QoS must be 0, 1 or 2, not %d", msg.QoS)
	}
	if err := ctx.Err(); err != nil {
		return bridge.PublishResult{}, err
	}
	connCtx, limit, ok := c.current()
	if !ok {
		return bridge.PublishResult{}, bridge.ErrUnavailable
	}
	pub := toPahoPublish(msg)
	if limit == 0 {
		limit = maxPacketSize
	}
	if size := publishPacketSize(pub); size > int(limit) {
		return bridge.PublishResult{}, &bridge.Error{
			Code:    bridge.ECodePayloadTooLarge,
			Message: fmt.Sprintf("the message is %d bytes as an MQTT packet; broker %q accepts at most %d", size, c.name, limit),
		}
	}

	// The wait ends at PublishTimeout, when the caller gives up, or when the
	// connection goes down (paho forgets the packet then, since this
	// connection has no session, and would wait for the full timeout).
	pubCtx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	stop := context.AfterFunc(connCtx, cancel)
	defer stop()

	resp, err := c.publish(pubCtx, pub)
	if resp != nil && resp.ReasonCode >= 0x80 {
		// QoS 1: PUBACK with an error (err is set too); QoS 2: PUBREC with
		// an error (paho returns no error for it).
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return bridge.PublishResult{ReasonCode: resp.ReasonCode, Reason: reason}, bridge.ReasonError(resp.ReasonCode, reason)
	}
	if err != nil {
		return bridge.PublishResult{}, c.publishError(ctx, connCtx, msg.QoS, err)
	}
	res := bridge.PublishResult{}
	if resp != nil {
		res.ReasonCode = resp.ReasonCode
		if resp.Properties != nil {
			res.Reason = resp.Properties.ReasonString
		}
	}
	return res, nil
}

// errStuckWrite: paho was still writing the PUBLISH when the wait ended.
var errStuckWrite = errors.New("the PUBLISH could not be written in time; the broker is not reading")

// publish runs paho's Publish in a goroutine so that the wait is bounded
// by ctx even when paho is stuck writing: paho writes synchronously and sets
// no write deadline, so a broker that stopped reading (a black hole with full
// socket buffers) would block the write until keepalive declares the
// connection dead. The goroutine ends when the write fails or completes; Close
// waits for it.
func (c *Conn) publish(ctx context.Context, pub *paho.Publish) (*paho.PublishResponse, error) {
	type result struct {
		resp *paho.PublishResponse
		err  error
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, autopaho.ConnectionDownError
	}
	c.wg.Add(1) // under c.mu, so never after Close started waiting
	c.mu.Unlock()
	done := make(chan result, 1)
	go func() {
		defer c.wg.Done()
		resp, err := c.cm.Publish(ctx, pub)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // paho noticed too (it was waiting for the ack)
			return r.resp, r.err
		case <-time.After(50 * time.Millisecond):
			return nil, errStuckWrite
		}
	}
}

// publishError maps an error of paho's Publish.
func (c *Conn) publishError(ctx, connCtx context.Context, qos byte, err error) error {
	switch {
	case errors.Is(err, autopaho.ConnectionDownError), errors.Is(err, session.ErrNoConnection):
		// Refused before anything was written.
		return fmt.Errorf("%w (%v)", bridge.ErrUnavailable, err)
	case errors.Is(err, paho.ErrInvalidArguments):
		// e.g. QoS above the broker's Maximum QoS, retain not available.
		return bridge.Errorf(bridge.ECodeInvalidRequest, "broker %q cannot take this message: %v", c.name, err)
	case errors.Is(err, errStuckWrite):
		return fmt.Errorf("%w (%v)", bridge.ErrTimeout, err)
	case qos == 0 && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		// The write failed: the connection is broken and nothing was sent.
		return fmt.Errorf("%w (%v)", bridge.ErrUnavailable, err)
	case ctx.Err() != nil:
		// The caller gave up; the broker may or may not have the message.
		return fmt.Errorf("%w (request ended: %v)", bridge.ErrTimeout, context.Cause(ctx))
	case connCtx.Err() != nil:
		return fmt.Errorf("%w (connection lost while waiting for the acknowledgement)", bridge.ErrTimeout)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w (no acknowledgement within %s)", bridge.ErrTimeout, c.cfg.PublishTimeout)
	}
	// Anything else (shutdown, an unexpected packet) leaves the outcome
	// unknown as well.
	c.log.Warn("mqtt: publish failed", "error", err)
	return fmt.Errorf("%w (%v)", bridge.ErrTimeout, err)
}

// toPahoPublish maps a bridge.Message to a paho PUBLISH.
func toPahoPublish(msg bridge.Message) *paho.Publish {
	p := msg.Properties
	props := &paho.PublishProperties{
		ContentType:     p.ContentType,
		ResponseTopic:   p.ResponseTopic,
		CorrelationData: p.CorrelationData,
	}
	if p.PayloadFormat != nil {
		v := *p.PayloadFormat
		props.PayloadFormat = &v
	}
	if p.MessageExpiry != nil {
		v := *p.MessageExpiry
		props.MessageExpiry = &v
	}
	if len(p.UserProperties) > 0 {
		props.User = make(paho.UserProperties, len(p.UserProperties))
		for i, up := range p.UserProperties {
			props.User[i] = paho.UserProperty{Key: up.Key, Value: up.Value}
		}
	}
	return &paho.Publish{
		QoS:        msg.QoS,
		Retain:     msg.Retain,
		Topic:      msg.Topic,
		Payload:    msg.Payload,
		Properties: props,
	}
}

// fromPahoPublish maps a received PUBLISH to a bridge.Message (without ID
// and ReceivedAt).
func fromPahoPublish(p *paho.Publish) bridge.Message {
	msg := bridge.Message{
		Topic:   p.Topic,
		Payload: p.Payload,
		QoS:     p.QoS,
		Retain:  p.Retain,
	}
	if msg.Payload == nil {
		msg.Payload = []byte{}
	}
	if pp := p.Properties; pp != nil {
		props := &msg.Properties
		props.ContentType = pp.ContentType
		props.ResponseTopic = pp.ResponseTopic
		props.CorrelationData = pp.CorrelationData
		if pp.PayloadFormat != nil {
			v := *pp.PayloadFormat
			props.PayloadFormat = &v
		}
		if pp.MessageExpiry != nil {
			v := *pp.MessageExpiry
			props.MessageExpiry = &v
		}
		if len(pp.User) > 0 {
			props.UserProperties = make([]bridge.UserProperty, len(pp.User))
			for i, up := range pp.User {
				props.UserProperties[i] = bridge.UserProperty{Key: up.Key, Value: up.Value}
			}
		}
	}
	return msg
}

// maxPacketSize is the largest packet MQTT can encode: a remaining length
// of at most 268,435,455 bytes behind a fixed header of at most 5 bytes.
const maxPacketSize = 268435455 + 5

// publishPacketSize is the size in bytes of the PUBLISH packet as it will be
// written: fixed header, topic, packet identifier (QoS 1/2), properties and
// payload; the payload is not copied.
func publishPacketSize(p *paho.Publish) int {
	remaining := 0
	for _, b := range p.Packet().Buffers() {
		remaining += len(b)
	}
	return 1 + varIntLen(remaining) + remaining
}

// varIntLen is the length of the MQTT Variable Byte Integer encoding of n.
func varIntLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	default:
		return 4
	}
}
