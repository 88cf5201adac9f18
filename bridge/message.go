package bridge

import (
	"time"
	"unicode/utf8"
)

// Message is one MQTT application message as the bridge sees and stores it.
type Message struct {
	// ID is assigned by the Store when the message is recorded. It has the
	// form "<milliseconds>-<sequence>" (like a Redis stream id), grows
	// monotonically within one store, and is opaque to clients.
	ID string
	// Topic is the MQTT topic name (never a filter).
	Topic string
	// Payload is the application payload, byte for byte.
	Payload []byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Retain is the MQTT retain flag as published (the bridge subscribes
	// with Retain As Published).
	Retain bool
	// Properties are the MQTT v5 publish properties the bridge carries.
	Properties Properties
	// ReceivedAt is when the bridge received (or sent) the message.
	ReceivedAt time.Time
}

// Properties are the MQTT v5 PUBLISH properties an HTTP client can see and set.
type Properties struct {
	// ContentType is the MQTT Content Type property.
	ContentType string
	// PayloadFormat is the Payload Format Indicator: nil when absent,
	// 0 unspecified bytes, 1 UTF-8 text.
	PayloadFormat *byte
	// MessageExpiry is the Message Expiry Interval in seconds; nil when
	// the message does not expire.
	MessageExpiry *uint32
	// ResponseTopic is the MQTT v5 Response Topic.
	ResponseTopic string
	// CorrelationData is the MQTT v5 Correlation Data.
	CorrelationData []byte
	// UserProperties keep their order and may repeat keys.
	UserProperties []UserProperty
}

// UserProperty is one MQTT v5 user property (a name/value pair).
type UserProperty struct {
	Key   string
	Value string
}

// ExpiresAt is when the message expires, and false when it never does.
func (m *Message) ExpiresAt() (time.Time, bool) {
	if m.Properties.MessageExpiry == nil {
		return time.Time{}, false
	}
	return m.ReceivedAt.Add(time.Duration(*m.Properties.MessageExpiry) * time.Second), true
}

// Expired reports whether the message has expired at now.
func (m *Message) Expired(now time.Time) bool {
	at, ok := m.ExpiresAt()
	return ok && !now.Before(at)
}

// RemainingExpiry is the expiry interval left at now, in whole seconds
// rounded up, as MQTT requires a broker to forward it.
func (m *Message) RemainingExpiry(now time.Time) (uint32, bool) {
	at, ok := m.ExpiresAt()
	if !ok {
		return 0, false
	}
	left := at.Sub(now)
	if left <= 0 {
		return 0, true
	}
	return uint32((left + time.Second - 1) / time.Second), true
}

// IsDelete reports whether the message deletes the retained value of its
// topic: a retained message with an empty payload.
func (m *Message) IsDelete() bool { return m.Retain && len(m.Payload) == 0 }

// TextPayload reports whether the payload is valid UTF-8 and may be shown as
// text; otherwise it is shown base64-encoded.
func (m *Message) TextPayload() bool { return utf8.Valid(m.Payload) }
