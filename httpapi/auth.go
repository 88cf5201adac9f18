package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Authenticator says who is calling (internal/auth implements it).
type Authenticator interface {
	// Authenticate returns the caller's identity, or an *bridge.Error with
	// ECodeUnauthorized or ECodeForbidden. allowQuery admits a credential
	// in the access_token query parameter (GET /v1/stream only).
	Authenticate(r *http.Request, allowQuery bool) (bridge.Identity, error)
	// IssueTicket returns a one-time ticket for id and when it expires, or
	// an *bridge.Error (ECodeRateLimited with RetryAfter when id holds or
	// asks for too many; ECodeStoreUnavailable while the ticket store is
	// down).
	IssueTicket(ctx context.Context, id bridge.Identity) (string, time.Time, error)
}

// CORS configures cross-origin requests. With no AllowedOrigins no CORS
// header is sent and browsers keep to the same origin.
type CORS struct {
	// AllowedOrigins are exact origins ("https://app.example.com"), or "*"
	// for any, which is ignored when AllowCredentials is set.
	AllowedOrigins []string
	// AllowCredentials lets browsers send cookies and Authorization; the
	// allowed origin is then always echoed, never "*".
	AllowCredentials bool
	// MaxAge is how long browsers may cache a preflight; default 10m.
	MaxAge time.Duration
}

// Paths whose routes authenticate differently: health and readiness never
// need credentials, and the WebSocket endpoints authenticate themselves
// (see selfAuthed).
var (
	publicPaths = []string{"/healthz", "/readyz"}
	queryPaths  = []string{"/v1/stream"}
)

// selfAuthed reports whether the route's handler authenticates its callers
// itself, with the same authenticator (it takes one-time tickets, which can
// be redeemed only once): the WebSocket endpoints /v1/ws and /mqtt, when
// they are served. When /mqtt is off it answers 404 only to callers with
// credentials.
func (s *Server) selfAuthed(path string) bool {
	switch path {
	case "/v1/ws":
		return s.cfg.WebSocket != nil
	case "/mqtt":
		return s.cfg.MQTT != nil
	}
	return false
}

const identityKey = "mqttbridge.identity"

// identify attaches the caller's identity. Without an Authenticator every
// caller is the anonymous identity, which the allow-all authorizer admits.
// With one, every route but health and readiness (and the routes in
// Config.PublicPaths) needs credentials, including unknown paths.
func (s *Server) identify(c *gin.Context) {
	a := s.cfg.Authenticator
	path := c.FullPath()
	if a == nil || slices.Contains(publicPaths, path) || s.selfAuthed(path) || path == "/metrics" && s.cfg.PublicMetrics ||
		slices.Contains(s.cfg.PublicPaths, c.Request.URL.Path) {
		// Anonymous: nothing to store, identity() answers the zero
		// Identity (and gin allocates no Keys map for this request).
		c.Next()
		return
	}
	id, err := a.Authenticate(c.Request, slices.Contains(queryPaths, path))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Set(identityKey, id)
	c.Next()
}

func identity(c *gin.Context) bridge.Identity {
	id, _ := c.Get(identityKey)
	v, _ := id.(bridge.Identity)
	return v
}

// Ticket is the answer of POST /v1/tickets.
type Ticket struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
	ExpiresIn int       `json:"expires_in"`
}

// createTicket is POST /v1/tickets: exchanges the caller's credentials for
// a one-time ticket to open /v1/ws or /v1/stream with ?access_token=.
func (s *Server) createTicket(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	if s.cfg.Authenticator == nil {
		s.fail(c, bridge.Errorf(bridge.ECodeNotFound, "authentication is not configured: /v1/ws and /v1/stream need no ticket"))
		return
	}
	tk, exp, err := s.cfg.Authenticator.IssueTicket(c.Request.Context(), identity(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, Ticket{Ticket: tk, ExpiresAt: exp.UTC(), ExpiresIn: int(math.Ceil(time.Until(exp).Seconds()))})
}

// retryAfter is the Retry-After of an error: its RetryAfter rounded up to
// whole seconds, at least 1.
func retryAfter(err error) string {
	var e *bridge.Error
	if !errors.As(err, &e) || e.RetryAfter <= 0 {
		return "1"
	}
	return strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds())))
}

// cors answers preflights and adds CORS headers to requests from allowed
// origins. It reports whether it answered the request itself.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	cfg := s.cfg.CORS
	origin := r.Header.Get("Origin")
	if len(cfg.AllowedOrigins) == 0 || origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	allowed, any := false, false
	for _, o := range cfg.AllowedOrigins {
		switch {
		case o == "*" && !cfg.AllowCredentials:
			allowed, any = true, true
		case strings.EqualFold(o, origin):
			allowed = true
		}
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !allowed {
		if preflight {
			writeJSONError(w, http.StatusForbidden, bridge.ECodeForbidden, "origin "+strconv.Quote(origin)+" is not allowed (http.cors.allowed_origins)")
			return true
		}
		return false // no CORS headers: the browser keeps the answer from the page
	}
	if any {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if cfg.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if !preflight {
		h.Set("Access-Control-Expose-Headers", strings.Join(exposedHeaders, ", "))
		return false
	}
	maxAge := cfg.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", strings.Join(allowedHeaders, ", "))
	h.Set("Access-Control-Max-Age", strconv.Itoa(int(maxAge/time.Second)))
	w.WriteHeader(http.StatusNoContent)
	return true
}

var (
	allowedHeaders = []string{"Authorization", "X-API-Key", "Content-Type", "Accept", "If-None-Match", "Last-Event-ID",
		hdrPayloadFormat, hdrResponseTopic, hdrCorrelationData, hdrUserProperty}
	exposedHeaders = []string{"ETag", "Last-Modified", "Retry-After", "WWW-Authenticate", hdrMessageID, hdrTopic, hdrQoS, hdrRetain,
		hdrPayloadFormat, hdrMessageExpiry, hdrResponseTopic, hdrCorrelationData, hdrUserProperty}
)

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{wire.ErrorDetail{Code: code, Message: msg}})
}
