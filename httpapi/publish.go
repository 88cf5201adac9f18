package httpapi

import (
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Header names that carry MQTT v5 properties on raw requests and responses.
const (
	hdrPayloadFormat   = "MQTT-Payload-Format"
	hdrResponseTopic   = "MQTT-Response-Topic"
	hdrCorrelationData = "MQTT-Correlation-Data" // base64
	hdrUserProperty    = "MQTT-User-Property"    // key=value, percent-encoded, repeatable, comma-separated
	hdrMessageExpiry   = "MQTT-Message-Expiry"   // seconds left (responses)
	hdrQoS             = "MQTT-QoS"
	hdrRetain          = "MQTT-Retain"
	hdrMessageID       = "MQTT-Message-Id"
	hdrTopic           = "MQTT-Topic"
)

// topicParam is the MQTT topic in a /v1/topics/{topic} URL: the rest of the
// percent-decoded path, each level a path segment.
func topicParam(c *gin.Context) string {
	return strings.TrimPrefix(c.Param("topic"), "/")
}

// checkQuery refuses query parameters the endpoint does not know, so a typo
// is an error instead of being silently ignored.
func checkQuery(c *gin.Context, known ...string) error {
	_, err := checkedQuery(c, known...)
	return err
}

// checkedQuery is checkQuery that also returns the parsed query, so that
// the handler does not parse it a second time. With no query string it
// parses nothing and returns nil (on which Get answers "").
func checkedQuery(c *gin.Context, known ...string) (url.Values, error) {
	if c.Request.URL.RawQuery == "" {
		return nil, nil
	}
	q := c.Request.URL.Query()
	for name := range q {
		ok := false
		for _, k := range known {
			ok = ok || name == k
		}
		if !ok {
			return nil, invalid("unknown query parameter %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
	return q, nil
}

// readBody reads at most limit bytes of the body; more is payload_too_large.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, bridge.Errorf(bridge.ECodePayloadTooLarge, "request body of %d bytes exceeds the limit of %d bytes", c.Request.ContentLength, limit)
	}
	// Sized from Content-Length when there is one (plus a byte, so that
	// reading the end needs no growth), else io.ReadAll's 512 bytes. A
	// claimed length reserves at most 64 KiB before the bytes arrive.
	size := 512
	if n := c.Request.ContentLength; n >= 0 {
		size = int(min(n, 64<<10)) + 1
	}
	body, err := readAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit), size)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, bridge.Errorf(bridge.ECodePayloadTooLarge, "request body exceeds the limit of %d bytes", limit)
	}
	if err != nil {
		return nil, invalid("reading the request body: %v", err)
	}
	return body, nil
}

// readAll is io.ReadAll starting with a buffer of size bytes.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
	}
}

// publishRaw is POST /v1/topics/{topic}: the body is the payload.
func (s *Server) publishRaw(c *gin.Context) {
	msg, err := s.rawMessage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.publish(c, msg)
}

func (s *Server) rawMessage(c *gin.Context) (bridge.Message, error) {
	msg := bridge.Message{Topic: topicParam(c), QoS: 1}
	q, err := checkedQuery(c, "qos", "retain", "expiry")
	if err != nil {
		return msg, err
	}
	if v := q.Get("qos"); v != "" {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n > 2 {
			return msg, invalid("qos must be 0, 1 or 2, not %q", v)
		}
		msg.QoS = byte(n)
	}
	if v := q.Get("retain"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return msg, invalid("retain must be true or false, not %q", v)
		}
		msg.Retain = b
	}
	if v := q.Get("expiry"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return msg, invalid("expiry must be a number of seconds from 0 to 4294967295, not %q", v)
		}
		e := uint32(n)
		msg.Properties.MessageExpiry = &e
	}
	if err := headerProperties(c.Request.Header, &msg.Properties); err != nil {
		return msg, err
	}
	body, err := readBody(c, int64(s.bridge.MaxPayload()))
	if err != nil {
		return msg, err
	}
	msg.Payload = body
	return msg, nil
}

// Canonical forms of the request header names headerProperties reads, so
// that each lookup need not canonicalise (and allocate) the name again.
const (
	hdrPayloadFormatKey   = "Mqtt-Payload-Format"
	hdrResponseTopicKey   = "Mqtt-Response-Topic"
	hdrCorrelationDataKey = "Mqtt-Correlation-Data"
	hdrUserPropertyKey    = "Mqtt-User-Property"
)

// hget is h.Get(key) for a key already in canonical form.
func hget(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerProperties reads MQTT v5 properties from request headers.
func headerProperties(h http.Header, p *bridge.Properties) error {
	if ct := h.Get("Content-Type"); ct != "" {
		// curl -d sends this by default; it says nothing about the payload.
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/x-www-form-urlencoded" {
			p.ContentType = ct
		}
	}
	if v := hget(h, hdrPayloadFormatKey); v != "" {
		switch v {
		case "0", "1":
			b := v[0] - '0'
			p.PayloadFormat = &b
		default:
			return invalid("%s must be 0 or 1, not %q", hdrPayloadFormat, v)
		}
	}
	if v := hget(h, hdrResponseTopicKey); v != "" {
		rt, err := url.PathUnescape(v)
		if err != nil {
			return invalid("%s %q is not properly percent-encoded", hdrResponseTopic, v)
		}
		p.ResponseTopic = rt
	}
	if v := hget(h, hdrCorrelationDataKey); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return invalid("%s must be base64: %v", hdrCorrelationData, err)
		}
		p.CorrelationData = b
	}
	for _, line := range h[hdrUserPropertyKey] {
		for _, item := range strings.Split(line, ",") {
			item = strings.TrimSpace(item)
			k, v, ok := strings.Cut(item, "=")
			if !ok {
				return invalid("%s items must be key=value, got %q", hdrUserProperty, item)
			}
			key, err1 := url.PathUnescape(k)
			val, err2 := url.PathUnescape(v)
			if err1 != nil || err2 != nil {
				return invalid("%s %q is not properly percent-encoded", hdrUserProperty, item)
			}
			p.UserProperties = append(p.UserProperties, bridge.UserProperty{Key: key, Value: val})
		}
	}
	return nil
}

// jsonBodyLimit bounds a JSON publish body: a base64 payload of the largest
// allowed size and its properties fit.
func (s *Server) jsonBodyLimit() int64 { return int64(s.bridge.MaxPayload())*2 + 1<<20 }

// decodeJSON reads a JSON body strictly: unknown fields are errors.
func (s *Server) decodeJSON(c *gin.Context, v any) error {
	body, err := readBody(c, s.jsonBodyLimit())
	if err != nil {
		return err
	}
	return decodeStrictJSON(body, v)
}

// publishJSON is POST /v1/publish.
func (s *Server) publishJSON(c *gin.Context) {
	var req wire.PublishRequest
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	msg, err := req.Message()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.publish(c, msg)
}

func (s *Server) publish(c *gin.Context, msg bridge.Message) {
	res, err := s.bridge.Publish(c, identity(c), msg)
	if err != nil {
		s.fail(c, err)
		return
	}
	status, body := publishOK(msg, res)
	c.Data(status, "application/json; charset=utf-8", body.AppendJSON(make([]byte, 0, 128)))
}

func publishOK(msg bridge.Message, res bridge.PublishResult) (int, wire.PublishResponse) {
	status := http.StatusOK
	if msg.QoS == 0 {
		status = http.StatusAccepted
	}
	return status, wire.NewPublishResponse(&msg, res)
}

// BatchResult is one item's outcome in a batch: its status and either the
// publish response or the error.
type BatchResult struct {
	Index  int                   `json:"index"`
	Status int                   `json:"status"`
	Result *wire.PublishResponse `json:"result,omitempty"`
	Error  *wire.ErrorDetail     `json:"error,omitempty"`
}

// publishBatch is POST /v1/publish/batch: an ordered array of publish
// requests, all or nothing at the checks (bridge.PublishBatch): if one is
// invalid the whole batch is refused with 400 and per-item errors, and
// nothing is published. Otherwise the items are published one after
// another, in order, and each gets its own result.
func (s *Server) publishBatch(c *gin.Context) {
	var reqs []wire.PublishRequest
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.decodeJSON(c, &reqs); err != nil {
		s.fail(c, err)
		return
	}
	if len(reqs) == 0 || len(reqs) > s.cfg.MaxBatch {
		s.fail(c, invalid("a batch holds 1 to %d messages, not %d", s.cfg.MaxBatch, len(reqs)))
		return
	}
	msgs := make([]bridge.Message, len(reqs))
	invalid := make([]error, len(reqs))
	for i := range reqs {
		msgs[i], invalid[i] = reqs[i].Message()
	}
	outcomes, err := s.bridge.PublishBatch(c, identity(c), msgs, invalid)
	if r, ok := errors.AsType[*bridge.BatchRefused](err); ok {
		var refused []BatchResult
		for i, err := range r.Errs {
			if err != nil {
				status, body := s.toError(c, err)
				refused = append(refused, BatchResult{Index: i, Status: status, Error: &body.Error})
			}
		}
		c.JSON(http.StatusBadRequest, gin.H{
			"error":   wire.ErrorDetail{Code: bridge.ECodeInvalidRequest, Message: r.Error() + ": see results"},
			"results": refused,
		})
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	results := make([]BatchResult, len(msgs))
	for i, o := range outcomes {
		if o.Err != nil {
			status, body := s.toError(c, o.Err)
			results[i] = BatchResult{Index: i, Status: status, Error: &body.Error}
			if status == http.StatusTooManyRequests {
				c.Header("Retry-After", retryAfter(o.Err))
			}
			continue
		}
		status, body := publishOK(msgs[i], o.Result)
		results[i] = BatchResult{Index: i, Status: status, Result: &body}
	}
	c.JSON(http.StatusOK, gin.H{"results": results})
}
