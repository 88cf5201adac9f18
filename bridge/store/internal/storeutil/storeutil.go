// Package storeutil holds the rules every bridge.Store implementation shares,
// so the memory and Redis stores cannot drift apart: argument checks, the
// normal form of a stored message, message ids, the history window and
// prefix ranges.
//
// It is internal to bridge/store and does no I/O.
package storeutil

import (
	"fmt"
	"math"
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
// within it, written "<ms>-<seq>" like a Redis stream id. The zero ID,
// "0-0", is below every id a store assigns.
type ID struct {
	MS  uint64
	Seq uint64
}

// ParseID parses an id of the form "<ms>-<seq>"; the error is an
// *bridge.Error with code invalid_request (see bridge.ParseID).
func ParseID(s string) (ID, error) {
	ms, seq, err := bridge.ParseID(s)
	return ID{MS: ms, Seq: seq}, err
}

// String is the id's "<ms>-<seq>" form.
func (id ID) String() string {
	return strconv.FormatUint(id.MS, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Compare returns -1, 0 or +1 as id is older than, equal to or newer than o.
func (id ID) Compare(o ID) int {
	switch {
	case id.MS < o.MS || id.MS == o.MS && id.Seq < o.Seq:
		return -1
	case id == o:
		return 0
	}
	return 1
}

// Less reports whether id is older than o.
func (id ID) Less(o ID) bool { return id.Compare(o) < 0 }

// Succ returns the smallest id greater than id, and false when id is the
// largest id there is.
func (id ID) Succ() (ID, bool) {
	switch {
	case id.Seq < math.MaxUint64:
		return ID{MS: id.MS, Seq: id.Seq + 1}, true
	case id.MS < math.MaxUint64:
		return ID{MS: id.MS + 1}, true
	}
	return id, false
}

// Next returns the id that follows id at the time nowMS, the rule of Redis
// XADD: a new millisecond starts again at sequence 0; when the clock has not
// advanced (or went back), the last millisecond is kept and the sequence
// grows, so ids always increase.
func (id ID) Next(nowMS int64) ID {
	if nowMS > 0 && uint64(nowMS) > id.MS {
		return ID{MS: uint64(nowMS)}
	}
	return ID{MS: id.MS, Seq: id.Seq + 1}
}

// Default history window, for stores whose Config leaves it zero.
const (
	DefaultHistorySize = 10000
	DefaultHistoryAge  = time.Hour
)

// HistoryWindow fills in the default history bounds and rejects what
// cannot work: a negative size or an age that is negative or shorter than
// the millisecond ids are counted in.
func HistoryWindow(size int, age time.Duration) (int, time.Duration, error) {
	switch {
	case size == 0:
		size = DefaultHistorySize
	case size < 0:
		return 0, 0, fmt.Errorf("negative HistorySize %d", size)
	}
	switch {
	case age == 0:
		age = DefaultHistoryAge
	case age < time.Millisecond:
		return 0, 0, fmt.Errorf("HistoryAge %v is below 1ms", age)
	}
	return size, age, nil
}

// CheckAfter checks the arguments of After and returns the parsed id.
func CheckAfter(after string, limit int) (ID, error) {
	if limit < 1 || limit > MaxLimit {
		return ID{}, bridge.Errorf(bridge.ECodeInvalidRequest, "limit must be between 1 and %d, not %d", MaxLimit, limit)
	}
	return ParseID(after)
}

// Gap is the error After returns when messages after the id after have
// left the history window, whose newest trimmed id is trimmed.
func Gap(after, trimmed ID) error {
	return fmt.Errorf("%w: resuming after %s, but the window was trimmed up to %s", bridge.ErrGap, after, trimmed)
}

// CheckGroupNames checks the group and consumer names of a Groups call.
func CheckGroupNames(names ...string) error {
	for _, n := range names {
		if n == "" {
			return bridge.Errorf(bridge.ECodeInvalidRequest, "group and consumer names must not be empty")
		}
	}
	return nil
}

// CheckCount checks how many messages a Groups call asks for.
func CheckCount(n int) error {
	if n < 1 || n > MaxLimit {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "count must be between 1 and %d, not %d", MaxLimit, n)
	}
	return nil
}
