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
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// getTopic is GET /v1/topics/{topic}: the last message on the exact topic,
// raw with metadata headers, or the JSON envelope for Accept: application/json.
// With ?wait=N it long-polls: it answers at once when the value differs from
// If-None-Match, else waits up to N seconds for the next message (304 when
// none came and If-None-Match was given, 404 when there is still no value).
func (s *Server) getTopic(c *gin.Context) {
	q, err := checkedQuery(c, "wait")
	if err != nil {
		s.fail(c, err)
		return
	}
	name, inm := topicParam(c), c.GetHeader("If-None-Match")
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > s.cfg.MaxWait {
			s.fail(c, invalid("wait must be a number of seconds from 0 to %d, not %q", int(s.cfg.MaxWait/time.Second), v))
			return
		}
		wait = time.Duration(n) * time.Second
	}
	if wait == 0 {
		msg, err := s.bridge.Last(c, identity(c), name)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.writeMessage(c, &msg, inm)
		return
	}

	release, err := s.bridge.Connect(identity(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	defer release()
	// Subscribe before reading the current value, so that nothing falls
	// between the two.
	feed := s.bridge.NewFeed(identity(c), bridge.FeedConfig{Queue: 16, Kind: "longpoll"})
	defer feed.Close()
	if err := feed.Subscribe(c, []string{name}, bridge.SubscribeOptions{}); err != nil {
		s.fail(c, err)
		return
	}
	var msg bridge.Message
	// current reads the value and answers when it differs from
	// If-None-Match; false when the wait goes on.
	current := func() bool {
		msg, err = s.bridge.Last(c, identity(c), name)
		switch {
		case err == nil && !etagMatch(inm, etagOf(&msg)):
			s.writeMessage(c, &msg, inm)
			return true
		case err != nil && bridge.ErrorCode(err) != bridge.ECodeNotFound:
			s.fail(c, err)
			return true
		}
		return false
	}
	if current() {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case d := <-feed.C():
			feed.Took(d)
			if d.Gap != nil {
				// The message may be among those lost: read the value.
				if current() {
					return
				}
				continue
			}
			m := d.Event.Message
			if m.IsDelete() {
				s.fail(c, bridge.ErrNotFound)
				return
			}
			if !etagMatch(inm, etagOf(&m)) {
				s.writeMessage(c, &m, inm)
				return
			}
		case <-timer.C:
			s.waitedOut(c, &msg, err, inm)
			return
		case <-s.bridge.Draining(): // answer now, as if the wait ended
			s.waitedOut(c, &msg, err, inm)
			return
		case <-feed.Done():
			s.fail(c, feed.Err())
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// Canonical forms of the MQTT-* header names that every message answer
// carries, and shared values of constant headers. A shared value must
// never be modified in place; Header.Add appends to a copy since each has
// capacity 1.
const (
	hdrMessageIDKey = "Mqtt-Message-Id"
	hdrTopicKey     = "Mqtt-Topic"
	hdrQoSKey       = "Mqtt-Qos"
	hdrRetainKey    = "Mqtt-Retain"
)

var (
	hvNoCache = []string{"no-cache"}
	hvAccept  = []string{"Accept"}
	hvTrue    = []string{"true"}
	hvFalse   = []string{"false"}
	hvQoS     = [3][]string{{"0"}, {"1"}, {"2"}}
	// hvSandbox keeps a raw payload from acting in this origin: an HTML
	// or SVG payload is shown, if at all, without script, forms or
	// plugins, and loads nothing.
	hvSandbox = []string{"sandbox; default-src 'none'"}
)

func etagOf(m *bridge.Message) string { return `"` + m.ID + `"` }

// writeMessage answers with msg: 304 when it matches If-None-Match, else
// the raw payload with metadata headers or the JSON envelope.
func (s *Server) writeMessage(c *gin.Context, msg *bridge.Message, inm string) {
	etag := etagOf(msg)
	h := c.Writer.Header()
	// Keys in canonical form assigned directly (as Header.Set would store
	// them), without canonicalising them again on every request; the
	// constant values are shared slices, as gin does for Content-Type.
	h["Etag"] = []string{etag}
	h["Last-Modified"] = []string{msg.ReceivedAt.UTC().Format(http.TimeFormat)}
	h["Cache-Control"] = hvNoCache
	h["Vary"] = hvAccept
	if etagMatch(inm, etag) {
		c.Status(http.StatusNotModified)
		return
	}
	now := time.Now()
	if wantsJSON(c.GetHeader("Accept")) {
		c.JSON(http.StatusOK, wire.NewEnvelope(msg, now))
		return
	}
	writeMetaHeaders(h, msg, now)
	c.Data(http.StatusOK, contentType(msg), msg.Payload)
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

// writeMetaHeaders puts a message's MQTT metadata into the headers of a
// raw payload answer, with the policy that keeps the publisher's content
// type (text/html, image/svg+xml) from running in this origin
// (X-Content-Type-Options: nosniff is on every answer: Server.ServeHTTP).
func writeMetaHeaders(h http.Header, msg *bridge.Message, now time.Time) {
	h["Content-Security-Policy"] = hvSandbox
	// The four headers of every message, with keys in canonical form
	// (Header.Set would store them so; TestCanonicalHeaderKeys checks).
	h[hdrMessageIDKey] = []string{msg.ID}
	h[hdrTopicKey] = []string{wire.HeaderEscape(msg.Topic)}
	if int(msg.QoS) < len(hvQoS) {
		h[hdrQoSKey] = hvQoS[msg.QoS]
	} else {
		h[hdrQoSKey] = []string{strconv.Itoa(int(msg.QoS))}
	}
	if msg.Retain {
		h[hdrRetainKey] = hvTrue
	} else {
		h[hdrRetainKey] = hvFalse
	}
	p := &msg.Properties
	if p.PayloadFormat != nil {
		h.Set(hdrPayloadFormat, strconv.Itoa(int(*p.PayloadFormat)))
	}
	if left, ok := msg.RemainingExpiry(now); ok {
		h.Set(hdrMessageExpiry, strconv.FormatUint(uint64(left), 10))
	}
	if p.ResponseTopic != "" {
		h.Set(hdrResponseTopic, wire.HeaderEscape(p.ResponseTopic))
	}
	if p.CorrelationData != nil {
		h.Set(hdrCorrelationData, base64.StdEncoding.EncodeToString(p.CorrelationData))
	}
	for _, up := range p.UserProperties {
		h.Add(hdrUserProperty, wire.HeaderEscape(up.Key)+"="+wire.HeaderEscape(up.Value))
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
	Messages   []wire.Envelope `json:"messages"`
	NextCursor string          `json:"next_cursor,omitempty"`
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
	msgs, next, err := s.bridge.List(c, identity(c), filter, q.Get("cursor"), limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := time.Now()
	out := MessageList{Messages: make([]wire.Envelope, 0, len(msgs)), NextCursor: next}
	for i := range msgs {
		out.Messages = append(out.Messages, wire.NewEnvelope(&msgs[i], now))
	}
	c.JSON(http.StatusOK, out)
}

// waitedOut answers a long-poll whose wait ended without a new message:
// 304 when the client has the current value, else 404.
func (s *Server) waitedOut(c *gin.Context, msg *bridge.Message, err error, inm string) {
	if err == nil && inm != "" {
		s.writeMessage(c, msg, inm) // still the same: 304
		return
	}
	s.fail(c, bridge.ErrNotFound)
}
