package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// RequestObserver counts HTTP requests (internal/metrics implements it).
type RequestObserver interface {
	// ObserveHTTP counts a request by method, route template ("" when no
	// route matched) and status, with its duration.
	ObserveHTTP(method, route string, status int, d time.Duration)
}

type noObserver struct{}

func (noObserver) ObserveHTTP(string, string, int, time.Duration) {}

// RequestIDHeader carries the request id: the client's when valid, else
// one the server makes; always echoed in the response.
const RequestIDHeader = "X-Request-Id"

// access is the outermost middleware: it assigns the request id, and once
// the request is done counts it and logs one line at info with the route
// template (never the raw URL, whose query may hold an access_token).
func (s *Server) access(c *gin.Context) {
	start := time.Now()
	rid := c.GetHeader(RequestIDHeader)
	if !validRequestID(rid) {
		rid = newRequestID()
	}
	c.Header(RequestIDHeader, rid)
	c.Next()
	d := time.Since(start)
	route, status := c.FullPath(), c.Writer.Status()
	s.cfg.Observer.ObserveHTTP(c.Request.Method, route, status, d)
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		if route == "" {
			route = "unmatched"
		}
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "http request",
			slog.String("method", c.Request.Method), slog.String("route", route), slog.Int("status", status),
			slog.Duration("duration", d), slog.String("request_id", rid))
	}
}

// validRequestID admits 1 to 128 characters of [A-Za-z0-9._:-], so that a
// client's id cannot forge log lines or headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch ch := id[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '_', ch == ':', ch == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// metrics serves GET /metrics with Config.Metrics, or 404 when there is
// none.
func (s *Server) metrics(c *gin.Context) {
	if s.cfg.Metrics == nil {
		c.JSON(http.StatusNotFound, errorBody{wire.ErrorDetail{Code: bridge.ECodeNotFound, Message: "metrics are not enabled"}})
		return
	}
	s.cfg.Metrics.ServeHTTP(c.Writer, c.Request)
}

// refuseDraining answers 503 to a new stream while the server shuts down,
// and reports whether it did.
func (s *Server) refuseDraining(c *gin.Context) bool {
	if !s.bridge.IsDraining() {
		return false
	}
	c.Header("Retry-After", "1")
	c.JSON(http.StatusServiceUnavailable, errorBody{wire.ErrorDetail{Code: bridge.ECodeBrokerUnavailable, Message: "the server is shutting down: connect to another instance"}})
	return true
}
