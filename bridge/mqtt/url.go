package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// parseURL checks the broker URL, maps the scheme aliases to mqtt, mqtts, ws
// and wss, adds the default port for mqtt and mqtts, and takes out the user
// information (returned separately so that it is never logged).
func parseURL(raw string) (u *url.URL, user, pass string, err error) {
	u, err = url.Parse(raw)
	if err != nil {
		// url.Error repeats the input, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", "", fmt.Errorf("mqtt: invalid broker URL: %w", err)
	}
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
		u.User = nil
	}
	var defaultPort string
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		u.Scheme, defaultPort = "mqtt", "1883"
	case "mqtts", "ssl", "tls":
		u.Scheme, defaultPort = "mqtts", "8883"
	case "ws":
		u.Scheme = "ws"
	case "wss":
		u.Scheme = "wss"
	default:
		return nil, "", "", fmt.Errorf("mqtt: broker URL %q: scheme must be mqtt, mqtts, ws or wss (tcp, ssl, tls are aliases)", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, "", "", fmt.Errorf("mqtt: broker URL %q has no host", u.String())
	}
	if defaultPort != "" {
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), defaultPort)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, "", "", fmt.Errorf("mqtt: broker URL %q: a path or query only makes sense for ws:// and wss://", u.String())
		}
	}
	return u, user, pass, nil
}

// build returns the TLS configuration for mqtts and wss URLs, nil for the
// others. It reads (and so checks) every configured file.
func (t TLSConfig) build(u *url.URL) (*tls.Config, error) {
	if u.Scheme != "mqtts" && u.Scheme != "wss" {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit opt-in, for tests
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error names the files, never their content.
			return nil, fmt.Errorf("mqtt: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("mqtt: TLS CertFile and KeyFile must be set together")
	}
	return cfg, nil
}
