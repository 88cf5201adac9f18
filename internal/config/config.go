package config

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of the mqttbridge command. Default
// gives every field its default; Load fills it from flags, environment and
// file; Validate says what cannot work.
type Config struct {
	// InstanceID names this process in MQTT client ids; [A-Za-z0-9_-]{1,32}.
	// Default: 8 random hex characters, new at every start.
	InstanceID string `yaml:"instance_id"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json. Default text.
	LogFormat string   `yaml:"log_format"`
	HTTP      HTTP     `yaml:"http"`
	MQTT      MQTT     `yaml:"mqtt"`
	Embedded  Embedded `yaml:"embedded_mqtt"`
	Redis     Redis    `yaml:"redis"`
	WS        WS       `yaml:"ws"`
	History   History  `yaml:"history"`
	Auth      Auth     `yaml:"auth"`
	Limits    Limits   `yaml:"limits"`
	// Request and Webhooks: requests.go.
	Request  Request   `yaml:"request"`
	Webhooks []Webhook `yaml:"webhooks"`
	// Alarms: alarms.go.
	Alarms []Alarm `yaml:"alarms"`

	// MQTTProxy: mqttproxy.go.
	MQTTProxy MQTTProxy `yaml:"mqtt_proxy"`
	// Metrics: metrics.go.
	Metrics Metrics `yaml:"metrics"`
	// Tracing: tracing.go.
	Tracing Tracing `yaml:"tracing"`
}

// HTTP configures the HTTP server.
type HTTP struct {
	// Addr is the listen address, host:port. Default ":8080".
	Addr string `yaml:"addr"`
	// MaxPayload is the largest message payload accepted, in bytes; at most
	// 256MiB (the MQTT limit). Default 1MiB.
	MaxPayload ByteSize `yaml:"max_payload"`
	// MaxBatch is the most items in one /v1/publish/batch. Default 100.
	MaxBatch int `yaml:"max_batch"`
	// ShutdownTimeout bounds the graceful shutdown. Default 10s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MaxWait is the longest long-poll (GET ?wait=). Default 60s.
	MaxWait Duration `yaml:"max_wait"`
	// SSEHeartbeat is the interval of keep-alive comments on SSE streams.
	// Default 15s.
	SSEHeartbeat Duration `yaml:"sse_heartbeat"`
	// ReadHeaderTimeout bounds reading a request's line and headers.
	// Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, line, headers and body:
	// a client that sends its body more slowly gets 400 and its connection
	// is closed. It does not cut what follows: SSE, long-poll, WebSocket,
	// or a request waiting for its reply. Default 30s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection that sends no next
	// request for this long. Default 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's line and headers, from 1KiB to
	// 1MiB; a request over it (and over the 4KiB that Go's server allows
	// on top) is answered 431. Default 32KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// TLS serves HTTPS (security.go); CORS admits other origins.
	TLS  ServerTLS `yaml:"tls"`
	CORS CORS      `yaml:"cors"`
}

// WS configures the WebSocket endpoint /v1/ws.
type WS struct {
	// ReadLimit is the largest frame a client may send. Default 64KiB.
	ReadLimit ByteSize `yaml:"read_limit"`
	// QueueBytes bounds each connection's (and each SSE stream's)
	// outgoing queue: each message counts its payload and 128 bytes. A
	// client that falls further behind is disconnected (4001); one that
	// keeps reading is never disconnected by a burst within it. Default
	// 8MiB.
	QueueBytes ByteSize `yaml:"queue_bytes"`
	// QueueMessages, when above 0, also bounds the queue in messages.
	// Default 0: the byte budget alone.
	QueueMessages int `yaml:"queue_messages"`
	// MaxLag disconnects a client (4001) whose oldest queued message has
	// waited longer than this when the next one arrives: it fell too far
	// behind in time, though within queue_bytes. 0 turns it off. Default
	// 30s.
	MaxLag Duration `yaml:"max_lag"`
	// WriteTimeout bounds writing one frame. Default 10s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// PingInterval is how often the server pings. Default 25s.
	PingInterval Duration `yaml:"ping_interval"`
	// PongTimeout closes a connection silent for this long. Default 60s.
	PongTimeout Duration `yaml:"pong_timeout"`
	// MaxPending is the most unacknowledged QoS 1 messages per session;
	// more wait in the outgoing queue for acks, and a queue that fills
	// meanwhile closes with 4002. Default 1000.
	MaxPending int `yaml:"max_pending"`
	// SessionTTL is how long a session outlives its connection. Default 5m.
	SessionTTL Duration `yaml:"session_ttl"`
	// AllowedOrigins may connect besides the server's own origin and
	// localhost: exact origins such as "https://app.example.com", or "*".
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// History bounds the message history that resume reads from.
type History struct {
	// Size is the most messages kept. Default 10000.
	Size int `yaml:"size"`
	// Age is the oldest message kept. Default 1h.
	Age Duration `yaml:"age"`
}

// MQTT configures the upstream brokers. Use Config.Brokers, not URL and
// Brokers, to find the brokers in effect.
type MQTT struct {
	// URL is the shorthand for one broker named "default"; exclusive with
	// Brokers. With neither, the embedded broker is used.
	URL string `yaml:"url"`
	// Username, Password and TLS are for URL only.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile holds the password instead (Load reads it).
	PasswordFile string `yaml:"password_file"`
	TLS          TLS    `yaml:"tls"`
	// Topics are the bridged filters of URL's broker or of the embedded
	// broker. Default ["#"]; must be unset with Brokers.
	Topics []string `yaml:"topics"`
	// Brokers are several named brokers, each bridging its own topics.
	Brokers []Broker `yaml:"brokers"`
	// ClientIDPrefix starts every MQTT client id. Default "mqttbridge-".
	ClientIDPrefix string `yaml:"client_id_prefix"`
	// Keepalive is the MQTT keep alive, whole seconds in 1s..65535s.
	// Default 30s.
	Keepalive Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt. Default 10s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// PublishTimeout bounds waiting for PUBACK/PUBCOMP. Default 10s.
	PublishTimeout Duration `yaml:"publish_timeout"`
	// ReconnectMin and ReconnectMax bound the reconnect back-off.
	// Defaults 100ms and 10s; ReconnectMax >= ReconnectMin.
	ReconnectMin Duration `yaml:"reconnect_min"`
	ReconnectMax Duration `yaml:"reconnect_max"`
	// SessionExpiry is how long the broker keeps the fleet's ingest
	// session (and queues QoS 1 messages for it) while no instance is
	// connected; used with Redis. Default 1h.
	SessionExpiry Duration `yaml:"session_expiry"`
	// IngestLease is how long an instance holds a broker's ingest lease
	// without renewing it: the longest a dead instance delays ingest.
	// Default 5s.
	IngestLease Duration `yaml:"ingest_lease"`
}

// Broker is one upstream broker and the topics it owns. No topic may be
// matched by the filters of two brokers.
type Broker struct {
	// Name is unique, [A-Za-z0-9_-]+; the shorthand mqtt.url is "default".
	Name string `yaml:"name"`
	// URL is mqtt://, mqtts://, ws:// or wss:// (tcp:// and ssl:// are
	// aliases of mqtt:// and mqtts://), without credentials.
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile holds the password instead (Load reads it).
	PasswordFile string   `yaml:"password_file"`
	TLS          TLS      `yaml:"tls"`
	Topics       []string `yaml:"topics"`
}

// TLS configures the TLS client of an mqtts:// or wss:// broker. Relative
// paths in the YAML file are relative to the file's directory; Load makes
// them absolute.
type TLS struct {
	// CAFile is a PEM bundle to trust instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key: both
	// or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables server certificate checks; tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IsZero reports whether nothing is set.
func (t TLS) IsZero() bool { return t == TLS{} }

// Embedded configures the embedded MQTT broker, used only when no broker is
// configured.
type Embedded struct {
	// Addr is its TCP listener, host:port. Default "127.0.0.1:11883".
	Addr string `yaml:"addr"`
}

// Redis configures the store: a single Redis (URL), Redis Sentinel
// (Sentinel) or Redis Cluster (Cluster). With none of them the in-memory
// store is used. Use Enabled to tell.
type Redis struct {
	// URL is redis:// or rediss:// (TLS), credentials allowed. Alone it
	// is the single Redis. With Sentinel or Cluster it has no host and
	// gives what every node shares: user, password, database (not on
	// Cluster), TLS (rediss://), e.g. "rediss://:password@/0"; optional
	// then.
	URL string `yaml:"url"`
	// KeyPrefix starts every key. Default "mqttbridge:".
	KeyPrefix string `yaml:"key_prefix"`
	// Password, or PasswordFile holding it, is used instead of a password
	// in URL (see RedisURL), on every node.
	Password     string        `yaml:"password"`
	PasswordFile string        `yaml:"password_file"`
	Sentinel     RedisSentinel `yaml:"sentinel"`
	Cluster      RedisCluster  `yaml:"cluster"`
}

// RedisSentinel reaches the master of a Redis Sentinel deployment, and
// follows its failovers.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor the master under
	// ("sentinel monitor <name> ...").
	MasterName string `yaml:"master_name"`
	// Addrs are sentinels, host:port (usually port 26379).
	Addrs []string `yaml:"addrs"`
	// Username and Password (or PasswordFile holding it) authenticate to
	// the sentinels themselves, when they require it; the master's
	// credentials are redis.url's or redis.password.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// RedisCluster reaches a Redis Cluster.
type RedisCluster struct {
	// Addrs are some of the cluster's nodes, host:port; the client learns
	// the others from them.
	Addrs []string `yaml:"addrs"`
}

// Enabled reports whether a Redis store is configured.
func (r Redis) Enabled() bool {
	return r.URL != "" || r.Sentinel.enabled() || r.Cluster.enabled()
}

func (s RedisSentinel) enabled() bool { return s.MasterName != "" || len(s.Addrs) > 0 }

func (c RedisCluster) enabled() bool { return len(c.Addrs) > 0 }

// Default is the configuration with every default filled in; InstanceID is
// random, so two calls differ there.
func Default() Config {
	c := Config{
		InstanceID: randomID(),
		LogLevel:   "info",
		LogFormat:  "text",
		HTTP: HTTP{
			Addr:            ":8080",
			MaxPayload:      MiB,
			MaxBatch:        100,
			ShutdownTimeout: Duration(10 * time.Second),
			MaxWait:         Duration(60 * time.Second),
			SSEHeartbeat:    Duration(15 * time.Second),

			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(30 * time.Second),
			IdleTimeout:       Duration(30 * time.Second),
			MaxHeaderBytes:    32 * KiB,
		},
		MQTT: MQTT{
			Topics:         []string{"#"},
			ClientIDPrefix: "mqttbridge-",
			Keepalive:      Duration(30 * time.Second),
			ConnectTimeout: Duration(10 * time.Second),
			PublishTimeout: Duration(10 * time.Second),
			ReconnectMin:   Duration(100 * time.Millisecond),
			ReconnectMax:   Duration(10 * time.Second),
			SessionExpiry:  Duration(time.Hour),
			IngestLease:    Duration(5 * time.Second),
		},
		Embedded: Embedded{Addr: "127.0.0.1:11883"},
		Redis:    Redis{KeyPrefix: "mqttbridge:"},
		WS: WS{
			ReadLimit:    64 * KiB,
			QueueBytes:   8 * MiB,
			MaxLag:       Duration(30 * time.Second),
			WriteTimeout: Duration(10 * time.Second),
			PingInterval: Duration(25 * time.Second),
			PongTimeout:  Duration(60 * time.Second),
			MaxPending:   1000,
			SessionTTL:   Duration(5 * time.Minute),
		},
		History: History{Size: 10000, Age: Duration(time.Hour)},
	}
	defaultSecurity(&c)
	defaultRequests(&c)
	defaultMQTTProxy(&c)
	defaultTracing(&c)
	return c
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// DefaultBrokerName is the name of the broker given by mqtt.url.
const DefaultBrokerName = "default"

// Brokers returns the brokers in effect, as copies: the mqtt.brokers list,
// or one broker named "default" from mqtt.url, mqtt.username,
// mqtt.password, mqtt.tls and mqtt.topics, or nil when the embedded broker
// is used. URLs are normalised: tcp:// becomes mqtt://, ssl:// becomes
// mqtts://, and an mqtt(s) URL without a port gets 1883 (8883).
func (c Config) Brokers() []Broker {
	if len(c.MQTT.Brokers) > 0 {
		out := make([]Broker, len(c.MQTT.Brokers))
		for i, b := range c.MQTT.Brokers {
			b.URL = normalizeMQTTURL(b.URL)
			b.Topics = slices.Clone(b.Topics)
			out[i] = b
		}
		return out
	}
	if c.MQTT.URL != "" {
		return []Broker{{
			Name:     DefaultBrokerName,
			URL:      normalizeMQTTURL(c.MQTT.URL),
			Username: c.MQTT.Username,
			Password: c.MQTT.Password,
			TLS:      c.MQTT.TLS,
			Topics:   slices.Clone(c.MQTT.Topics),
		}}
	}
	return nil
}

// UsesEmbedded reports whether no broker is configured, so the embedded
// broker runs on Embedded.Addr and owns MQTT.Topics.
func (c Config) UsesEmbedded() bool {
	return c.MQTT.URL == "" && len(c.MQTT.Brokers) == 0
}

// SlogLevel is LogLevel as a slog.Level (info when unknown).
func (c Config) SlogLevel() slog.Level {
	switch strings.ToLower(c.LogLevel) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func normalizeMQTTURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Scheme = strings.ToLower(u.Scheme)
	port := ""
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme, port = "mqtt", "1883"
	case "ssl", "mqtts":
		u.Scheme, port = "mqtts", "8883"
	}
	if port != "" && u.Port() == "" && u.Hostname() != "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u.String()
}

// redactedMark replaces a password, as url.URL.Redacted does.
const redactedMark = "xxxxx"

// Redacted returns a copy of c safe to print or log: passwords are
// replaced with "xxxxx" and URLs lose their passwords.
func (c Config) Redacted() Config {
	c.MQTT = c.MQTT.redacted()
	c.Redis = c.Redis.redacted()
	c.Auth = c.Auth.redacted()
	c.Webhooks = redactWebhooks(c.Webhooks)
	c.Tracing = c.Tracing.redacted()
	return c
}

func (m MQTT) redacted() MQTT {
	m.URL = redactURL(m.URL)
	m.Password = redactSecret(m.Password)
	m.Topics = slices.Clone(m.Topics)
	brokers := make([]Broker, len(m.Brokers))
	for i, b := range m.Brokers {
		brokers[i] = b.redacted()
	}
	if m.Brokers == nil {
		brokers = nil
	}
	m.Brokers = brokers
	return m
}

func (b Broker) redacted() Broker {
	b.URL = redactURL(b.URL)
	b.Password = redactSecret(b.Password)
	b.Topics = slices.Clone(b.Topics)
	return b
}

func (r Redis) redacted() Redis {
	r.URL = redactURL(r.URL)
	r.Password = redactSecret(r.Password)
	r.Sentinel.Password = redactSecret(r.Sentinel.Password)
	r.Sentinel.Addrs = slices.Clone(r.Sentinel.Addrs)
	r.Cluster.Addrs = slices.Clone(r.Cluster.Addrs)
	return r
}

func redactSecret(s string) string {
	if s == "" {
		return ""
	}
	return redactedMark
}

// redactURL hides the password of a URL's user info and of a "password"
// query parameter. An unparseable URL, or one with an "@" outside its user
// info, is hidden whole, since where its password is cannot be known.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil && strings.Contains(raw, "@") {
		return "[unparseable URL hidden]"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", redactedMark)
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// String renders c as YAML with passwords redacted.
func (c Config) String() string { return yamlString(c.Redacted()) }

// GoString is String, so %#v does not print passwords either.
func (c Config) GoString() string { return c.String() }

// LogValue logs c with passwords redacted, as a group of its YAML keys.
func (c Config) LogValue() slog.Value {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(c.String()), &m); err != nil {
		return slog.StringValue(c.String())
	}
	return slog.AnyValue(m)
}

// String renders m as YAML with passwords redacted.
func (m MQTT) String() string { return yamlString(m.redacted()) }

// GoString is String.
func (m MQTT) GoString() string { return m.String() }

// String renders b as YAML with its password redacted.
func (b Broker) String() string { return yamlString(b.redacted()) }

// GoString is String.
func (b Broker) GoString() string { return b.String() }

// String renders r as YAML with the URL's password redacted.
func (r Redis) String() string { return yamlString(r.redacted()) }

// GoString is String.
func (r Redis) GoString() string { return r.String() }

func yamlString(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}
