package httpapi

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// getTopic is GET /v1/topics/{topic}: the last message on the exact topic,
// raw with metadata headers, or the JSON envelope for Accept: application/json.
func (s *Server) getTopic(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	msg, err := s.bridge.Last(c, identity(c), topicParam(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	etag := `"` + msg.ID + `"`
	h := c.Writer.Header()
	h.Set("ETag", etag)
	h.Set("Last-Modified", msg.ReceivedAt.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept")
	if etagMatch(c.GetHeader("If-None-Match"), etag) {
		c.Status(http.StatusNotModified)
		return
	}
	now := time.Now()
	if wantsJSON(c.GetHeader("Accept")) {
		c.JSON(http.StatusOK, NewEnvelope(&msg, now))
		return
	}
	writeMetaHeaders(h, &msg, now)
	c.Data(http.StatusOK, contentType(&msg), msg.Payload)
}

// wantsJSON reports whether the Accept header asks for application/json.
func wantsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			return true
		}
	}
	return false
}

// etagMatch implements If-None-Match with weak comparison and "*".
func etagMatch(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == "*" || part == etag {
			return true
		}
	}
	return false
}

func contentType(msg *bridge.Message) string {
	switch {
	case msg.Properties.ContentType != "":
		return msg.Properties.ContentType
	case utf8.Valid(msg.Payload):
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// writeMetaHeaders puts a message's MQTT metadata into response headers.
func writeMetaHeaders(h http.Header, msg *bridge.Message, now time.Time) {
	h.Set(hdrMessageID, msg.ID)
	h.Set(hdrTopic, headerEscape(msg.Topic))
	h.Set(hdrQoS, strconv.Itoa(int(msg.QoS)))
	h.Set(hdrRetain, strconv.FormatBool(msg.Retain))
	p := &msg.Properties
	if p.PayloadFormat != nil {
		h.Set(hdrPayloadFormat, strconv.Itoa(int(*p.PayloadFormat)))
	}
	if left, ok := msg.RemainingExpiry(now); ok {
		h.Set(hdrMessageExpiry, strconv.FormatUint(uint64(left), 10))
	}
	if p.ResponseTopic != "" {
		h.Set(hdrResponseTopic, headerEscape(p.ResponseTopic))
	}
	if p.CorrelationData != nil {
		h.Set(hdrCorrelationData, base64.StdEncoding.EncodeToString(p.CorrelationData))
	}
	for _, up := range p.UserProperties {
		h.Add(hdrUserProperty, headerEscape(up.Key)+"="+headerEscape(up.Value))
	}
}

// deleteTopic is DELETE /v1/topics/{topic}: clears the retained message on
// the broker and the last value.
func (s *Server) deleteTopic(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	name := topicParam(c)
	res, err := s.bridge.Delete(c, identity(c), name)
	if err != nil {
		s.fail(c, err)
		return
	}
	_, body := publishOK(bridge.Message{Topic: name, QoS: 1}, res)
	c.JSON(http.StatusOK, body)
}

// MessageList is a page of last values.
type MessageList struct {
	Messages   []Envelope `json:"messages"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// listMessages is GET /v1/messages?filter=…&limit=…&cursor=….
func (s *Server) listMessages(c *gin.Context) {
	if err := checkQuery(c, "filter", "limit", "cursor"); err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	filter := q.Get("filter")
	if filter == "" {
		s.fail(c, invalid("the filter query parameter is required, e.g. filter=%s", url.QueryEscape("sensors/+/temperature")))
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, invalid("limit must be a number from 1 to 1000, not %q", v))
			return
		}
		limit = n
	}
	var after string
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			s.fail(c, invalid("cursor %q is not one this server returned", v))
			return
		}
		after = string(b)
	}
	msgs, next, err := s.bridge.List(c, identity(c), filter, after, limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := time.Now()
	out := MessageList{Messages: make([]Envelope, 0, len(msgs))}
	for i := range msgs {
		out.Messages = append(out.Messages, NewEnvelope(&msgs[i], now))
	}
	if next != "" {
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	c.JSON(http.StatusOK, out)
}
