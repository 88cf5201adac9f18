package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// subState is where one filter's subscription stands on the current
// connection.
type subState int

const (
	subPending subState = iota // not yet acknowledged
	subOK                      // SUBACK granted a QoS
	subRefused                 // SUBACK reason code >= 0x80
	subFailed                  // no usable SUBACK (timeout, refused by paho, ...)
)

type subStatus struct {
	state  subState
	code   byte   // SUBACK reason code when refused
	reason string // SUBACK Reason String when refused
	err    string // why it failed
}

// problem describes the status for Problems; "" when subscribed.
func (s subStatus) problem(filter string) string {
	switch s.state {
	case subPending:
		return fmt.Sprintf("subscription to %q pending", filter)
	case subRefused:
		p := fmt.Sprintf("subscription to %q refused: reason 0x%02X %s", filter, s.code, subackReasonName(s.code))
		if s.reason != "" {
			p += ": " + s.reason
		}
		return p
	case subFailed:
		return fmt.Sprintf("subscription to %q failed: %s", filter, s.err)
	}
	return ""
}

// subscribeLoop subscribes to every filter on the connection of generation
// gen, checks each SUBACK reason code and retries the filters that were
// refused or failed, with backoff, until they succeed or the connection
// (ctx) ends. It runs in its own goroutine, so that autopaho's
// OnConnectionUp is never blocked.
func (c *Conn) subscribeLoop(ctx context.Context, cm *autopaho.ConnectionManager, gen uint64) {
	defer c.wg.Done()
	pending := make([]int, len(c.cfg.Filters)) // indexes into cfg.Filters
	for i := range pending {
		pending[i] = i
	}
	for retry := 0; ; retry++ {
		sub := &paho.Subscribe{Subscriptions: make([]paho.SubscribeOptions, len(pending))}
		for j, i := range pending {
			sub.Subscriptions[j] = paho.SubscribeOptions{
				Topic:             c.cfg.Filters[i],
				QoS:               1,
				RetainAsPublished: true,
				NoLocal:           false,
				RetainHandling:    0, // send the retained messages on every subscribe
			}
		}
		subCtx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
		suback, err := cm.Subscribe(subCtx, sub)
		cancel()
		if ctx.Err() != nil {
			return // the connection is gone; the next one starts over
		}

		results := make([]subStatus, len(pending))
		switch {
		case suback != nil && len(suback.Reasons) == len(pending):
			reason := ""
			if suback.Properties != nil {
				reason = suback.Properties.ReasonString
			}
			for j, code := range suback.Reasons {
				if code >= 0x80 {
					results[j] = subStatus{state: subRefused, code: code, reason: reason}
				} else {
					results[j] = subStatus{state: subOK}
				}
			}
		default:
			if err == nil {
				err = fmt.Errorf("SUBACK has %d reason codes for %d filters", len(suback.Reasons), len(pending))
			}
			for j := range results {
				results[j] = subStatus{state: subFailed, err: err.Error()}
			}
		}

		var next []int
		c.mu.Lock()
		if c.gen != gen || c.closed {
			c.mu.Unlock()
			return
		}
		for j, i := range pending {
			c.subs[i] = results[j]
			if results[j].state != subOK {
				next = append(next, i)
			}
		}
		c.notifyLocked()
		c.mu.Unlock()

		level := slog.LevelWarn
		if retry > 0 {
			level = slog.LevelDebug // already reported; Problems keeps saying it
		}
		for j, i := range pending {
			if results[j].state == subOK {
				c.log.Info("mqtt: subscribed", "filter", c.cfg.Filters[i])
			} else {
				c.log.Log(ctx, level, "mqtt: subscribe failed; will retry", "problem", results[j].problem(c.cfg.Filters[i]))
			}
		}
		if len(next) == 0 {
			return
		}
		pending = next

		t := time.NewTimer(backoffDelay(retry, c.cfg.ReconnectMin, c.cfg.ReconnectMax))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// onPublishReceived is paho's callback for every incoming PUBLISH. It must
// not block: it converts the message and hands it to the bounded queue,
// whose one goroutine (dispatch) writes and then acknowledges, in order.
// For OnMessage a full queue drops the message. For OnMessagesAck nothing
// may be lost, so a full queue makes it wait. paho calls it from its
// router goroutine, which its read loop feeds through a buffer of Receive
// Maximum (65535) packets, and the broker sends at most that many QoS 1
// messages before their acks (Mosquitto: 20): waiting never stops the read
// loop, which also reads the PINGRESP, unless QoS 0 messages, which flow
// control does not bound, fill that buffer too.
func (c *Conn) onPublishReceived(pr paho.PublishReceived) (bool, error) {
	if c.reply(pr.Packet) {
		return true, nil
	}
	if c.queue == nil || pr.Packet == nil {
		return false, nil
	}
	msg := fromPahoPublish(pr.Packet)
	msg.ReceivedAt = time.Now()
	in := incoming{msg: msg, pkt: pr.Packet, client: pr.Client, gen: c.generation()}
	if c.cfg.OnMessagesAck != nil {
		// Waiting holds back the network and never loses a message.
		select {
		case c.queue <- in:
		case <-c.ctx.Done():
		}
		return true, nil
	}
	select {
	case c.queue <- in:
	default:
		c.drop(msg.Topic)
	}
	return true, nil
}

// incoming is a received message on its way to OnMessage or OnMessagesAck,
// with what acknowledging it needs.
type incoming struct {
	msg    bridge.Message
	pkt    *paho.Publish
	client *paho.Client
	gen    uint64 // the connection it came on
}

// generation identifies the connection that messages arrive on now. It
// changes before each connection attempt, not in onConnectionUp: the broker
// sends a resumed session's queued messages right after the CONNACK, and
// paho may hand them over before autopaho calls onConnectionUp. Stamped
// with the previous connection, they were never acknowledged, and as paho
// sends acknowledgements only in order, none was sent any more: the
// session stalled for good once the broker's inflight window was full.
// autopaho makes the next attempt only after the last connection has shut
// down, so no message of that one arrives after the change.
func (c *Conn) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempt
}

// drop counts a message the queue had no room for, and logs at most every
// 10 seconds.
func (c *Conn) drop(topic string) {
	total := c.dropped.Add(1)
	now := time.Now()
	c.dropLogMu.Lock()
	if !c.dropLogAt.IsZero() && now.Sub(c.dropLogAt) < 10*time.Second {
		c.dropLogMu.Unlock()
		return
	}
	since := total - c.dropLogSeen
	c.dropLogAt, c.dropLogSeen = now, total
	c.dropLogMu.Unlock()
	c.log.Warn("mqtt: incoming queue full; dropping messages",
		"dropped", since, "dropped_total", total, "queue_size", c.cfg.QueueSize, "topic", topic)
}

// dispatch delivers queued messages to OnMessage, one at a time, or to
// OnMessagesAck, in batches of what is queued, in order, and acknowledges
// what OnMessagesAck handled.
func (c *Conn) dispatch() {
	defer c.wg.Done()
	var batch []incoming
	var msgs []bridge.Message
	for {
		select {
		case <-c.ctx.Done():
			return
		case in := <-c.queue:
			if c.cfg.OnMessagesAck == nil {
				c.cfg.OnMessage(in.msg)
				continue
			}
			batch = append(batch[:0], in)
		more:
			for len(batch) < c.cfg.MaxBatch {
				select {
				case in := <-c.queue:
					batch = append(batch, in)
				default:
					break more
				}
			}
			msgs = msgs[:0]
			for _, in := range batch {
				msgs = append(msgs, in.msg)
			}
			if !c.cfg.OnMessagesAck(msgs) {
				// Given up: nothing more is acknowledged on this Conn.
				<-c.ctx.Done()
				return
			}
			gen := c.generation()
			for i, in := range batch {
				// An ack for a message of an earlier connection would land
				// in the wrong session (paho.golang issue #160): the broker
				// redelivers that message instead.
				if in.gen == gen && in.pkt.QoS > 0 {
					if err := in.client.Ack(in.pkt); err != nil {
						c.log.Debug("mqtt: acknowledging a message failed", "error", err)
					}
				}
				batch[i] = incoming{} // let the packet go
			}
			clear(msgs)
		}
	}
}

// subackReasonName is the MQTT v5 name of a SUBACK reason code.
func subackReasonName(code byte) string {
	if code <= 0x02 {
		return fmt.Sprintf("granted QoS %d", code)
	}
	return bridge.ReasonName(code)
}
