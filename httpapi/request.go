package httpapi

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Webhooks is what the dead-letter endpoints need; bridge/webhook's
// Manager implements it. Both methods authorize the caller.
type Webhooks interface {
	DeadLetters(ctx context.Context, id bridge.Identity, name, after string, limit int) ([]bridge.DeadLetter, string, error)
	Replay(ctx context.Context, id bridge.Identity, name string, ids []string) (int, error)
}

// routeRequests adds request/response and the webhook endpoints.
func (s *Server) routeRequests(v1 *gin.RouterGroup) {
	if s.cfg.RequestTimeout <= 0 {
		s.cfg.RequestTimeout = 10 * time.Second
	}
	if s.cfg.MaxRequestTimeout <= 0 {
		s.cfg.MaxRequestTimeout = max(time.Minute, s.cfg.RequestTimeout)
	}
	v1.POST("/request/*topic", s.request)
	v1.GET("/webhooks/:name/dead-letters", s.deadLetters)
	v1.POST("/webhooks/:name/dead-letters/replay", s.replayDeadLetters)
	v1.POST("/webhooks/:name/dead-letters/:id/replay", s.replayDeadLetter)
}

// request is POST /v1/request/{topic}: publish the body as an MQTT v5
// request and answer with the reply, raw with MQTT-* headers or as JSON.
func (s *Server) request(c *gin.Context) {
	msg, timeout, err := s.requestMessage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	reply, err := s.bridge.Request(c, identity(c), msg, timeout)
	if err != nil {
		if c.Request.Context().Err() != nil {
			return // the client went away
		}
		s.fail(c, err)
		return
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept")
	now := time.Now()
	if wantsJSON(c.GetHeader("Accept")) {
		c.JSON(http.StatusOK, wire.NewReply(&reply, now))
		return
	}
	writeMetaHeaders(h, &reply, now)
	h.Del(hdrMessageID) // a reply is not recorded: it has no id
	c.Data(http.StatusOK, contentType(&reply), reply.Payload)
}

func (s *Server) requestMessage(c *gin.Context) (bridge.Message, time.Duration, error) {
	msg := bridge.Message{Topic: topicParam(c), QoS: 1}
	timeout := s.cfg.RequestTimeout
	if err := checkQuery(c, "qos", "timeout", "expiry"); err != nil {
		return msg, 0, err
	}
	q := c.Request.URL.Query()
	if v := q.Get("qos"); v != "" {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n > 2 {
			return msg, 0, invalid("qos must be 0, 1 or 2, not %q", v)
		}
		msg.QoS = byte(n)
	}
	if v := q.Get("expiry"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return msg, 0, invalid("expiry must be a number of seconds from 0 to 4294967295, not %q", v)
		}
		e := uint32(n)
		msg.Properties.MessageExpiry = &e
	}
	if v := q.Get("timeout"); v != "" {
		d, err := parseTimeout(v, s.cfg.MaxRequestTimeout)
		if err != nil {
			return msg, 0, err
		}
		timeout = d
	}
	if err := headerProperties(c.Request.Header, &msg.Properties); err != nil {
		return msg, 0, err
	}
	body, err := readBody(c, int64(s.bridge.MaxPayload()))
	if err != nil {
		return msg, 0, err
	}
	msg.Payload = body
	return msg, timeout, nil
}

// parseTimeout reads a request timeout in seconds, fractions allowed,
// above 0 and at most max.
func parseTimeout(v string, max time.Duration) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > max.Seconds() {
		return 0, invalid("timeout must be a number of seconds above 0 and at most %g, not %q", max.Seconds(), v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// DeadLetterList is a page of a webhook's dead letters.
type DeadLetterList struct {
	DeadLetters []wire.DeadLetter `json:"dead_letters"`
	NextCursor  string            `json:"next_cursor,omitempty"`
}

// ReplayResult says how many dead letters were queued for delivery.
type ReplayResult struct {
	Replayed int `json:"replayed"`
}

func (s *Server) webhooks() (Webhooks, error) {
	if s.cfg.Webhooks == nil {
		return nil, bridge.Errorf(bridge.ECodeNotFound, "no webhook is configured")
	}
	return s.cfg.Webhooks, nil
}

// deadLetters is GET /v1/webhooks/{name}/dead-letters.
func (s *Server) deadLetters(c *gin.Context) {
	if err := checkQuery(c, "limit", "cursor"); err != nil {
		s.fail(c, err)
		return
	}
	wh, err := s.webhooks()
	if err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, invalid("limit must be a number from 1 to 1000, not %q", v))
			return
		}
		limit = n
	}
	dls, next, err := wh.DeadLetters(c, identity(c), c.Param("name"), q.Get("cursor"), limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := time.Now()
	out := DeadLetterList{DeadLetters: make([]wire.DeadLetter, 0, len(dls)), NextCursor: next}
	for i := range dls {
		out.DeadLetters = append(out.DeadLetters, wire.NewDeadLetter(&dls[i], now))
	}
	c.JSON(http.StatusOK, out)
}

// replayDeadLetters is POST /v1/webhooks/{name}/dead-letters/replay, with
// an optional body {"ids": [...]}; without ids, every dead letter.
func (s *Server) replayDeadLetters(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	wh, err := s.webhooks()
	if err != nil {
		s.fail(c, err)
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := decodeOptionalJSON(c, 1<<20, &req); err != nil {
		s.fail(c, err)
		return
	}
	n, err := wh.Replay(c, identity(c), c.Param("name"), req.IDs)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ReplayResult{Replayed: n})
}

// replayDeadLetter is POST /v1/webhooks/{name}/dead-letters/{id}/replay.
func (s *Server) replayDeadLetter(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	wh, err := s.webhooks()
	if err != nil {
		s.fail(c, err)
		return
	}
	n, err := wh.Replay(c, identity(c), c.Param("name"), []string{c.Param("id")})
	if err != nil {
		s.fail(c, err)
		return
	}
	if n == 0 {
		s.fail(c, bridge.Errorf(bridge.ECodeNotFound, "webhook %q has no dead letter %q", c.Param("name"), c.Param("id")))
		return
	}
	c.JSON(http.StatusOK, ReplayResult{Replayed: n})
}
