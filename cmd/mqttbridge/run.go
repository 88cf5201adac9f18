package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/embedded"
	"github.com/mqttbridge/mqttbridge/web"
	"github.com/mqttbridge/mqttbridge/wsproxy"
)

// Main is the whole program: it builds every part from the configuration,
// runs it, and shuts it down. Tests start it on 127.0.0.1:0.
type Main struct {
	Config config.Config
	// Logger; default: text or JSON on stderr per the configuration.
	Logger *slog.Logger
	// Stdout receives the start-up banner; default discards.
	Stdout io.Writer

	// Set by Run.
	HTTPAddr net.Addr         // where the HTTP API listens
	Embedded *embedded.Broker // the embedded broker, when no broker is configured
	Bridge   *bridge.Bridge

	store     bridge.Store
	sessions  bridge.Sessions
	ws        *wsproxy.Server
	closeRds  func() error
	conns     []*mqtt.Conn
	ln        net.Listener
	srv       *http.Server
	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main for cfg, which Load has validated.
func NewMain(cfg config.Config) *Main {
	return &Main{Config: cfg, Stdout: io.Discard}
}

// Run starts every part and returns once the HTTP API listens; the broker
// and store connect in the background and /readyz tells when they are up.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = newLogger(cfg)
	}
	log := m.Logger

	if err := m.openStore(); err != nil {
		return err
	}

	brokers := cfg.Brokers()
	if cfg.UsesEmbedded() {
		eb, err := embedded.Start(embedded.Config{Addr: cfg.Embedded.Addr, Logger: log.With("component", "embedded-mqtt")})
		if err != nil {
			return fmt.Errorf("embedded MQTT broker: %w", err)
		}
		m.Embedded = eb
		brokers = []config.Broker{{Name: "embedded", URL: eb.URL(), Topics: cfg.MQTT.Topics}}
	}

	b, err := bridge.New(bridge.Config{
		Store:      m.store,
		MaxPayload: int(cfg.HTTP.MaxPayload),
		Logger:     log,
	})
	if err != nil {
		return err
	}
	m.Bridge = b
	for _, br := range brokers {
		conn, err := mqtt.New(ctx, mqtt.Config{
			Name:     br.Name,
			URL:      br.URL,
			Username: br.Username,
			Password: br.Password,
			TLS: mqtt.TLSConfig{
				CAFile: br.TLS.CAFile, CertFile: br.TLS.CertFile, KeyFile: br.TLS.KeyFile,
				ServerName: br.TLS.ServerName, InsecureSkipVerify: br.TLS.InsecureSkipVerify,
			},
			ClientID:       cfg.MQTT.ClientIDPrefix + cfg.InstanceID + "-" + br.Name,
			Keepalive:      time.Duration(cfg.MQTT.Keepalive),
			ConnectTimeout: time.Duration(cfg.MQTT.ConnectTimeout),
			PublishTimeout: time.Duration(cfg.MQTT.PublishTimeout),
			ReconnectMin:   time.Duration(cfg.MQTT.ReconnectMin),
			ReconnectMax:   time.Duration(cfg.MQTT.ReconnectMax),
			Filters:        br.Topics,
			OnMessage:      b.Ingest,
			Logger:         log.With("broker", br.Name),
		})
		if err != nil {
			return fmt.Errorf("broker %q: %w", br.Name, err)
		}
		m.conns = append(m.conns, conn)
		if err := b.AddRoute(bridge.Route{Filters: br.Topics, Upstream: conn}); err != nil {
			return err
		}
	}

	ws, err := wsproxy.New(wsproxy.Config{
		Bridge:         b,
		Sessions:       m.sessions,
		ReadLimit:      int64(cfg.WS.ReadLimit),
		QueueMessages:  cfg.WS.QueueMessages,
		QueueBytes:     int(cfg.WS.QueueBytes),
		WriteTimeout:   time.Duration(cfg.WS.WriteTimeout),
		PingInterval:   time.Duration(cfg.WS.PingInterval),
		PongTimeout:    time.Duration(cfg.WS.PongTimeout),
		MaxPending:     cfg.WS.MaxPending,
		SessionTTL:     time.Duration(cfg.WS.SessionTTL),
		AllowedOrigins: cfg.WS.AllowedOrigins,
		Logger:         log.With("component", "ws"),
	})
	if err != nil {
		return err
	}
	m.ws = ws
	api := httpapi.New(httpapi.Config{
		Bridge:      b,
		Spec:        mqttbridge.OpenAPI,
		MaxBatch:    cfg.HTTP.MaxBatch,
		MaxWait:     time.Duration(cfg.HTTP.MaxWait),
		StreamQueue: cfg.WS.QueueMessages,
		Heartbeat:   time.Duration(cfg.HTTP.SSEHeartbeat),
		WebSocket:   ws,
		Web:         web.Handler(),
		WebPaths:    web.Paths(),
		Logger:      log,
	})
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	m.ln, m.HTTPAddr = ln, ln.Addr()
	m.srv = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()

	m.banner(brokers)
	return nil
}

func (m *Main) openStore() error {
	cfg, hist := m.Config.Redis, m.Config.History
	if cfg.URL == "" {
		st, err := memory.New(memory.Config{HistorySize: hist.Size, HistoryAge: time.Duration(hist.Age)})
		if err != nil {
			return err
		}
		m.store, m.sessions = st, memory.NewSessions()
		return nil
	}
	client, err := redisstore.NewClient(cfg.URL)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	st, err := redisstore.New(client, redisstore.Config{KeyPrefix: cfg.KeyPrefix, HistorySize: hist.Size, HistoryAge: time.Duration(hist.Age)})
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("redis: %w", err)
	}
	// Sessions stay in this process until the fleet keeps them in Redis.
	m.store, m.sessions, m.closeRds = st, memory.NewSessions(), client.Close
	return nil
}

func (m *Main) banner(brokers []config.Broker) {
	w := m.Stdout
	fmt.Fprintf(w, "mqttbridge %s listening\n", m.Config.InstanceID)
	fmt.Fprintf(w, "  HTTP API        http://%s  (console /, spec /openapi.yaml, health /healthz /readyz)\n", displayAddr(m.HTTPAddr))
	if m.Embedded != nil {
		fmt.Fprintf(w, "  embedded MQTT   %s  (MQTT v5 and 3.1.1, anonymous)\n", m.Embedded.URL())
	} else {
		for _, br := range brokers {
			fmt.Fprintf(w, "  broker %-8s %s  topics %v\n", br.Name, redactURL(br.URL), br.Topics)
		}
	}
	if m.Config.Redis.URL != "" {
		fmt.Fprintf(w, "  store           redis %s (key prefix %q)\n", redactURL(m.Config.Redis.URL), m.Config.Redis.KeyPrefix)
	} else {
		fmt.Fprintf(w, "  store           in memory (this instance only)\n")
	}
}

// Close stops serving, disconnects every broker and closes the store. Safe
// to call twice.
func (m *Main) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.ws != nil {
			errs = append(errs, m.ws.Shutdown(ctx))
		}
		if m.srv != nil {
			errs = append(errs, m.srv.Shutdown(ctx))
		}
		for _, c := range m.conns {
			errs = append(errs, c.Close(ctx))
		}
		if m.Embedded != nil {
			errs = append(errs, m.Embedded.Close())
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		if m.closeRds != nil {
			errs = append(errs, m.closeRds())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

func newLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// displayAddr turns ":8080" or "[::]:8080" into something a browser opens.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		_, port, _ := net.SplitHostPort(a.String())
		return "localhost:" + port
	}
	return tcp.String()
}

// redactURL hides a password in a URL for printing.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
