// Package embedded runs the MQTT broker that mqttbridge uses when no
// upstream broker is configured: mochi-mqtt (MQTT 5 and 3.1.1) with every
// client allowed, on a TCP listener that devices and tools such as
// mosquitto_pub can reach.
//
// The bridge's own publishes and subscriptions go through mochi's inline
// client (Inline), so they cost no socket; devices and the /mqtt proxy use
// the TCP listener and the URL.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultAddr is where the embedded broker listens when Config.Addr is
// empty.
const DefaultAddr = "127.0.0.1:11883"

// Config configures the embedded broker.
type Config struct {
	// Addr is the TCP listen address; default "127.0.0.1:11883". A port of
	// 0 ("127.0.0.1:0", ":0") picks a free port; see Broker.Addr.
	Addr string
	// Logger receives the broker's logs; default: discard.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv    *mochi.Server
	ln     *listener
	once   sync.Once
	subIDs atomic.Int64 // inline subscription ids (Inline)
	hook   *ingestHook  // the inline ingests (Inline.Ingest)
}

// Start binds the TCP listener (so that a bind error is a start-up error and
// the real port is known) and starts the broker on it.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nl, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", cfg.Addr, err)
	}

	caps := mochi.NewDefaultServerCapabilities()
	// mochi's default expires every message, retained ones included, after
	// one day; a retained value must live until it is replaced or deleted,
	// or until its own Message Expiry Interval ends.
	caps.MaximumMessageExpiryInterval = 0
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		Logger:       cfg.Logger,
		InlineClient: true, // Inline
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	hook := new(ingestHook)
	if err := srv.AddHook(hook, nil); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	ln := newListener("tcp", nl)
	if err := srv.AddListener(ln); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	cfg.Logger.Info("embedded broker: listening", "addr", nl.Addr().String())
	return &Broker{srv: srv, ln: ln, hook: hook}, nil
}

// Addr is the address the broker actually listens on.
func (b *Broker) Addr() net.Addr { return b.ln.ln.Addr() }

// URL is the broker's URL for clients on this host, such as
// "mqtt://127.0.0.1:11883" (the loopback address when listening on every
// interface).
func (b *Broker) URL() string {
	host, port := "127.0.0.1", 0
	if a, ok := b.Addr().(*net.TCPAddr); ok {
		port = a.Port
		if !a.IP.IsUnspecified() && a.IP != nil {
			host = a.IP.String()
		}
	}
	return "mqtt://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// Close disconnects every client, closes the listener and stops the broker's
// goroutines. It is safe to call more than once.
func (b *Broker) Close() error {
	b.once.Do(func() { _ = b.srv.Close() })
	return nil
}

// listener hands a socket bound by Start to mochi (it implements
// listeners.Listener). Unlike mochi's own TCP listener it closes
// connections that never completed CONNECT when it is closed, and waits for
// every goroutine it started.
type listener struct {
	id        string
	ln        net.Listener
	log       *slog.Logger
	serveDone chan struct{}

	mu      sync.Mutex
	closed  bool
	serving bool // Serve has started (and will close serveDone)
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // one per accepted connection
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener) *listener {
	return &listener{
		id:        id,
		ln:        ln,
		log:       slog.New(slog.DiscardHandler),
		serveDone: make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
}

// Init is called by mochi's AddListener; the socket is already bound.
func (l *listener) Init(log *slog.Logger) error {
	if log != nil {
		l.log = log
	}
	return nil
}

// ID is the listener's id.
func (l *listener) ID() string { return l.id }

// Address is the bound address.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol is "tcp".
func (l *listener) Protocol() string { return "tcp" }

// Serve accepts connections until Close and hands each to mochi.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed || l.serving {
		l.mu.Unlock()
		return
	}
	l.serving = true
	l.mu.Unlock()
	defer close(l.serveDone)
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.log.Error("embedded broker: accept failed; listener stopped", "error", err)
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			continue
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			err := establish(l.id, conn)
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
			if err != nil {
				l.log.Debug("embedded broker: client connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// Close lets mochi disconnect its clients, stops accepting, closes the
// connections that are left and waits for their goroutines.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	serving := l.serving
	l.mu.Unlock()

	closeClients(l.id)
	_ = l.ln.Close()
	if serving {
		<-l.serveDone
	}

	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
