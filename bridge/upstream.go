package bridge

import "context"

// PublishResult is the broker's answer to a publish.
type PublishResult struct {
	// ReasonCode is the PUBACK/PUBCOMP reason code (0 success, 0x10 no
	// matching subscribers); always 0 for QoS 0.
	ReasonCode byte
	// Reason is the broker's Reason String property, if any.
	Reason string
}

// Upstream is one connection to an MQTT broker, as the bridge uses it.
// The MQTT adapter (bridge/mqtt) implements it with autopaho.
type Upstream interface {
	// Name is the configured broker name.
	Name() string
	// Publish sends msg. QoS 0 returns once the packet is written to the
	// connection; QoS 1/2 once the broker acknowledged it. Errors:
	// ErrUnavailable (not connected; returned fast, nothing sent),
	// ErrTimeout (sent, outcome unknown), ReasonError (reason >= 0x80),
	// *Error with ECodePayloadTooLarge (over the broker's Maximum Packet
	// Size; nothing sent).
	Publish(ctx context.Context, msg Message) (PublishResult, error)
	// Problems lists why the connection is not ready (not connected, a
	// subscription refused, ...); empty when connected and subscribed.
	Problems() []string
}
