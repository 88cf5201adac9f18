package wsproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
	"github.com/mqttbridge/mqttbridge/internal/origin"
)

// MQTT over WebSocket subprotocols (MQTT 3.1.1 and 5 say "mqtt"; older
// clients offer "mqttv3.1").
const (
	SubprotocolMQTT   = "mqtt"
	SubprotocolMQTT31 = "mqttv3.1"
)

// metricsKind is the kind the proxy's connections and the PUBLISH packets
// it passes to clients are counted as (bridge.Metrics).
const metricsKind = "mqtt"

// MQTTConfig configures the MQTT-over-WebSocket proxy (GET /mqtt). Zero
// values get the defaults.
type MQTTConfig struct {
	// Bridge decides every subscription, publish and delivery
	// (CheckSubscribeOn, Forward, MayReceiveOn: the identity's rules, the
	// topics Broker owns, the publish rate) and counts connections per
	// identity; required.
	Bridge *bridge.Bridge
	// Broker is the name of the route (bridge.Route's Upstream) that Dial
	// reaches; required.
	Broker string
	// Dial opens a new connection to the upstream broker (TCP, TLS or
	// WebSocket), one per client connection; required.
	Dial func(ctx context.Context) (net.Conn, error)
	// PassCredentials passes the user name and password (and MQTT 5
	// authentication method and data) of the client's CONNECT to the
	// broker. Otherwise the broker gets Username and Password instead.
	PassCredentials bool
	Username        string
	Password        string
	// MaxPacketSize is the largest MQTT packet a client may send, fixed
	// header included, in bytes; default 1 MiB. MQTT 5 clients are told
	// (Maximum Packet Size in CONNACK).
	MaxPacketSize int
	// IdleTimeout closes a connection from which nothing has arrived for
	// 1.5 times its keep alive, or for IdleTimeout when it has no keep
	// alive or a longer one; default 5m. MQTT 5 clients are told to ping
	// within two thirds of it (Server Keep Alive in CONNACK).
	IdleTimeout time.Duration
	// ConnectTimeout bounds waiting for the client's CONNECT and for the
	// broker's CONNACK; default 10s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds writing one message to the client; default 10s.
	WriteTimeout time.Duration
	// AllowedOrigins may open connections besides the server's own origin
	// and localhost origins (the same rule as /v1/ws).
	AllowedOrigins []string
	// Authenticator identifies callers, from headers or the access_token
	// query parameter; nil: every caller is anonymous.
	Authenticator Authenticator
	// Logger; default discards.
	Logger *slog.Logger
}

// MQTTServer serves GET /mqtt: MQTT 3.1.1 and 5 over WebSocket, proxied to
// the upstream broker with the bridge's identities and permissions.
type MQTTServer struct {
	cfg MQTTConfig
	up  websocket.Upgrader
	log *slog.Logger

	conns  conns[*mqttConn]
	grants grants // the filters passed on per broker session
}

// NewMQTT returns the MQTT-over-WebSocket proxy.
func NewMQTT(cfg MQTTConfig) (*MQTTServer, error) {
	if cfg.Bridge == nil || cfg.Dial == nil || cfg.Broker == "" {
		return nil, errors.New("wsproxy: MQTTConfig.Bridge, Broker and Dial are required")
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = 1 << 20
	}
	if cfg.MaxPacketSize > mqttpacket.MaxVBI {
		cfg.MaxPacketSize = mqttpacket.MaxVBI
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &MQTTServer{cfg: cfg, log: cfg.Logger}
	s.up = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		Subprotocols:    []string{SubprotocolMQTT, SubprotocolMQTT31},
		CheckOrigin:     func(r *http.Request) bool { return origin.Allowed(r, s.cfg.AllowedOrigins) },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeError(w, status, bridge.ECodeInvalidRequest, reason.Error())
		},
	}
	return s, nil
}

// ServeHTTP authenticates the caller, connects to the broker, upgrades
// GET /mqtt and proxies the connection until either side ends it.
func (s *MQTTServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := bridge.Identity{}
	if s.cfg.Authenticator != nil {
		var err error
		if id, err = s.cfg.Authenticator.Authenticate(r, true); err != nil {
			writeErr(w, err)
			return
		}
	}
	for name := range r.URL.Query() {
		if name != "access_token" {
			writeError(w, http.StatusBadRequest, bridge.ECodeInvalidRequest, "unknown query parameter "+strconv.Quote(name)+" (known: access_token)")
			return
		}
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, bridge.ECodeInvalidRequest, "this endpoint speaks MQTT over WebSocket: send an Upgrade: websocket request with the subprotocol mqtt")
		return
	}
	if !origin.Allowed(r, s.cfg.AllowedOrigins) {
		writeError(w, http.StatusForbidden, bridge.ECodeForbidden, "origin "+strconv.Quote(r.Header.Get("Origin"))+" is not allowed")
		return
	}
	offered := websocket.Subprotocols(r)
	if !slices.Contains(offered, SubprotocolMQTT) && !slices.Contains(offered, SubprotocolMQTT31) {
		writeError(w, http.StatusBadRequest, bridge.ECodeInvalidRequest, "offer the WebSocket subprotocol mqtt (Sec-WebSocket-Protocol: mqtt)")
		return
	}
	release, err := s.cfg.Bridge.Connect(id)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer release()
	if !s.conns.enter() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, bridge.ECodeBrokerUnavailable, "the server is shutting down")
		return
	}
	defer s.conns.leave()

	// The broker connection comes first: when the broker is down the
	// answer is 503, which clients retry like any failed connection (a
	// refusing CONNACK would make MQTT.js give up).
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ConnectTimeout)
	up, err := s.cfg.Dial(ctx)
	cancel()
	if err != nil {
		s.log.Debug("mqtt proxy: cannot reach the broker", "err", err) // the bridge's own connection warns
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, bridge.ECodeBrokerUnavailable, "the MQTT broker is not reachable; try again")
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		_ = up.Close()
		return // the upgrader answered
	}
	m := s.cfg.Bridge.Metrics()
	m.StreamOpened(metricsKind)
	defer m.StreamClosed(metricsKind)
	ctx, cancel = context.WithCancel(r.Context())
	defer cancel()
	c := newMQTTConn(s, ws, id, up, cancel)
	s.conns.run(c, func() { c.run(ctx) })
}

// Shutdown ends every connection (MQTT 5 clients get DISCONNECT 0x8B,
// server shutting down; all get the WebSocket close 1012, service restart)
// and waits for them to end or ctx to be done. Safe to call twice.
func (s *MQTTServer) Shutdown(ctx context.Context) error {
	return s.conns.shutdown(ctx, (*mqttConn).shutdown)
}
