package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// RequestObserver counts HTTP requests (internal/metrics implements it).
type RequestObserver interface {
	// ObserveHTTP counts a request by method (a standard one or "_OTHER",
	// never one a client made up), route template ("" when no route
	// matched) and status, with its duration.
	ObserveHTTP(method, route string, status int, d time.Duration)
}

type noObserver struct{}

func (noObserver) ObserveHTTP(string, string, int, time.Duration) {}

// RequestIDHeader carries the request id: the client's when valid, else
// one the server makes; always echoed in the response.
const RequestIDHeader = "X-Request-Id"

// access is the outermost middleware: it assigns the request id, starts
// the request's server span when tracing is on, and once the request is
// done ends the span, counts the request and logs one line at info with
// the route template (never the raw URL, whose query may hold an
// access_token) and, with tracing, the trace id.
func (s *Server) access(c *gin.Context) {
	start := time.Now()
	rid := c.GetHeader(RequestIDHeader)
	if !validRequestID(rid) {
		rid = newRequestID()
	}
	c.Header(RequestIDHeader, rid)
	span := s.startSpan(c, rid)
	c.Next()
	d := time.Since(start)
	route, status := c.FullPath(), c.Writer.Status()
	endSpan(span, status)
	s.cfg.Observer.ObserveHTTP(knownMethod(c.Request.Method), route, status, d)
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		if route == "" {
			route = "unmatched"
		}
		attrs := []slog.Attr{slog.String("method", c.Request.Method), slog.String("route", route), slog.Int("status", status),
			slog.Duration("duration", d), slog.String("request_id", rid)}
		if sc := span.SpanContext(); sc.HasTraceID() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "http request", attrs...)
	}
}

// tracerName is the instrumentation scope of the server spans.
const tracerName = "github.com/mqttbridge/mqttbridge/httpapi"

// attrRequestID is the request id (RequestIDHeader) on a server span.
const attrRequestID = attribute.Key("mqttbridge.request_id")

var (
	traceContext = propagation.TraceContext{}
	noSpan       = trace.SpanFromContext(context.Background())
	// untraced are routes without spans: probes and scrapes, frequent and
	// of no interest in a trace.
	untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
)

// startSpan starts the server span of a request, named by method and route
// template, as a child of the W3C traceparent (and tracestate) header when
// the request has one, and puts it in the request's context, where the
// bridge's publish and request spans find it. Without tracing, and for
// untraced routes, it returns a span that records nothing.
func (s *Server) startSpan(c *gin.Context, rid string) trace.Span {
	route := c.FullPath()
	if s.tracer == nil || untraced[route] {
		return noSpan
	}
	r := c.Request
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	method := knownMethod(r.Method)
	name := method
	switch {
	case method == "_OTHER":
		name = "HTTP"
	case route != "":
		name += " " + route
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		span.SetAttributes(semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme),
			semconv.URLPath(r.URL.Path), attrRequestID.String(rid))
		if route != "" {
			span.SetAttributes(semconv.HTTPRoute(route))
		}
	}
	// A WebSocket connection lasts long and carries many operations: the
	// publish or request of each frame starts a trace of its own (or
	// continues the traceparent in its user properties), rather than
	// hanging under the connection's span.
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		c.Request = r.WithContext(ctx)
	}
	return span
}

// endSpan records the status of the response and ends span; a 5xx marks it
// failed (a 4xx is the client's error, not the server's).
func endSpan(span trace.Span, status int) {
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.End()
}

// knownMethod is the method as metric labels and http.request.method take
// it: a standard one, else "_OTHER", so that a client cannot make up
// values (and with them new series).
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
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

// Request ids are 24 hex digits: 6 random bytes per process, then a
// counter, so that ids are unique without reading randomness per request.
var (
	ridPrefix  = newRIDPrefix()
	ridCounter atomic.Uint64
)

func newRIDPrefix() (p [12]byte) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	hex.Encode(p[:], b[:])
	return p
}

func newRequestID() string {
	var id [24]byte
	copy(id[:], ridPrefix[:])
	n := ridCounter.Add(1)
	for i := len(id) - 1; i >= len(ridPrefix); i-- {
		id[i] = "0123456789abcdef"[n&0xf]
		n >>= 4
	}
	return string(id[:])
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
