package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
	"github.com/mqttbridge/mqttbridge/bridge/ratelimit"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/httpapi"
	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/web"
	"github.com/mqttbridge/mqttbridge/wsproxy"
)

// security is what the configuration's auth, limits and http.tls sections
// make: every part is nil or a no-op when its section is off.
type security struct {
	authn      *auth.Authenticator // nil: authentication off
	authorizer bridge.Authorizer
	limiter    bridge.Limiter
	limits     bridge.Limits
	certs      *certReloader // nil: plain HTTP
	tls        *tls.Config
}

func rules(r config.Rules) bridge.Rules {
	return bridge.Rules{Publish: r.Publish, Subscribe: r.Subscribe, Request: r.Request}
}

func (m *Main) buildSecurity() (_ *security, err error) {
	cfg := m.Config
	s := &security{
		authorizer: bridge.AllowAll{},
		limiter: ratelimit.New(ratelimit.Config{
			Publish: ratelimit.Rate{PerSecond: cfg.Limits.PublishRate, Burst: cfg.Limits.PublishBurst},
			Request: ratelimit.Rate{PerSecond: cfg.Limits.RequestRate, Burst: cfg.Limits.RequestBurst},
			Read:    ratelimit.Rate{PerSecond: cfg.Limits.ReadRate, Burst: cfg.Limits.ReadBurst},
		}),
		limits: bridge.Limits{
			MaxTopicLength:         cfg.Limits.TopicLength,
			MaxTopicLevels:         cfg.Limits.TopicLevels,
			SubscriptionsPerFeed:   cfg.Limits.SubscriptionsPerConnection,
			ConnectionsPerIdentity: cfg.Limits.ConnectionsPerIdentity,
		},
	}
	if a := cfg.Auth; a.Enabled() {
		ac := auth.Config{
			TicketTTL: time.Duration(a.TicketTTL), TicketsPerIdentity: a.TicketsPerIdentity,
			TicketRate: ratelimit.Rate{PerSecond: a.TicketRate, Burst: a.TicketBurst},
			Tickets:    memory.NewTickets(),
			Logger:     m.Logger.With("component", "auth"),
		}
		if st, ok := m.store.(*redisstore.Store); ok {
			ac.Tickets = st.Tickets() // any instance of the fleet redeems a ticket, once
		}
		for _, k := range a.APIKeys {
			ac.APIKeys = append(ac.APIKeys, auth.APIKey{Name: k.Name, SHA256: k.SHA256, Rules: rules(k.Rules)})
		}
		if j := a.JWT; len(j.Algorithms) > 0 {
			jc := &auth.JWTConfig{
				Algorithms: j.Algorithms, PublicKeyFiles: j.PublicKeyFiles,
				JWKSURL: j.JWKSURL, JWKSRefresh: time.Duration(j.JWKSRefresh),
				Issuer: j.Issuer, Audience: j.Audience, Leeway: time.Duration(j.Leeway),
				NameClaim: j.NameClaim, ClientIDClaim: j.ClientIDClaim, RulesClaim: j.RulesClaim,
				Rules: rules(j.Rules),
			}
			for _, k := range j.HMACKeys {
				jc.HMACKeys = append(jc.HMACKeys, []byte(k))
			}
			ac.JWT = jc
		}
		if a.ClientCert.Enabled {
			ac.ClientCert = &auth.ClientCertConfig{Rules: rules(a.ClientCert.Rules)}
		}
		authn, err := auth.New(ac)
		if err != nil {
			return nil, err
		}
		s.authn, s.authorizer = authn, acl.ACL{}
		defer func() {
			if err != nil {
				authn.Close()
			}
		}()
	}
	if t := cfg.HTTP.TLS; t.Enabled() {
		certs, err := newCertReloader(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
		s.certs = certs
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
		if t.MinVersion == "1.3" {
			s.tls.MinVersion = tls.VersionTLS13
		}
		if t.ClientCAFile != "" {
			pem, err := os.ReadFile(t.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("http.tls.client_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("http.tls.client_ca_file: no PEM certificate")
			}
			s.tls.ClientCAs = pool
			s.tls.ClientAuth = tls.VerifyClientCertIfGiven
			if t.ClientAuth == "require" {
				s.tls.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
	}
	return s, nil
}

// forHTTP and forWS hand the authenticator over as an interface that is
// nil when authentication is off (never a non-nil interface holding nil).
func (s *security) forHTTP() httpapi.Authenticator {
	if s.authn == nil {
		return nil
	}
	return s.authn
}

func (s *security) forWS() wsproxy.Authenticator {
	if s.authn == nil {
		return nil
	}
	return s.authn
}

// webConsole serves the console; with API keys or JWTs configured it
// opens on a sign-in page (a browser's client certificate needs none).
func (m *Main) webConsole() http.Handler {
	a := m.Config.Auth
	return web.Handler(web.Options{SignIn: len(a.APIKeys) > 0 || len(a.JWT.Algorithms) > 0})
}

// publicPaths are served without credentials: the console page, its
// scripts and the spec, when auth.public_console is set (the default).
func (m *Main) publicPaths() []string {
	if !m.Config.Auth.PublicConsole {
		return nil
	}
	return append(web.Paths(), "/openapi.yaml")
}

// ReloadTLS reads the HTTP listener's certificate and key again (on
// SIGHUP): new connections get the new certificate, open ones keep theirs.
// On error the old certificate stays.
func (m *Main) ReloadTLS() error {
	if m.sec == nil || m.sec.certs == nil {
		return errors.New("http.tls is not configured")
	}
	return m.sec.certs.Reload()
}

// certReloader serves the current certificate to every TLS handshake.
type certReloader struct {
	certFile, keyFile string
	mu                sync.RWMutex
	cert              *tls.Certificate
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	return r, r.Reload()
}

// Reload reads the files; on error the previous certificate stays.
func (r *certReloader) Reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cert = &c
	r.mu.Unlock()
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// authSummary says which ways to authenticate are on, for the banner.
func authSummary(a config.Auth) string {
	var parts []string
	if n := len(a.APIKeys); n > 0 {
		parts = append(parts, map[bool]string{true: "1 API key", false: fmt.Sprintf("%d API keys", n)}[n == 1])
	}
	if len(a.JWT.Algorithms) > 0 {
		parts = append(parts, "JWT "+strings.Join(a.JWT.Algorithms, ","))
	}
	if a.ClientCert.Enabled {
		parts = append(parts, "client certificates")
	}
	return strings.Join(parts, ", ")
}
