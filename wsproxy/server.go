package wsproxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/origin"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Close codes beyond RFC 6455's, documented in docs/websocket.md.
const (
	CloseSlowConsumer = 4001 // the outgoing queue was full
	CloseTooManyUnack = 4002 // the queue filled while MaxPending messages waited for acks
	// CloseServiceRestart (1012) ends every connection on shutdown: the
	// client reconnects, to another instance, and resumes.
	CloseServiceRestart = websocket.CloseServiceRestart
)

// Config configures the WebSocket endpoint. Zero values get the defaults.
type Config struct {
	// Bridge does the work, and keeps sessions between connections
	// (Resume, Checkpoint); required.
	Bridge *bridge.Bridge
	// ReadLimit is the largest frame a client may send, in bytes; default
	// 64 KiB.
	ReadLimit int64
	// QueueMessages and QueueBytes bound each connection's outgoing queue;
	// defaults 1024 messages and 8 MiB.
	QueueMessages int
	QueueBytes    int
	// WriteTimeout bounds writing one frame; default 10s.
	WriteTimeout time.Duration
	// PingInterval is how often the server pings; default 25s.
	PingInterval time.Duration
	// PongTimeout closes a connection that has sent nothing (not even a
	// pong) for this long; default 60s.
	PongTimeout time.Duration
	// MaxPending is the most unacknowledged QoS 1 messages per session:
	// more wait in the outgoing queue for acks (and a queue that fills
	// meanwhile closes with 4002); default 1000.
	MaxPending int
	// SessionTTL is how long a session outlives its connection; default 5m.
	SessionTTL time.Duration
	// AllowedOrigins may open connections besides the server's own origin
	// and localhost origins: exact origins like "https://app.example.com",
	// or "*" for any.
	AllowedOrigins []string
	// RequestTimeout is how long a request frame waits for its reply
	// without a timeout, MaxRequestTimeout the longest one it may give;
	// defaults 10s and 60s (request.go).
	RequestTimeout, MaxRequestTimeout time.Duration
	// Authenticator identifies callers, from headers or the access_token
	// query parameter; nil: every caller is anonymous (authentication off).
	Authenticator Authenticator
	// Logger; default discards.
	Logger *slog.Logger
}

// Authenticator says who is calling (internal/auth implements it).
type Authenticator interface {
	// Authenticate returns the caller's identity, or an *bridge.Error with
	// ECodeUnauthorized or ECodeForbidden.
	Authenticate(r *http.Request, allowQuery bool) (bridge.Identity, error)
}

// CloseTokenExpired (1008, policy violation) ends a connection whose
// credentials expired, with the reason "token expired".
const CloseTokenExpired = websocket.ClosePolicyViolation

// Server serves GET /v1/ws.
type Server struct {
	cfg Config
	up  websocket.Upgrader
	log *slog.Logger

	conns conns[*conn]
	// wrapConn, in tests, wraps each hijacked connection.
	wrapConn func(net.Conn) net.Conn

	slowClosed atomic.Uint64
}

// New returns the WebSocket endpoint.
func New(cfg Config) (*Server, error) {
	if cfg.Bridge == nil {
		return nil, errors.New("wsproxy: Config.Bridge is required")
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 64 << 10
	}
	if cfg.QueueMessages <= 0 {
		cfg.QueueMessages = 1024
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 8 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 25 * time.Second
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = 60 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1000
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	// Buffers: gorilla reads with net/http's buffered reader and writes
	// the handshake's answer into net/http's write buffer, both kept by
	// the hijacked connection while the handler runs anyway, so that a
	// connection holds no buffers of its own. gorilla writes nothing else
	// but control frames; the writer frames the rest itself, into batches
	// that take their buffer from a pool (batchconn.go).
	s.up = websocket.Upgrader{
		CheckOrigin: s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeError(w, status, "invalid_request", reason.Error())
		},
	}
	return s, nil
}

// SlowClosed counts connections closed because their queue was full.
func (s *Server) SlowClosed() uint64 { return s.slowClosed.Load() }

// checkOrigin admits requests without Origin (not from a browser), the
// server's own origin, localhost origins and the configured ones.
func (s *Server) checkOrigin(r *http.Request) bool { return origin.Allowed(r, s.cfg.AllowedOrigins) }

// identify authenticates the caller; without an Authenticator everyone is
// anonymous.
func (s *Server) identify(r *http.Request) (bridge.Identity, error) {
	if s.cfg.Authenticator == nil {
		return bridge.Identity{}, nil
	}
	return s.cfg.Authenticator.Authenticate(r, true)
}

// connectParams are the query parameters of GET /v1/ws.
type connectParams struct {
	filters  []string
	qos      byte
	snapshot bool
	session  string
	lastID   string
}

func parseConnect(q url.Values) (connectParams, error) {
	var p connectParams
	for name := range q {
		switch name {
		case "filter", "qos", "snapshot", "session", "last_id", "access_token":
		default:
			return p, bridge.Errorf(bridge.ECodeInvalidRequest, "unknown query parameter %q (known: filter, qos, snapshot, session, last_id, access_token)", name)
		}
	}
	p.filters = q["filter"]
	if len(p.filters) > maxFilters {
		return p, bridge.Errorf(bridge.ECodeInvalidRequest, "at most %d filters at once", maxFilters)
	}
	switch v := q.Get("qos"); v {
	case "", "0":
	case "1":
		p.qos = 1
	default:
		return p, bridge.Errorf(bridge.ECodeInvalidRequest, "qos must be 0 or 1, not %q", v)
	}
	if v := q.Get("snapshot"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return p, bridge.Errorf(bridge.ECodeInvalidRequest, "snapshot must be true or false, not %q", v)
		}
		p.snapshot = b
	}
	p.session = q.Get("session")
	if len(p.session) > 64 {
		return p, bridge.Errorf(bridge.ECodeInvalidRequest, "session is not one this server issued")
	}
	p.lastID = q.Get("last_id")
	if p.lastID != "" {
		if _, _, err := bridge.ParseID(p.lastID); err != nil {
			return p, bridge.Errorf(bridge.ECodeInvalidRequest, "last_id %q is not a message id", p.lastID)
		}
	}
	return p, nil
}

// ServeHTTP upgrades GET /v1/ws and runs the connection until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := s.identify(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	params, err := parseConnect(r.URL.Query())
	if err != nil {
		d, _ := wire.Detail(err)
		writeError(w, http.StatusBadRequest, d.Code, d.Message)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, bridge.ECodeInvalidRequest, "this endpoint speaks WebSocket: send an Upgrade: websocket request")
		return
	}
	if !s.checkOrigin(r) {
		writeError(w, http.StatusForbidden, bridge.ECodeForbidden, "origin "+strconv.Quote(r.Header.Get("Origin"))+" is not allowed")
		return
	}
	for _, f := range params.filters {
		if err := s.cfg.Bridge.CheckSubscribe(r.Context(), id, f); err != nil {
			writeErr(w, err)
			return
		}
	}
	// Sessions, the welcome's last_id and every subscription need the
	// store: while it is down the client retries later.
	if err := s.cfg.Bridge.StoreReady(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	release, err := s.cfg.Bridge.Connect(id)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer release()
	if s.cfg.Bridge.IsDraining() || !s.conns.enter() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, bridge.ECodeBrokerUnavailable, "the server is shutting down")
		return
	}
	defer s.conns.leave()

	h := &hijacker{ResponseWriter: w, timeout: s.cfg.WriteTimeout, wrap: s.wrapConn}
	ws, err := s.up.Upgrade(h, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	c := newConn(s, ws, h.conn, id)
	s.conns.run(c, func() { c.run(r.Context(), params) })
}

// Shutdown refuses new connections (503), closes every connection with
// 1012 (service restart), saving their sessions, and waits for them to end
// or ctx to be done. Safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.conns.shutdown(ctx, func(c *conn) { c.closeWith(CloseServiceRestart, "server shutting down") })
}

// writeErr answers a refused handshake: 401 (with WWW-Authenticate), 403,
// 429 or 503 (with Retry-After: the store, or the ticket store, is down), or
// 400 for anything else the client sent.
func writeErr(w http.ResponseWriter, err error) {
	d, _ := wire.Detail(err)
	status := http.StatusBadRequest
	switch d.Code {
	case bridge.ECodeUnauthorized:
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="mqttbridge"`)
	case bridge.ECodeForbidden:
		status = http.StatusForbidden
	case bridge.ECodeRateLimited:
		status = http.StatusTooManyRequests
		secs := 1
		if e, ok := errors.AsType[*bridge.Error](err); ok && e.RetryAfter > time.Second {
			secs = int((e.RetryAfter + time.Second - 1) / time.Second)
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	case bridge.ECodeStoreUnavailable: // the store or the ticket store is down
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case bridge.ECodeInternal:
		status = http.StatusInternalServerError
	}
	writeError(w, status, d.Code, d.Message)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	b, _ := jsonMarshal(map[string]wire.ErrorDetail{"error": {Code: code, Message: msg}})
	_, _ = w.Write(b)
}

func newSessionID() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return "s_" + base64.RawURLEncoding.EncodeToString(b[:])
}
