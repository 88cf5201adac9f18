// Package wire is the JSON form of messages shared by the HTTP API and the
// WebSocket protocol: the message envelope, the publish request and its
// result. It knows the bridge domain and encoding/json, nothing else.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Envelope is the JSON form of a message, everywhere a message is shown as
// JSON. Exactly one of Payload (valid UTF-8) and PayloadBase64 is set.
type Envelope struct {
	ID            string          `json:"id"`
	Topic         string          `json:"topic"`
	Payload       *string         `json:"payload,omitempty"`
	PayloadBase64 *string         `json:"payload_base64,omitempty"`
	QoS           byte            `json:"qos"`
	Retain        bool            `json:"retain"`
	Properties    *JSONProperties `json:"properties,omitempty"`
	ReceivedAt    time.Time       `json:"received_at"`
}

// JSONProperties are the MQTT v5 properties in JSON, for input and output.
// Correlation data is text in correlation_data when it is valid UTF-8,
// else base64 in correlation_data_base64 (input accepts either).
type JSONProperties struct {
	ContentType           string         `json:"content_type,omitempty"`
	PayloadFormat         *byte          `json:"payload_format,omitempty"`
	MessageExpiry         *uint32        `json:"message_expiry,omitempty"`
	ResponseTopic         string         `json:"response_topic,omitempty"`
	CorrelationData       *string        `json:"correlation_data,omitempty"`
	CorrelationDataBase64 *string        `json:"correlation_data_base64,omitempty"`
	UserProperties        []UserProperty `json:"user_properties,omitempty"`
}

// UserProperty is one MQTT v5 user property.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// NewEnvelope renders msg; the expiry shown is what remains at now.
func NewEnvelope(msg *bridge.Message, now time.Time) Envelope {
	env := Envelope{ID: msg.ID, Topic: msg.Topic, QoS: msg.QoS, Retain: msg.Retain, ReceivedAt: msg.ReceivedAt.UTC()}
	if utf8.Valid(msg.Payload) {
		s := string(msg.Payload)
		env.Payload = &s
	} else {
		s := base64.StdEncoding.EncodeToString(msg.Payload)
		env.PayloadBase64 = &s
	}
	p := msg.Properties
	var jp JSONProperties
	jp.ContentType = p.ContentType
	jp.PayloadFormat = p.PayloadFormat
	if left, ok := msg.RemainingExpiry(now); ok {
		jp.MessageExpiry = &left
	}
	jp.ResponseTopic = p.ResponseTopic
	if p.CorrelationData != nil {
		if utf8.Valid(p.CorrelationData) {
			s := string(p.CorrelationData)
			jp.CorrelationData = &s
		} else {
			s := base64.StdEncoding.EncodeToString(p.CorrelationData)
			jp.CorrelationDataBase64 = &s
		}
	}
	for _, up := range p.UserProperties {
		jp.UserProperties = append(jp.UserProperties, UserProperty(up))
	}
	if !jp.empty() {
		env.Properties = &jp
	}
	return env
}

func (jp *JSONProperties) empty() bool {
	return jp.ContentType == "" && jp.PayloadFormat == nil && jp.MessageExpiry == nil && jp.ResponseTopic == "" &&
		jp.CorrelationData == nil && jp.CorrelationDataBase64 == nil && len(jp.UserProperties) == 0
}

// PublishRequest is the JSON body of POST /v1/publish and one item of a batch.
type PublishRequest struct {
	Topic         string          `json:"topic"`
	Payload       *string         `json:"payload"`
	PayloadBase64 *string         `json:"payload_base64"`
	PayloadJSON   json.RawMessage `json:"payload_json"`
	QoS           *byte           `json:"qos"`
	Retain        bool            `json:"retain"`
	Properties    *JSONProperties `json:"properties"`
}

// Message turns the request into a bridge.Message, checking the JSON-level
// rules (one payload field, base64 well-formed); the bridge checks the rest.
func (r *PublishRequest) Message() (bridge.Message, error) {
	msg := bridge.Message{Topic: r.Topic, QoS: 1, Retain: r.Retain}
	if r.QoS != nil {
		msg.QoS = *r.QoS
	}
	n := 0
	if r.Payload != nil {
		n++
		msg.Payload = []byte(*r.Payload)
	}
	if r.PayloadBase64 != nil {
		n++
		b, err := base64.StdEncoding.DecodeString(*r.PayloadBase64)
		if err != nil {
			return msg, invalid("payload_base64 is not valid base64: %v", err)
		}
		msg.Payload = b
	}
	if r.PayloadJSON != nil {
		n++
		var buf bytes.Buffer
		if err := json.Compact(&buf, r.PayloadJSON); err != nil {
			return msg, invalid("payload_json: %v", err)
		}
		msg.Payload = buf.Bytes()
	}
	if n != 1 {
		return msg, invalid("exactly one of payload, payload_base64 and payload_json is required")
	}
	if r.Properties != nil {
		p, err := r.Properties.properties()
		if err != nil {
			return msg, err
		}
		msg.Properties = p
	}
	if r.PayloadJSON != nil && msg.Properties.ContentType == "" {
		msg.Properties.ContentType = "application/json"
	}
	return msg, nil
}

func (jp *JSONProperties) properties() (bridge.Properties, error) {
	p := bridge.Properties{
		ContentType:   jp.ContentType,
		PayloadFormat: jp.PayloadFormat,
		MessageExpiry: jp.MessageExpiry,
		ResponseTopic: jp.ResponseTopic,
	}
	switch {
	case jp.CorrelationData != nil && jp.CorrelationDataBase64 != nil:
		return p, invalid("properties: give correlation_data or correlation_data_base64, not both")
	case jp.CorrelationData != nil:
		p.CorrelationData = []byte(*jp.CorrelationData)
	case jp.CorrelationDataBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*jp.CorrelationDataBase64)
		if err != nil {
			return p, invalid("properties.correlation_data_base64 is not valid base64: %v", err)
		}
		p.CorrelationData = b
	}
	for _, up := range jp.UserProperties {
		p.UserProperties = append(p.UserProperties, bridge.UserProperty(up))
	}
	return p, nil
}

func invalid(format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeInvalidRequest, format, args...)
}

// PublishResponse is the result of a successful publish.
type PublishResponse struct {
	Topic      string `json:"topic"`
	QoS        byte   `json:"qos"`
	ReasonCode *int   `json:"reason_code,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// NewPublishResponse describes the broker's answer to msg. QoS 0 has no
// reason code: nothing was acknowledged.
func NewPublishResponse(msg *bridge.Message, res bridge.PublishResult) PublishResponse {
	body := PublishResponse{Topic: msg.Topic, QoS: msg.QoS}
	if msg.QoS == 0 {
		return body
	}
	rc := int(res.ReasonCode)
	body.ReasonCode = &rc
	body.Reason = bridge.ReasonName(res.ReasonCode)
	if res.Reason != "" {
		body.Reason += ": " + res.Reason
	}
	return body
}

// ErrorDetail is the inside of every JSON error: {"error": ErrorDetail}.
type ErrorDetail struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	ReasonCode *int   `json:"reason_code,omitempty"`
}

// Detail describes err for a client, and false when err is not a
// *bridge.Error (an internal error, whose detail must not be shown).
func Detail(err error) (ErrorDetail, bool) {
	var e *bridge.Error
	if !errors.As(err, &e) {
		return ErrorDetail{Code: bridge.ECodeInternal, Message: "internal error"}, false
	}
	d := ErrorDetail{Code: e.Code, Message: e.Message}
	if e.ReasonCode != 0 {
		rc := int(e.ReasonCode)
		d.ReasonCode = &rc
	}
	return d, true
}

// AppendJSON appends r as JSON, exactly as encoding/json (without HTML
// escaping, as the HTTP API writes JSON) would, without reflection: a
// publish answers with it on every request.
func (r PublishResponse) AppendJSON(b []byte) []byte {
	if !plainJSONString(r.Topic) || !plainJSONString(r.Reason) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(r) // cannot fail
		return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
	}
	b = append(b, `{"topic":"`...)
	b = append(b, r.Topic...)
	b = append(b, `","qos":`...)
	b = strconv.AppendUint(b, uint64(r.QoS), 10)
	if r.ReasonCode != nil {
		b = append(b, `,"reason_code":`...)
		b = strconv.AppendInt(b, int64(*r.ReasonCode), 10)
	}
	if r.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, r.Reason...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// plainJSONString reports whether s is its own JSON string body: printable
// ASCII other than '"' and '\'.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
