package httpapi

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Config configures the HTTP API. Zero values get the documented defaults.
type Config struct {
	// Bridge does the work; required.
	Bridge *bridge.Bridge
	// Spec is the OpenAPI document served at /openapi.yaml.
	Spec []byte
	// MaxBatch is the most items in one /v1/publish/batch; default 100.
	MaxBatch int
	// MaxWait is the longest long-poll (?wait=) allowed; default 60s.
	MaxWait time.Duration
	// StreamQueue bounds each SSE stream's queue (QueueBytes,
	// QueueMessages, MaxLag; the bridge's defaults for zero values); its
	// Kind and Notify are the server's.
	StreamQueue bridge.FeedConfig
	// Heartbeat is the interval of SSE keep-alive comments; default 15s.
	Heartbeat time.Duration
	// WebSocket serves GET /v1/ws (wsproxy); nil answers 404. It
	// authenticates its callers itself, with the same Authenticator.
	WebSocket http.Handler
	// MQTT serves GET /mqtt, MQTT over WebSocket (wsproxy); nil answers
	// 404. It authenticates its callers itself, like WebSocket.
	MQTT http.Handler
	// Web serves the console page and /client.js at WebPaths; nil answers
	// 404.
	Web      http.Handler
	WebPaths []string
	// Authenticator identifies callers; nil: every caller is anonymous
	// (authentication off). With one, nothing but /healthz, /readyz and
	// PublicPaths answers without credentials.
	Authenticator Authenticator
	// PublicPaths are request paths served without credentials even with
	// an Authenticator (the console page and its assets, say).
	PublicPaths []string
	// AllowedOrigins may open SSE streams besides the server's own origin
	// and localhost (the WebSocket's ws.allowed_origins).
	AllowedOrigins []string
	// CORS configures cross-origin requests; its AllowedOrigins are also
	// the only other origins from which browsers may send state-changing
	// requests (crossorigin.go).
	CORS CORS
	// RequestTimeout is how long POST /v1/request waits for a reply
	// without ?timeout=, MaxRequestTimeout the longest ?timeout=; defaults
	// 10s and 60s (request.go).
	RequestTimeout, MaxRequestTimeout time.Duration
	// Webhooks serves the dead-letter endpoints; nil answers 404.
	Webhooks Webhooks
	// Metrics serves GET /metrics (internal/metrics); nil answers 404.
	// With an Authenticator it needs credentials unless PublicMetrics.
	Metrics       http.Handler
	PublicMetrics bool
	// Observer counts every request (method, route template, status,
	// duration); default counts nothing.
	Observer RequestObserver
	// TracerProvider makes a server span of every request but the health
	// checks and /metrics, continuing the trace of a W3C traceparent
	// header (observe.go); nil: tracing is off.
	TracerProvider trace.TracerProvider
	// Logger; default discards.
	Logger *slog.Logger
}

// Server is the HTTP API: an http.Handler.
type Server struct {
	cfg    Config
	bridge *bridge.Bridge
	log    *slog.Logger
	engine *gin.Engine
	tracer trace.Tracer // nil: tracing is off

	protect   *http.CrossOriginProtection // the CSRF check (crossorigin.go)
	anyOrigin bool                        // CORS admits "*"
}

var ginMode sync.Once

// New builds the HTTP API.
func New(cfg Config) *Server {
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 100
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	s := &Server{cfg: cfg, bridge: cfg.Bridge, log: cfg.Logger}
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	s.trustOrigins(cfg.CORS)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(s.access, s.recover, s.crossOrigin, s.identify)
	e.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, errorBody{wire.ErrorDetail{Code: bridge.ECodeNotFound, Message: "no such endpoint"}})
	})
	e.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, errorBody{wire.ErrorDetail{Code: "method_not_allowed", Message: "method not allowed on this endpoint"}})
	})

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.spec)
	e.GET("/metrics", s.metrics)

	v1 := e.Group("/v1")
	v1.POST("/topics/*topic", s.publishRaw)
	v1.GET("/topics/*topic", s.getTopic)
	v1.DELETE("/topics/*topic", s.deleteTopic)
	v1.POST("/publish", s.publishJSON)
	v1.POST("/publish/batch", s.publishBatch)
	v1.GET("/messages", s.listMessages)
	v1.GET("/stream", s.stream)
	v1.POST("/tickets", s.createTicket)
	s.routeRequests(v1)
	s.routeAlarms(v1)
	if cfg.WebSocket != nil {
		v1.GET("/ws", gin.WrapH(cfg.WebSocket))
	}
	e.GET("/mqtt", s.mqtt)
	if cfg.Web != nil {
		for _, p := range cfg.WebPaths {
			e.GET(p, gin.WrapH(cfg.Web))
		}
	}
	s.engine = e
	return s
}

var hvNosniff = []string{"nosniff"}

// ServeHTTP serves the API. Every answer carries X-Content-Type-Options:
// nosniff, so that browsers take each body for its declared type.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["X-Content-Type-Options"] = hvNosniff
	if s.cors(w, r) {
		return
	}
	s.engine.ServeHTTP(w, r)
}

// Routes lists "METHOD path" of every route, in gin's syntax; the spec test
// compares them with openapi.yaml.
func (s *Server) Routes() []gin.RouteInfo { return s.engine.Routes() }

// recover turns a panic into a logged 500 in the error shape.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic in handler", "method", c.Request.Method, "path", c.FullPath(), "panic", r)
			c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody{wire.ErrorDetail{Code: bridge.ECodeInternal, Message: "internal error"}})
		}
	}()
	c.Next()
}

// mqtt serves GET /mqtt with Config.MQTT, or 404 when it is off.
func (s *Server) mqtt(c *gin.Context) {
	if s.cfg.MQTT == nil {
		c.JSON(http.StatusNotFound, errorBody{wire.ErrorDetail{Code: bridge.ECodeNotFound, Message: "MQTT over WebSocket is not enabled (mqtt_proxy.enabled)"}})
		return
	}
	s.cfg.MQTT.ServeHTTP(c.Writer, c.Request)
}
