package redisstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// valueFields are the fields of a last value hash, in the order decodeValue
// expects them.
var valueFields = []string{"id", "payload", "qos", "retain", "props", "received_at"}

// entryFields are the fields of a history stream entry, in the order the
// put script writes them: the last value's fields with the topic in place
// of the id, which is the entry's own. Every entry has all of them, in this
// order, so Redis stores the names once per stream node. After them comes
// seqField.
var entryFields = []string{"topic", "payload", "qos", "retain", "props", "received_at"}

// seqField is the last field of a history entry: its sequence number, 1 for
// the first entry ever numbered, one more for each next one (the put
// script). Entries written before the put script numbered them lack it.
const seqField = "n"

// parseSeq reads a seqField value: 0 when it is missing or not a number.
func parseSeq(v any) int64 {
	s, _ := v.(string)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// entrySeq is the sequence number of a history entry, as a script returns
// it; 0 when it has none.
func entrySeq(raw any) int64 {
	e, _ := raw.([]any)
	if len(e) != 2 {
		return 0
	}
	kv, _ := e[1].([]any)
	if i := 2 * len(entryFields); len(kv) == i+2 && kv[i] == seqField {
		return parseSeq(kv[i+1])
	}
	return 0
}

// storedProps is the JSON form of bridge.Properties in the props field.
type storedProps struct {
	ContentType     string      `json:"ct,omitempty"`
	PayloadFormat   *byte       `json:"pf,omitempty"`
	MessageExpiry   *uint32     `json:"me,omitempty"`
	ResponseTopic   string      `json:"rt,omitempty"`
	CorrelationData []byte      `json:"cd,omitempty"` // base64
	UserProperties  [][2]string `json:"up,omitempty"` // ordered [name, value] pairs
}

// encodeProps returns the props field: "" when there are no properties.
func encodeProps(p bridge.Properties) (string, error) {
	sp := storedProps{
		ContentType:     p.ContentType,
		PayloadFormat:   p.PayloadFormat,
		MessageExpiry:   p.MessageExpiry,
		ResponseTopic:   p.ResponseTopic,
		CorrelationData: p.CorrelationData,
	}
	for _, up := range p.UserProperties {
		sp.UserProperties = append(sp.UserProperties, [2]string{up.Key, up.Value})
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return "", bridge.Errorf(bridge.ECodeInternal, "encoding properties: %v", err)
	}
	if string(b) == "{}" {
		return "", nil
	}
	return string(b), nil
}

// decodeValue turns the HMGET answer for valueFields into a message; ok is
// false when the hash does not exist.
func decodeValue(name string, vals []any) (m bridge.Message, ok bool, err error) {
	if len(vals) != len(valueFields) || vals[0] == nil {
		return bridge.Message{}, false, nil
	}
	f := make([]string, len(vals))
	for i, v := range vals {
		s, isString := v.(string)
		if !isString {
			return bridge.Message{}, false, corrupt(name, "field %s is missing", valueFields[i])
		}
		f[i] = s
	}
	m, err = decodeFields(name, f)
	if err != nil {
		return bridge.Message{}, false, err
	}
	return m, true, nil
}

// decodeEntry turns a history entry, as a script returns it ([id, [name,
// value, ...]]), into a message. It reads entryFields and ignores what
// follows them (seqField).
func decodeEntry(raw any) (bridge.Message, error) {
	e, ok := raw.([]any)
	if !ok || len(e) != 2 {
		return bridge.Message{}, corruptEntry("?", "not an [id, fields] pair")
	}
	id, ok := e[0].(string)
	if !ok {
		return bridge.Message{}, corruptEntry("?", "the id is not a string")
	}
	kv, ok := e[1].([]any)
	if !ok || len(kv) < 2*len(entryFields) {
		return bridge.Message{}, corruptEntry(id, "want the fields %q", entryFields)
	}
	f := make([]string, len(entryFields))
	for i, name := range entryFields {
		k, _ := kv[2*i].(string)
		v, isString := kv[2*i+1].(string)
		if k != name || !isString {
			return bridge.Message{}, corruptEntry(id, "want the fields %q", entryFields)
		}
		f[i] = v
	}
	name := f[0]
	f[0] = id // the value fields have the id where the entry has the topic
	return decodeFields(name, f)
}

// decodeFields decodes the values of valueFields, in order, of the topic
// name.
func decodeFields(name string, f []string) (bridge.Message, error) {
	m := bridge.Message{ID: f[0], Topic: name, Retain: f[3] == "1"}
	if f[1] != "" {
		m.Payload = []byte(f[1])
	}
	qos, err := strconv.ParseUint(f[2], 10, 8)
	if err != nil || qos > 2 {
		return bridge.Message{}, corrupt(name, "bad qos %q", f[2])
	}
	m.QoS = byte(qos)
	if f[4] != "" {
		var sp storedProps
		if err := json.Unmarshal([]byte(f[4]), &sp); err != nil {
			return bridge.Message{}, corrupt(name, "bad props: %v", err)
		}
		m.Properties = bridge.Properties{
			ContentType:     sp.ContentType,
			PayloadFormat:   sp.PayloadFormat,
			MessageExpiry:   sp.MessageExpiry,
			ResponseTopic:   sp.ResponseTopic,
			CorrelationData: sp.CorrelationData,
		}
		if len(sp.CorrelationData) == 0 {
			m.Properties.CorrelationData = nil
		}
		for _, up := range sp.UserProperties {
			m.Properties.UserProperties = append(m.Properties.UserProperties, bridge.UserProperty{Key: up[0], Value: up[1]})
		}
	}
	ms, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return bridge.Message{}, corrupt(name, "bad received_at %q", f[5])
	}
	m.ReceivedAt = time.UnixMilli(ms)
	return m, nil
}

func corrupt(name, format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeInternal, "corrupt message of topic %q in Redis: %s", name, fmt.Sprintf(format, args...))
}

func corruptEntry(id, format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeInternal, "corrupt history entry %s in Redis: %s", id, fmt.Sprintf(format, args...))
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
