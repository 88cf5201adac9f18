package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/embedded"
	"github.com/mqttbridge/mqttbridge/internal/logbuf"
	"github.com/mqttbridge/mqttbridge/internal/metrics"
	"github.com/mqttbridge/mqttbridge/internal/tracing"
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
	Webhooks *webhook.Manager // the webhooks (webhooks.go)
	Metrics  *metrics.Metrics // this instance's Prometheus registry, served at /metrics

	store     bridge.Store
	sessions  bridge.Sessions
	sec       *security
	ws        *wsproxy.Server
	mqtt      *wsproxy.MQTTServer // nil when mqtt_proxy.enabled is false
	closeRds  func() error
	tracing   *tracing.Provider // nil when tracing is off
	conns     []*mqtt.Conn
	inline    *embedded.Inline // the bridge's connection to the embedded broker
	logs      *logbuf.Writer   // under the default Logger; flushed by Close
	ln        net.Listener
	srv       *http.Server
	closeOnce sync.Once
	closeErr  error
	drainOnce sync.Once
	drainErr  error
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
		m.Logger, m.logs = newLogger(cfg)
	}
	log := m.Logger

	if err := m.openStore(); err != nil {
		return err
	}

	brokers := cfg.Brokers()
	if cfg.UsesEmbedded() {
		eb, err := embedded.Start(embedded.Config{Addr: cfg.Embedded.Addr, Logger: log.With("component", "embedded-mqtt")})
		if err != nil {
			return fmt.Errorf("%w%s", err, portHint(err, "--embedded-mqtt-addr"))
		}
		m.Embedded = eb
		brokers = []config.Broker{{Name: "embedded", URL: eb.URL(), Topics: cfg.MQTT.Topics}}
	}

	sec, err := m.buildSecurity()
	if err != nil {
		return err
	}
	m.sec = sec
	m.Metrics = metrics.New()
	tp, err := m.startTracing()
	if err != nil {
		return err
	}
	if err := m.startWebhooks(ctx); err != nil { // before the bridge: alarms escalate to webhooks
		return err
	}
	b, err := bridge.New(bridge.Config{
		Store:      m.store,
		Sessions:   m.sessions,
		Authorizer: sec.authorizer,
		Limiter:    sec.limiter,
		Limits:     sec.limits,
		MaxPayload: int(cfg.HTTP.MaxPayload),
		LeaseTTL:   time.Duration(cfg.MQTT.IngestLease),
		Metrics:    m.Metrics,
		Logger:     log,

		TracerProvider: tp,
		Alarms:         cfg.AlarmConfigs(),
		Escalator:      m.Webhooks,
	})
	if err != nil {
		return err
	}
	m.Bridge = b
	m.Metrics.WatchBridge(b)
	for _, br := range brokers {
		if m.Embedded != nil {
			if err := m.addInlineRoute(b, br); err != nil {
				return err
			}
			continue
		}
		conf := m.brokerConfig(br)
		// This instance's own connection, for publishing.
		conf.ClientID = cfg.MQTT.ClientIDPrefix + cfg.InstanceID + "-" + br.Name
		conf.ReplyPrefix, conf.OnReply = cfg.ReplyPrefix(), b.HandleReply // request/response
		conn, err := mqtt.New(ctx, conf)
		if err != nil {
			return fmt.Errorf("broker %q: %w", br.Name, err)
		}
		m.conns = append(m.conns, conn)
		m.Metrics.AddBroker(conn)
		if err := b.AddRoute(bridge.Route{Filters: br.Topics, Upstream: conn, Ingest: m.ingestFunc(br)}); err != nil {
			return err
		}
	}
	b.Start(ctx)
	m.Metrics.WatchWebhooks(m.Webhooks)

	ws, err := wsproxy.New(wsproxy.Config{
		Bridge:         b,
		ReadLimit:      int64(cfg.WS.ReadLimit),
		QueueMessages:  cfg.WS.QueueMessages,
		QueueBytes:     int(cfg.WS.QueueBytes),
		MaxLag:         time.Duration(cfg.WS.MaxLag),
		WriteTimeout:   time.Duration(cfg.WS.WriteTimeout),
		PingInterval:   time.Duration(cfg.WS.PingInterval),
		PongTimeout:    time.Duration(cfg.WS.PongTimeout),
		MaxPending:     cfg.WS.MaxPending,
		SessionTTL:     time.Duration(cfg.WS.SessionTTL),
		AllowedOrigins: cfg.WS.AllowedOrigins,
		Authenticator:  sec.forWS(),
		Logger:         log.With("component", "ws"),

		RequestTimeout:    time.Duration(cfg.Request.Timeout),
		MaxRequestTimeout: time.Duration(cfg.Request.MaxTimeout),
	})
	if err != nil {
		return err
	}
	m.ws = ws
	mqttHandler, err := m.startMQTTProxy(brokers[0])
	if err != nil {
		return err
	}
	api := httpapi.New(httpapi.Config{
		Bridge:      b,
		Spec:        mqttbridge.OpenAPI,
		MaxBatch:    cfg.HTTP.MaxBatch,
		MaxWait:     time.Duration(cfg.HTTP.MaxWait),
		StreamQueue: bridge.FeedConfig{QueueBytes: int(cfg.WS.QueueBytes), QueueMessages: cfg.WS.QueueMessages, MaxLag: time.Duration(cfg.WS.MaxLag)},
		Heartbeat:   time.Duration(cfg.HTTP.SSEHeartbeat),
		WebSocket:   ws,
		MQTT:        mqttHandler,
		Web:         m.webConsole(),
		WebPaths:    web.Paths(),
		Logger:      log,

		Authenticator:  sec.forHTTP(),
		PublicPaths:    m.publicPaths(),
		AllowedOrigins: cfg.WS.AllowedOrigins,
		CORS: httpapi.CORS{AllowedOrigins: cfg.HTTP.CORS.AllowedOrigins, AllowCredentials: cfg.HTTP.CORS.AllowCredentials,
			MaxAge: time.Duration(cfg.HTTP.CORS.MaxAge)},

		RequestTimeout:    time.Duration(cfg.Request.Timeout),
		MaxRequestTimeout: time.Duration(cfg.Request.MaxTimeout),
		Webhooks:          m.Webhooks,
		Metrics:           m.Metrics.Handler(),
		PublicMetrics:     cfg.Metrics.Public,
		Observer:          m.Metrics,
		TracerProvider:    tp,
	})
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http: %w%s", err, portHint(err, "--http-addr"))
	}
	m.ln, m.HTTPAddr = ln, ln.Addr()
	// ReadTimeout bounds a request up to the end of its body, where
	// net/http lifts the read deadline: streams, long-polls and requests
	// waiting for a reply are not cut (TestHTTPTimeouts).
	m.srv = &http.Server{Handler: api, ReadHeaderTimeout: time.Duration(cfg.HTTP.ReadHeaderTimeout),
		ReadTimeout: time.Duration(cfg.HTTP.ReadTimeout), IdleTimeout: time.Duration(cfg.HTTP.IdleTimeout),
		MaxHeaderBytes: int(cfg.HTTP.MaxHeaderBytes), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), TLSConfig: sec.tls}
	go func() {
		serve := func() error { return m.srv.Serve(ln) }
		if sec.tls != nil {
			serve = func() error { return m.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	m.Webhooks.Start(ctx)

	m.banner(brokers)
	return nil
}

// startTracing builds the tracer provider when tracing.otlp_endpoint is
// set; otherwise it returns nil, and nothing makes spans or adds a
// traceparent to a message.
func (m *Main) startTracing() (trace.TracerProvider, error) {
	t := m.Config.Tracing
	if !t.Enabled() {
		return nil, nil
	}
	p, err := tracing.New(tracing.Config{
		Endpoint:     t.ExportURL(),
		Headers:      t.Headers,
		SampleRatio:  t.SampleRatio,
		ServiceName:  t.ServiceName,
		InstanceID:   m.Config.InstanceID,
		BatchTimeout: time.Duration(t.BatchTimeout),
		Logger:       m.Logger.With("component", "tracing"),
	})
	if err != nil {
		return nil, err
	}
	m.tracing = p
	return p.TracerProvider(), nil
}

// brokerConfig is the MQTT connection configuration of a broker, without
// a client id.
func (m *Main) brokerConfig(br config.Broker) mqtt.Config {
	cfg := m.Config.MQTT
	return mqtt.Config{
		Name:     br.Name,
		URL:      br.URL,
		Username: br.Username,
		Password: br.Password,
		TLS: mqtt.TLSConfig{
			CAFile: br.TLS.CAFile, CertFile: br.TLS.CertFile, KeyFile: br.TLS.KeyFile,
			ServerName: br.TLS.ServerName, InsecureSkipVerify: br.TLS.InsecureSkipVerify,
		},
		Keepalive:      time.Duration(cfg.Keepalive),
		ConnectTimeout: time.Duration(cfg.ConnectTimeout),
		PublishTimeout: time.Duration(cfg.PublishTimeout),
		ReconnectMin:   time.Duration(cfg.ReconnectMin),
		ReconnectMax:   time.Duration(cfg.ReconnectMax),
		Logger:         m.Logger, // the adapter adds broker=<name>
		// Replies (of every instance) are never ingested.
		IgnorePrefix: m.Config.Request.ReplyPrefix,
	}
}

// ingestFunc opens the ingest subscription of a broker for the instance
// that holds its lease. With Redis the fleet shares one MQTT session with a
// stable client id, so that a new holder resumes where the last one
// stopped and the broker itself disconnects a stale holder; alone, with
// the memory store, the instance has a clean session of its own.
func (m *Main) ingestFunc(br config.Broker) bridge.IngestFunc {
	return func(ctx context.Context, handle func([]bridge.Message) bool) (bridge.IngestConn, error) {
		conf := m.brokerConfig(br)
		conf.Filters, conf.OnMessagesAck = br.Topics, handle
		conf.ClientID = m.Config.MQTT.ClientIDPrefix + m.Config.InstanceID + "-" + br.Name + "-ingest"
		if m.Config.Redis.Enabled() {
			conf.ClientID = m.Config.MQTT.ClientIDPrefix + "ingest-" + fleetID(m.Config.Redis) + "-" + br.Name
			conf.SessionExpiry = time.Duration(m.Config.MQTT.SessionExpiry)
		}
		conf.Logger = conf.Logger.With("ingest", true)
		return mqtt.New(ctx, conf)
	}
}

// addInlineRoute routes to the embedded broker through its inline client:
// the bridge's publishes, replies and (with the memory store) its ingest
// cost no socket. With Redis the ingest stays a TCP client with a session
// on the broker, which keeps what arrives while no instance holds the
// lease.
func (m *Main) addInlineRoute(b *bridge.Bridge, br config.Broker) error {
	in, err := m.Embedded.Inline(embedded.InlineConfig{
		Name:         br.Name,
		ClientID:     m.Config.MQTT.ClientIDPrefix + m.Config.InstanceID + "-" + br.Name,
		ReplyPrefix:  m.Config.ReplyPrefix(),
		OnReply:      b.HandleReply,
		IgnorePrefix: m.Config.Request.ReplyPrefix,
		Logger:       m.Logger.With("component", "embedded-mqtt"),
	})
	if err != nil {
		return err
	}
	m.inline = in
	m.Metrics.AddBroker(in)
	ingest := in.Ingest(br.Topics)
	if m.Config.Redis.Enabled() {
		ingest = m.ingestFunc(br)
	}
	return b.AddRoute(bridge.Route{Filters: br.Topics, Upstream: in, Ingest: ingest})
}

// fleetID names the fleet that shares a Redis store and key prefix, for
// the ingest client id: two fleets on one broker must not share a session.
// The Redis is its address and database; with Sentinel, the master's name
// and database (whichever sentinels an instance lists); with Cluster, only
// "cluster" (whichever nodes it lists), so two clusters behind one broker
// need different key prefixes.
func fleetID(r config.Redis) string {
	where, db := r.URL, ""
	if u, err := url.Parse(r.URL); err == nil {
		where, db = u.Host+u.Path, u.Path
	}
	switch {
	case len(r.Sentinel.Addrs) > 0:
		where = "sentinel:" + r.Sentinel.MasterName + db
	case len(r.Cluster.Addrs) > 0:
		where = "cluster"
	}
	sum := sha256.Sum256([]byte(where + "\x00" + r.KeyPrefix))
	return hex.EncodeToString(sum[:4])
}

func (m *Main) openStore() error {
	cfg, hist := m.Config.Redis, m.Config.History
	if !cfg.Enabled() {
		st, err := memory.New(memory.Config{HistorySize: hist.Size, HistoryAge: time.Duration(hist.Age)})
		if err != nil {
			return err
		}
		m.store, m.sessions = st, memory.NewSessions()
		return nil
	}
	client, err := redisstore.NewUniversalClient(redisstore.ClientConfig{
		URL: cfg.URL, Password: cfg.Password,
		MasterName: cfg.Sentinel.MasterName, SentinelAddrs: cfg.Sentinel.Addrs,
		SentinelUsername: cfg.Sentinel.Username, SentinelPassword: cfg.Sentinel.Password,
		ClusterAddrs: cfg.Cluster.Addrs,
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	// go-redis's own lines, in this log (one per process: the latest
	// instance's), until the client is closed.
	unsetLog := redisstore.SetLogger(m.Logger.With("component", "redis"))
	closeRds := func() error {
		err := client.Close()
		unsetLog()
		return err
	}
	st, err := redisstore.New(client, redisstore.Config{KeyPrefix: cfg.KeyPrefix, HistorySize: hist.Size, HistoryAge: time.Duration(hist.Age)})
	if err != nil {
		_ = closeRds()
		return fmt.Errorf("redis: %w", err)
	}
	m.store, m.sessions, m.closeRds = st, st.Sessions(), closeRds
	return nil
}

func (m *Main) banner(brokers []config.Broker) {
	w := m.Stdout
	fmt.Fprintf(w, "mqttbridge %s listening\n", m.Config.InstanceID)
	scheme := "http"
	if m.sec != nil && m.sec.tls != nil {
		scheme = "https"
	}
	fmt.Fprintf(w, "  HTTP API        %s://%s  (console /, spec /openapi.yaml, health /healthz /readyz, metrics /metrics)\n", scheme, displayAddr(m.HTTPAddr))
	if m.Config.Auth.Enabled() {
		fmt.Fprintf(w, "  authentication  on: %s\n", authSummary(m.Config.Auth))
	} else {
		fmt.Fprintf(w, "  authentication  off: every caller may do everything (see docs/security.md)\n")
	}
	if m.Embedded != nil {
		fmt.Fprintf(w, "  embedded MQTT   %s  (MQTT v5 and 3.1.1, anonymous)\n", m.Embedded.URL())
	} else {
		for _, br := range brokers {
			fmt.Fprintf(w, "  broker %-8s %s  topics %v\n", br.Name, redactURL(br.URL), br.Topics)
		}
	}
	if t := m.Config.Tracing; t.Enabled() {
		fmt.Fprintf(w, "  tracing         OTLP %s  (sample ratio %g)\n", redactURL(t.ExportURL()), t.SampleRatio)
	}
	switch r := m.Config.Redis; {
	case len(r.Sentinel.Addrs) > 0:
		fmt.Fprintf(w, "  store           redis sentinel %v, master %q (key prefix %q)\n", r.Sentinel.Addrs, r.Sentinel.MasterName, r.KeyPrefix)
	case len(r.Cluster.Addrs) > 0:
		fmt.Fprintf(w, "  store           redis cluster %v (key prefix %q)\n", r.Cluster.Addrs, r.KeyPrefix)
	case r.URL != "":
		fmt.Fprintf(w, "  store           redis %s (key prefix %q)\n", redactURL(r.URL), r.KeyPrefix)
	default:
		fmt.Fprintf(w, "  store           in memory (this instance only)\n")
	}
}

// Drain begins a graceful shutdown while the listener stays open: /readyz
// answers 503 with the reason "draining", SSE streams and long-polls end,
// new streams are refused with 503, and every WebSocket client gets close
// code 1012 (service restart), so that it reconnects to another instance
// and resumes. It waits for the WebSocket connections to end (their
// sessions saved) or ctx. Close calls it first; safe to call twice.
func (m *Main) Drain(ctx context.Context) error {
	m.drainOnce.Do(func() {
		if m.Bridge != nil {
			m.Bridge.Drain()
		}
		if m.ws != nil {
			m.drainErr = m.ws.Shutdown(ctx)
		}
	})
	return m.drainErr
}

// Close shuts down gracefully within ctx: Drain, then release the ingest
// leases (so that another instance takes over at once), let in-flight
// requests finish, disconnect every broker and close the store. Safe to
// call twice.
func (m *Main) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		var errs []error
		errs = append(errs, m.Drain(ctx))
		if m.mqtt != nil {
			errs = append(errs, m.mqtt.Shutdown(ctx))
		}
		if m.Webhooks != nil {
			errs = append(errs, m.Webhooks.Close(ctx))
		}
		if m.Bridge != nil {
			m.Bridge.Close()
		}
		if m.srv != nil {
			errs = append(errs, m.srv.Shutdown(ctx))
		}
		for _, c := range m.conns {
			errs = append(errs, c.Close(ctx))
		}
		if m.tracing != nil {
			// The spans still waiting go out now; a receiver that does not
			// take them in time costs those spans, not the shutdown.
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.tracing.Shutdown(tctx); err != nil {
				m.Logger.Warn("tracing: exporting the last spans failed", "err", err)
			}
			cancel()
		}
		if m.inline != nil {
			errs = append(errs, m.inline.Close(ctx))
		}
		if m.Embedded != nil {
			errs = append(errs, m.Embedded.Close())
		}
		if m.sec != nil && m.sec.authn != nil {
			m.sec.authn.Close() // the JWKS refresh
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		if m.closeRds != nil {
			errs = append(errs, m.closeRds())
		}
		if m.logs != nil {
			_ = m.logs.Flush()
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// newLogger logs to stderr through a logbuf.Writer, which Close flushes.
func newLogger(cfg config.Config) (*slog.Logger, *logbuf.Writer) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	w := logbuf.New(os.Stderr)
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(logbuf.Handler(h, w)), w
}

// displayAddr turns ":8080" or "[::]:8080" into something a browser opens.
// portHint is what to do when a listen error says the port is taken.
func portHint(err error, flag string) string {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return ""
	}
	return fmt.Sprintf(" (another process listens there: stop it, or choose another address with %s)", flag)
}

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
