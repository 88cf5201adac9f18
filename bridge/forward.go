package bridge

import (
	"context"
	"errors"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// The operations of this file serve an adapter that carries a client's own
// traffic to one broker over a connection of its own (the MQTT-over-WebSocket
// proxy): the bridge does not send, but it decides, as it does for its own
// publishes and subscriptions. broker is the name of a route's Upstream;
// what the route does not own is refused with ECodeNotBridged, like a
// topic no broker bridges.

// CheckPublishOn runs every check Publish runs (CheckPublish) for a message
// sent to broker: its topic must be one broker owns.
func (b *Bridge) CheckPublishOn(ctx context.Context, id Identity, broker string, msg Message) error {
	up, err := b.checkPublish(ctx, id, &msg)
	if err != nil {
		return err
	}
	if up.Name() != broker {
		return Errorf(ECodeNotBridged, "the topic %q is not bridged to this broker", truncate(msg.Topic))
	}
	return nil
}

// Forward admits a publish that the caller sends to broker itself (send):
// the checks of CheckPublishOn, then the identity's publish budget
// (Limiter, ActionPublish), waited for rather than refused, so that a client
// over the rate is slowed down and loses nothing. The publish is counted
// (Metrics.Published) as Publish counts its own: a refusal by its error
// code, "ok" once send returned nil.
//
// It returns nil when send ran, whatever send returned (the caller has
// send's error); the refusal, an *Error, when the checks failed; ctx's
// error when ctx ended while waiting for budget.
func (b *Bridge) Forward(ctx context.Context, id Identity, broker string, msg Message, send func() error) error {
	if err := b.CheckPublishOn(ctx, id, broker, msg); err != nil {
		b.cfg.Metrics.Published(msg.QoS, ErrorCode(err))
		return err
	}
	if err := b.waitPublish(ctx, id); err != nil {
		return err
	}
	if send() == nil {
		b.cfg.Metrics.Published(msg.QoS, "ok")
	}
	return nil
}

// waitPublish waits until the identity's budget allows one more publish,
// or ctx ends.
func (b *Bridge) waitPublish(ctx context.Context, id Identity) error {
	for {
		err := b.cfg.Limiter.Allow(id, ActionPublish)
		if err == nil {
			return nil
		}
		wait := 100 * time.Millisecond
		if e, ok := errors.AsType[*Error](err); ok && e.RetryAfter > 0 {
			wait = min(e.RetryAfter, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// CheckSubscribeOn is CheckSubscribe for a filter subscribed to at broker:
// the filter must lie inside the topics broker owns.
func (b *Bridge) CheckSubscribeOn(ctx context.Context, id Identity, broker string, filter string) error {
	if err := b.validateFilter(filter); err != nil {
		return err
	}
	r := b.routeNamed(broker)
	covered := false
	for i := 0; r != nil && i < len(r.Filters) && !covered; i++ {
		covered = topic.Covers(r.Filters[i], filter)
	}
	if !covered {
		return Errorf(ECodeNotBridged, "the filter %q reaches beyond the topics bridged to this broker", truncate(filter))
	}
	return b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, filter)
}

// MayReceiveOn checks a message broker delivers on a topic name to a
// subscription the caller holds there: the identity's current subscribe
// rules (as for every read of the bridge) and the topics broker owns. A
// subscription the identity was once allowed (a session that outlives its
// connection) does not make a delivery allowed.
func (b *Bridge) MayReceiveOn(ctx context.Context, id Identity, broker string, name string) error {
	if err := b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, name); err != nil {
		return err
	}
	if up, err := b.route(name); err != nil || up.Name() != broker {
		return Errorf(ECodeNotBridged, "the topic %q is not bridged to this broker", truncate(name))
	}
	return nil
}

// routeNamed is the route of the broker named name, nil when none.
func (b *Bridge) routeNamed(name string) *Route {
	for i := range b.routes {
		if b.routes[i].Upstream.Name() == name {
			return &b.routes[i]
		}
	}
	return nil
}
