package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

// Dialer opens raw connections to a broker, for the MQTT-over-WebSocket
// proxy (wsproxy), which speaks MQTT over them itself: TCP for mqtt://, TLS
// for mqtts://, and a WebSocket (subprotocol mqtt) for ws:// and wss://.
type Dialer struct {
	// Username and Password are those of the Config, or else of the URL.
	Username, Password string

	url *url.URL
	tls *tls.Config
}

// NewDialer checks cfg's URL and TLS files (Name, URL, Username, Password
// and TLS are read; the rest is ignored).
func NewDialer(cfg Config) (*Dialer, error) {
	u, user, pass, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	d := &Dialer{Username: cfg.Username, Password: cfg.Password, url: u}
	if d.Username == "" && d.Password == "" {
		d.Username, d.Password = user, pass
	}
	if d.tls, err = cfg.TLS.build(u); err != nil {
		return nil, err
	}
	return d, nil
}

// Dial opens a new connection; ctx bounds the dial and the TLS or
// WebSocket handshake.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	switch d.url.Scheme {
	case "mqtt":
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", d.url.Host)
	case "mqtts":
		td := tls.Dialer{Config: d.tls}
		return td.DialContext(ctx, "tcp", d.url.Host)
	}
	wd := websocket.Dialer{TLSClientConfig: d.tls, Subprotocols: []string{"mqtt"}, HandshakeTimeout: 30 * time.Second}
	ws, resp, err := wd.DialContext(ctx, d.url.String(), nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: WebSocket to %s: %w", d.url.Redacted(), err)
	}
	return &wsConn{Conn: ws}, nil
}

// wsConn is a WebSocket as a net.Conn carrying a byte stream in binary
// messages. One goroutine may read while another writes.
type wsConn struct {
	*websocket.Conn
	r io.Reader
}

var _ net.Conn = (*wsConn)(nil)

var errNotBinary = errors.New("mqtt: the broker sent a WebSocket text message")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			kind, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline sets both deadlines; as with any WebSocket, one that passes
// ends the connection.
func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}
