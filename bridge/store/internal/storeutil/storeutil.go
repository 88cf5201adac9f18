// Package storeutil holds the rules every bridge.Store implementation shares,
// so the memory and Redis stores cannot drift apart: argument checks, the
// normal form of a stored message, message ids and prefix ranges.
//
// It is internal to bridge/store and does no I/O.
package storeutil

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// MaxLimit is the largest page size List accepts.
const MaxLimit = 1000

// ErrClosed is returned by every method of a store after Close.
var ErrClosed = &bridge.Error{Code: bridge.ECodeStoreUnavailable, Message: "the store is closed"}

// PreparePut checks msg and returns the form a store records: a deep copy
// with ReceivedAt at millisecond precision (now when zero) and empty byte
// slices and lists as nil. The ID is left for the store to assign.
func PreparePut(msg bridge.Message, now time.Time) (bridge.Message, error) {
	if err := topic.ValidateName(msg.Topic); err != nil {
		return bridge.Message{}, &bridge.Error{Code: bridge.ECodeInvalidTopic, Message: err.Error()}
	}
	if msg.QoS > 2 {
		return bridge.Message{}, bridge.Errorf(bridge.ECodeInvalidRequest, "QoS must be 0, 1 or 2, not %d", msg.QoS)
	}
	p := msg.Properties
	if err := checkString("content type", p.ContentType); err != nil {
		return bridge.Message{}, err
	}
	if err := checkString("response topic", p.ResponseTopic); err != nil {
		return bridge.Message{}, err
	}
	for _, up := range p.UserProperties {
		if err := checkString("user property name", up.Key); err != nil {
			return bridge.Message{}, err
		}
		if err := checkString("user property value", up.Value); err != nil {
			return bridge.Message{}, err
		}
	}
	if msg.ReceivedAt.IsZero() {
		msg.ReceivedAt = now
	}
	msg.ReceivedAt = time.UnixMilli(msg.ReceivedAt.UnixMilli())
	msg.ID = ""
	return Clone(msg), nil
}

// checkString applies the MQTT rule for UTF-8 encoded string properties.
func checkString(what, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "the %s must be valid UTF-8 without U+0000", what)
	}
	return nil
}

// Clone returns a deep copy of msg that shares no memory with it; empty
// byte slices and lists become nil.
func Clone(msg bridge.Message) bridge.Message {
	msg.Payload = cloneBytes(msg.Payload)
	p := &msg.Properties
	if p.PayloadFormat != nil {
		v := *p.PayloadFormat
		p.PayloadFormat = &v
	}
	if p.MessageExpiry != nil {
		v := *p.MessageExpiry
		p.MessageExpiry = &v
	}
	p.CorrelationData = cloneBytes(p.CorrelationData)
	if len(p.UserProperties) == 0 {
		p.UserProperties = nil
	} else {
		p.UserProperties = append([]bridge.UserProperty(nil), p.UserProperties...)
	}
	return msg
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// CheckList checks the arguments of List and returns the literal prefix of
// filter: every topic it matches starts with it.
func CheckList(filter string, limit int) (prefix string, err error) {
	if err := topic.ValidateFilter(filter); err != nil {
		return "", &bridge.Error{Code: bridge.ECodeInvalidTopic, Message: err.Error()}
	}
	if limit < 1 || limit > MaxLimit {
		return "", bridge.Errorf(bridge.ECodeInvalidRequest, "limit must be between 1 and %d, not %d", MaxLimit, limit)
	}
	return topic.LiteralPrefix(filter), nil
}

// PrefixEnd returns the smallest string greater than every string that
// starts with prefix, and false when there is none (prefix is empty or all
// 0xFF bytes).
func PrefixEnd(prefix string) (string, bool) {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			return prefix[:i] + string([]byte{prefix[i] + 1}), true
		}
	}
	return "", false
}

// ID is a message id: a Unix time in milliseconds and a sequence number
// within it, written "<ms>-<seq>" like a Redis stream id.
type ID struct {
	MS  int64
	Seq uint64
}

// String is the id's "<ms>-<seq>" form.
func (id ID) String() string {
	return strconv.FormatInt(id.MS, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Next returns the id that follows id at the time nowMS, the rule of Redis
// XADD: a new millisecond starts again at sequence 0; when the clock has not
// advanced (or went back), the last millisecond is kept and the sequence
// grows, so ids always increase.
func (id ID) Next(nowMS int64) ID {
	if nowMS > id.MS {
		return ID{MS: nowMS}
	}
	return ID{MS: id.MS, Seq: id.Seq + 1}
}
