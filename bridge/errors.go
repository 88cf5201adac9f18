package bridge

import (
	"errors"
	"fmt"
	"time"
)

// Application error codes. httpapi maps each to one HTTP status; anything
// that is not an *Error is an internal error.
const (
	ECodeInvalidTopic      = "invalid_topic"      // a topic name or filter breaks the MQTT rules
	ECodeInvalidRequest    = "invalid_request"    // malformed body, parameter or property
	ECodeInvalidCursor     = "invalid_cursor"     // a list cursor this server did not make for this caller and filter
	ECodeNotBridged        = "topic_not_bridged"  // no configured broker owns the topic
	ECodeForbidden         = "forbidden"          // the authorizer or the broker refused
	ECodeUnauthorized      = "unauthorized"       // no or bad credentials
	ECodeNotFound          = "not_found"          // no last value for the topic
	ECodePayloadTooLarge   = "payload_too_large"  // over the configured limit or the broker's maximum packet size
	ECodeRateLimited       = "rate_limited"       // too many requests, or the broker's quota
	ECodeBrokerUnavailable = "broker_unavailable" // the broker is not connected; retry later
	ECodeTimeout           = "timeout"            // sent, but the outcome is unknown
	ECodeBrokerRejected    = "broker_rejected"    // the broker answered with a failure reason code
	ECodeStoreUnavailable  = "store_unavailable"  // the store did not answer
	ECodeGap               = "gap"                // the history window no longer covers the requested position
	ECodeInternal          = "internal"           // a bug or an unexpected failure
	ECodeSlowConsumer      = "slow_consumer"      // a client's queue overflowed
	ECodeClosed            = "closed"             // the feed or connection was closed
	ECodeFenced            = "fenced"             // this instance no longer holds the ingest lease
)

// Error is the one application error type. Code is one of the ECode
// constants; Message is safe to show to the client.
type Error struct {
	Code    string
	Message string
	// ReasonCode is the MQTT reason code when the broker refused (>= 0x80),
	// else 0.
	ReasonCode byte
	// RetryAfter is when to try again, for ECodeRateLimited; 0 when unknown.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.ReasonCode != 0 {
		return fmt.Sprintf("%s: %s (reason code 0x%02X)", e.Code, e.Message, e.ReasonCode)
	}
	return e.Code + ": " + e.Message
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode is the code of err's *Error, or ECodeInternal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// Sentinels that adapters return (wrapped with %w where they add detail).
var (
	// ErrNotFound: the store has no (unexpired) last value for the topic.
	ErrNotFound = &Error{Code: ECodeNotFound, Message: "no message on this topic"}
	// ErrUnavailable: the broker connection is down; nothing was sent.
	ErrUnavailable = &Error{Code: ECodeBrokerUnavailable, Message: "the MQTT broker is not connected"}
	// ErrTimeout: the publish was sent but not acknowledged in time.
	ErrTimeout = &Error{Code: ECodeTimeout, Message: "the broker did not acknowledge in time; the outcome is unknown"}
	// ErrGap: messages after the requested id may have been trimmed from
	// the history window; the caller must resynchronise (read the last
	// values) instead of resuming.
	ErrGap = &Error{Code: ECodeGap, Message: "messages after this id have left the history window"}
)

// ErrSlowConsumer: a feed's queue was full; the client is disconnected.
var ErrSlowConsumer = &Error{Code: ECodeSlowConsumer, Message: "the client did not keep up: its queue is full"}

// ErrFenced: the ingest lease is held by another instance; nothing was
// written.
var ErrFenced = &Error{Code: ECodeFenced, Message: "the ingest lease is held by another instance"}

// ErrFeedClosed: the feed was closed by its owner.
var ErrFeedClosed = &Error{Code: ECodeClosed, Message: "closed"}

// ReasonError turns a failing MQTT PUBACK/PUBREC reason code (>= 0x80)
// into an *Error whose code says how to treat it.
func ReasonError(code byte, reason string) *Error {
	c := ECodeBrokerRejected
	switch code {
	case 0x87: // Not authorized
		c = ECodeForbidden
	case 0x97: // Quota exceeded
		c = ECodeRateLimited
	case 0x95: // Packet too large
		c = ECodePayloadTooLarge
	}
	msg := "the broker refused the publish: " + ReasonName(code)
	if reason != "" {
		msg += ": " + reason
	}
	return &Error{Code: c, Message: msg, ReasonCode: code}
}

// ReasonName is the MQTT 5 name of a reason code: the one table of them.
// A code of 0x80 and above means the same failure in every packet that
// carries it; below, it is the name a publish's acknowledgement gives it
// (DISCONNECT and SUBACK name a few of their own: bridge/mqtt).
func ReasonName(code byte) string {
	if name, ok := reasonNames[code]; ok {
		return name
	}
	return fmt.Sprintf("reason code 0x%02X", code)
}

var reasonNames = map[byte]string{
	0x00: "success",
	0x10: "no matching subscribers",
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "QoS not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded",
	0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}
