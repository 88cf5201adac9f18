package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Defaults for the zero values of Config.
const (
	DefaultKeepalive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMin   = 100 * time.Millisecond
	DefaultReconnectMax   = 10 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	DefaultQueueSize      = 10000
	DefaultName           = "default"
)

// TLSConfig configures TLS for mqtts:// and wss:// URLs. Files are PEM and
// are read once, by New.
type TLSConfig struct {
	// CAFile holds the CA certificates that verify the broker; empty means
	// the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, for
	// brokers that require client certificates; both or neither.
	CertFile, KeyFile string
	// ServerName is the name expected in the broker's certificate; empty
	// means the host of the URL.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. For tests only.
	InsecureSkipVerify bool
}

// Config configures a Conn. The comment of each field gives the default that
// its zero value gets.
type Config struct {
	// Name is the broker name used in logs and readiness reasons; default
	// "default".
	Name string
	// URL is the broker address: mqtt://host[:1883], mqtts://host[:8883],
	// ws://host[:port]/path or wss://host[:port]/path (tcp:// and ssl:// or
	// tls:// are accepted as aliases of mqtt:// and mqtts://). Required.
	// User information in the URL is used as Username/Password when those
	// are empty, and is never logged.
	URL string
	// Username and Password are sent in CONNECT when set. The password is
	// never logged.
	Username, Password string
	// TLS is used for mqtts:// and wss://; ignored (with a warning) otherwise.
	TLS TLSConfig
	// ClientID is the full MQTT client identifier. Required.
	ClientID string
	// Keepalive is the MQTT keep alive, in whole seconds; default 30s.
	Keepalive time.Duration
	// ConnectTimeout bounds one connection attempt (dial, TLS, CONNACK);
	// default 10s.
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the delay between connection
	// attempts: it starts at ReconnectMin (default 100ms), doubles with up
	// to 25% jitter and never exceeds ReconnectMax (default 10s). The first
	// attempt after a lost connection is immediate.
	ReconnectMin, ReconnectMax time.Duration
	// PublishTimeout is how long Publish waits for PUBACK/PUBCOMP (and a
	// subscribe for its SUBACK) before giving up with ErrTimeout; default
	// 10s.
	PublishTimeout time.Duration
	// Filters are the topic filters subscribed to after every (re)connect,
	// with QoS 1, Retain As Published and No Local off. May be empty.
	Filters []string
	// OnMessage receives every message of the subscriptions, in arrival
	// order, from one goroutine owned by the Conn (never from paho's
	// callback). It may block briefly; while it does, messages wait in the
	// queue. Required when Filters is not empty.
	OnMessage func(bridge.Message)
	// OnMessagesAck, instead of OnMessage, receives every message, in
	// arrival order, in batches: whatever is queued when it is called, up
	// to MaxBatch messages (a group commit: messages that arrive while it
	// handles one batch make up the next). It reports whether it handled
	// the whole batch: only then are the messages acknowledged to the
	// broker (in order). It may block as long as it needs, must not keep
	// the slice, and must report false only when it gives up the
	// connection for good (the caller then closes the Conn): later
	// messages are not acknowledged either, and the broker redelivers them
	// to the next session holder. Use it with SessionExpiry, so that
	// nothing the broker accepted is lost while no one is connected.
	OnMessagesAck func([]bridge.Message) bool
	// MaxBatch bounds the batches of OnMessagesAck; default 256.
	MaxBatch int
	// SessionExpiry > 0 keeps an MQTT session on the broker for a stable
	// ClientID: Clean Start off on every connect, this Session Expiry
	// Interval (whole seconds). Default 0: a clean session per connection.
	SessionExpiry time.Duration
	// ReplyPrefix, when set, makes the Conn a bridge.Replier: it subscribes
	// to ReplyPrefix+"+" (QoS 1) after every (re)connect, like Filters,
	// and hands every message under ReplyPrefix to OnReply, from paho's
	// goroutine, never to OnMessage. It ends with "/" (reply.go).
	ReplyPrefix string
	// OnReply receives the replies; it must not block. Required with
	// ReplyPrefix.
	OnReply func(bridge.Message)
	// IgnorePrefix: messages on topics that start with it (the replies of
	// every instance, which a wide filter such as "#" matches too) are
	// never handed to OnMessage or OnMessagesAck; they are acknowledged.
	IgnorePrefix string
	// QueueSize bounds the queue between the network and OnMessage or
	// OnMessagesAck; default 10000. When it is full, new messages for
	// OnMessage are dropped, counted (Dropped) and logged at most every 10
	// seconds; those for OnMessagesAck wait (see onPublishReceived).
	QueueSize int
	// Logger receives the Conn's logs; default: discard.
	Logger *slog.Logger

	// testHookConnectionUp, set by tests, runs first in onConnectionUp:
	// autopaho's goroutine late to be scheduled.
	testHookConnectionUp func()
}

// Conn is one connection to an MQTT v5 broker. It implements bridge.Upstream.
// Create it with New and release it with Close.
type Conn struct {
	cfg  Config
	name string
	log  *slog.Logger
	url  *url.URL // without user information
	cm   *autopaho.ConnectionManager

	ctx    context.Context // cancelled by Close; every goroutine below ends with it
	cancel context.CancelFunc
	wg     sync.WaitGroup // the dispatcher and the subscribe loops

	queue       chan incoming
	dropped     atomic.Uint64
	dropLogMu   sync.Mutex
	dropLogAt   time.Time
	dropLogSeen uint64

	mu         sync.Mutex
	closed     bool
	up         bool
	gen        uint64             // increases with every connection
	attempt    uint64             // increases before every connection attempt (generation)
	connCtx    context.Context    // the current connection; cancelled when it goes down
	connCancel context.CancelFunc // cancels connCtx
	lastErr    string             // why the last connection attempt failed or the connection dropped
	connFails  int                // failed attempts since the last connection (for log levels)
	maxPacket  uint32             // Maximum Packet Size of the last CONNACK; 0 = no limit
	subs       []subStatus        // one per cfg.Filters, reset on every connection
	changed    chan struct{}      // closed and replaced whenever the state above changes

	closeOnce sync.Once
	closeDone chan struct{}
}

var _ bridge.Upstream = (*Conn)(nil)

// New validates cfg, fills its defaults and starts connecting in the
// background; it does not wait for the connection (see AwaitReady). The
// connection lives until Close is called or ctx is cancelled; call Close in
// both cases to wait for every goroutine to end.
func New(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	u, user, pass, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Username == "" && cfg.Password == "" {
		cfg.Username, cfg.Password = user, pass
	}
	tlsCfg, err := cfg.TLS.build(u)
	if err != nil {
		return nil, err
	}
	if tlsCfg == nil && cfg.TLS != (TLSConfig{}) {
		cfg.Logger.Warn("mqtt: TLS settings ignored for a non-TLS URL", "broker", cfg.Name, "url", u.String())
	}

	c := &Conn{
		cfg:       cfg,
		name:      cfg.Name,
		log:       cfg.Logger.With("broker", cfg.Name),
		url:       u,
		subs:      make([]subStatus, len(cfg.Filters)),
		changed:   make(chan struct{}),
		closeDone: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)

	if cfg.OnMessage != nil || cfg.OnMessagesAck != nil {
		c.queue = make(chan incoming, cfg.QueueSize)
		c.wg.Add(1)
		go c.dispatch()
	}

	var password []byte
	if cfg.Password != "" {
		password = []byte(cfg.Password)
	}
	pahoLog := pahoLogger{log: c.log}
	acfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     uint16(cfg.Keepalive / time.Second),
		CleanStartOnInitialConnection: cfg.SessionExpiry == 0,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ReconnectBackoff:              newBackoff(cfg.ReconnectMin, cfg.ReconnectMax),
		ConnectTimeout:                cfg.ConnectTimeout,
		ConnectUsername:               cfg.Username,
		ConnectPassword:               password,
		// autopaho clears Clean Start after the first connection: a clean
		// connection needs it on every time, a session holder never (it
		// resumes the session that a previous holder left).
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			cp.CleanStart = cfg.SessionExpiry == 0
			c.mu.Lock()
			c.attempt++ // before the connection exists: see generation
			c.mu.Unlock()
			return cp, nil
		},
		OnConnectionUp:   c.onConnectionUp,
		OnConnectionDown: c.onConnectionDown,
		OnConnectError:   c.onConnectError,
		Errors:           pahoLog,
		PahoErrors:       pahoLog,
		ClientConfig: paho.ClientConfig{
			ClientID:           cfg.ClientID,
			OnPublishReceived:  []func(paho.PublishReceived) (bool, error){c.onPublishReceived},
			OnClientError:      c.onClientError,
			OnServerDisconnect: c.onServerDisconnect,
			// Publish and Subscribe are bounded by our own contexts; this
			// only must not cut them (or the CONNACK wait) short.
			PacketTimeout:              max(cfg.PublishTimeout, cfg.ConnectTimeout),
			EnableManualAcknowledgment: cfg.OnMessagesAck != nil,
			// paho sends the acknowledgements OnMessagesAck allowed on
			// this tick. Until then the broker holds the messages for the
			// session; Mosquitto drops what exceeds its queue
			// (max_queued_messages, 1000 by default), so at 20,000
			// messages/s a 10 ms tick already risked it.
			SendAcksInterval: 2 * time.Millisecond,
		},
	}
	cm, err := autopaho.NewConnection(c.ctx, acfg)
	if err != nil {
		c.cancel()
		c.wg.Wait()
		return nil, fmt.Errorf("mqtt: broker %q: %w", cfg.Name, err)
	}
	c.cm = cm
	c.log.Info("mqtt: connecting", "url", u.String(), "client_id", cfg.ClientID)
	return c, nil
}

// fill validates the configuration and sets the defaults.
func (cfg *Config) fill() error {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("mqtt: broker %q: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if cfg.URL == "" {
		return bad("URL is required")
	}
	if cfg.ClientID == "" {
		return bad("ClientID is required")
	}
	if !utf8.ValidString(cfg.ClientID) || len(cfg.ClientID) > 65535 {
		return bad("ClientID must be valid UTF-8 of at most 65535 bytes")
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.Keepalive < time.Second || cfg.Keepalive > 65535*time.Second {
		return bad("Keepalive %s must be between 1s and 65535s", cfg.Keepalive)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax == 0 {
		cfg.ReconnectMax = max(DefaultReconnectMax, cfg.ReconnectMin)
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.ConnectTimeout < 0 || cfg.ReconnectMin < 0 || cfg.PublishTimeout < 0 {
		return bad("timeouts must not be negative")
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		return bad("ReconnectMax %s is below ReconnectMin %s", cfg.ReconnectMax, cfg.ReconnectMin)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueSize < 0 {
		return bad("QueueSize must not be negative")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	seen := make(map[string]bool, len(cfg.Filters))
	for _, f := range cfg.Filters {
		if err := topic.ValidateFilter(f); err != nil {
			return bad("filter %q: %v", f, err)
		}
		if seen[f] {
			return bad("filter %q is listed twice", f)
		}
		seen[f] = true
	}
	switch {
	case len(cfg.Filters) > 0 && cfg.OnMessage == nil && cfg.OnMessagesAck == nil:
		return bad("OnMessage or OnMessagesAck is required when Filters are set")
	case cfg.OnMessage != nil && cfg.OnMessagesAck != nil:
		return bad("set OnMessage or OnMessagesAck, not both")
	case cfg.SessionExpiry < 0 || cfg.SessionExpiry > 0xFFFFFFFF*time.Second:
		return bad("SessionExpiry out of range")
	}
	if err := cfg.fillReplies(bad); err != nil {
		return err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Name is the configured broker name.
func (c *Conn) Name() string { return c.name }

// MaxPacketSize is the Maximum Packet Size of the broker's last CONNACK;
// 0 means no limit (or never connected).
func (c *Conn) MaxPacketSize() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxPacket
}

// Dropped is how many incoming messages were dropped because the queue to
// OnMessage was full.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// Connected reports whether the connection is up (for metrics).
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
}

// Reconnects counts the connections made after the first one (for
// metrics).
func (c *Conn) Reconnects() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.gen, 1) - 1
}

// Problems lists why the connection is not ready: not connected (with the
// last error), a subscription pending, refused by the broker or failed. It is
// empty when connected and every filter's SUBACK succeeded since the last
// (re)connect.
func (c *Conn) Problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.problemsLocked()
}

func (c *Conn) problemsLocked() []string {
	prefix := fmt.Sprintf("broker %q: ", c.name)
	switch {
	case c.closed:
		return []string{prefix + "connection closed"}
	case c.ctx.Err() != nil:
		return []string{prefix + "connection stopped: " + context.Cause(c.ctx).Error()}
	case !c.up && c.lastErr != "":
		return []string{prefix + "not connected (last error: " + c.lastErr + ")"}
	case !c.up:
		return []string{prefix + "not connected (connecting)"}
	}
	var out []string
	for i, s := range c.subs {
		if p := s.problem(c.cfg.Filters[i]); p != "" {
			out = append(out, prefix+p)
		}
	}
	return out
}

// AwaitReady waits until Problems is empty, and returns ctx's error if ctx
// ends first (or an error once the Conn is closed).
func (c *Conn) AwaitReady(ctx context.Context) error {
	for {
		c.mu.Lock()
		ready := len(c.problemsLocked()) == 0
		closed := c.closed || c.ctx.Err() != nil
		ch := c.changed
		c.mu.Unlock()
		if ready {
			return nil
		}
		if closed {
			return errors.New("mqtt: connection closed")
		}
		select {
		case <-ch:
		case <-c.ctx.Done():
		case <-ctx.Done():
			return fmt.Errorf("mqtt: broker %q not ready: %w", c.name, context.Cause(ctx))
		}
	}
}

// Close disconnects cleanly (DISCONNECT), stops every goroutine the Conn
// started and waits for them until ctx ends. Messages still queued for
// OnMessage are dropped. It is safe to call more than once and concurrently.
func (c *Conn) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.up = false
		if c.connCancel != nil {
			c.connCancel()
		}
		c.notifyLocked()
		c.mu.Unlock()
		c.cancel() // autopaho sends DISCONNECT and stops; so do our goroutines
		go func() {
			<-c.cm.Done()
			c.wg.Wait()
			close(c.closeDone)
		}()
	})
	select {
	case <-c.closeDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: broker %q: close: %w", c.name, ctx.Err())
	}
}

// notifyLocked wakes AwaitReady callers; c.mu must be held.
func (c *Conn) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// onConnectionUp is called by autopaho (which must not be blocked) once the
// CONNACK succeeded.
func (c *Conn) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	if h := c.cfg.testHookConnectionUp; h != nil {
		h()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.gen++
	c.up = true
	c.lastErr = ""
	c.connFails = 0
	c.maxPacket = 0
	if ca != nil && ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
		c.maxPacket = *ca.Properties.MaximumPacketSize
	}
	c.connCtx, c.connCancel = context.WithCancel(c.ctx)
	for i := range c.subs {
		c.subs[i] = subStatus{}
	}
	c.notifyLocked()
	if len(c.cfg.Filters) > 0 {
		c.wg.Add(1)
		go c.subscribeLoop(c.connCtx, cm, c.gen)
	}
	c.log.Info("mqtt: connected", "url", c.url.String(), "max_packet_size", c.maxPacket)
}

// onConnectionDown is called by autopaho after the connection that
// onConnectionUp announced is gone.
func (c *Conn) onConnectionDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = false
	if c.connCancel != nil {
		c.connCancel()
	}
	if c.lastErr == "" {
		c.lastErr = "connection lost"
	}
	c.notifyLocked()
	if !c.closed {
		c.log.Warn("mqtt: connection lost; reconnecting", "error", c.lastErr)
	}
	return !c.closed
}

// onConnectError is called by autopaho when a connection attempt fails.
func (c *Conn) onConnectError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.lastErr = err.Error()
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		c.lastErr = fmt.Sprintf("the broker refused the connection: reason 0x%02X %s", ce.ReasonCode, bridge.ReasonName(ce.ReasonCode))
		if ce.Reason != "" {
			c.lastErr += ": " + ce.Reason
		}
	}
	c.connFails++
	c.notifyLocked()
	level := slog.LevelDebug
	if c.connFails == 1 || c.connFails%100 == 0 {
		level = slog.LevelWarn
	}
	c.log.Log(c.ctx, level, "mqtt: connection attempt failed", "error", c.lastErr, "failures", c.connFails)
}

// onClientError is called by paho (in its own goroutine) when the
// connection fails; autopaho then calls onConnectionDown.
func (c *Conn) onClientError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.lastErr = "connection lost: " + err.Error()
	}
}

// onServerDisconnect is called by paho when the broker sent DISCONNECT.
func (c *Conn) onServerDisconnect(d *paho.Disconnect) {
	msg := fmt.Sprintf("broker sent DISCONNECT: reason 0x%02X %s", d.ReasonCode, disconnectReasonName(d.ReasonCode))
	if d.Properties != nil && d.Properties.ReasonString != "" {
		msg += ": " + d.Properties.ReasonString
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.lastErr = msg
	}
}

// current returns the live connection's context and the Maximum Packet Size
// of its CONNACK, or false when the Conn is not connected.
func (c *Conn) current() (context.Context, uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up || c.closed || c.ctx.Err() != nil {
		return nil, 0, false
	}
	return c.connCtx, c.maxPacket, true
}

// pahoLogger sends paho's and autopaho's error logs to slog.
type pahoLogger struct{ log *slog.Logger }

func (l pahoLogger) Println(v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.log.Warn("mqtt: paho: " + fmt.Sprintln(v...))
	}
}

func (l pahoLogger) Printf(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.log.Warn("mqtt: paho: " + fmt.Sprintf(format, v...))
	}
}

// disconnectReasonName is the MQTT 5 name of a DISCONNECT reason code.
func disconnectReasonName(code byte) string {
	switch code {
	case 0x00:
		return "normal disconnection"
	case 0x04:
		return "disconnect with will message"
	}
	return bridge.ReasonName(code)
}
