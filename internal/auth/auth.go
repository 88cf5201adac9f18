package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
	"github.com/mqttbridge/mqttbridge/bridge/ratelimit"
)

// QueryParam is the query parameter that carries a credential where
// headers cannot be set (browser WebSocket and EventSource).
const QueryParam = "access_token"

// HeaderAPIKey carries an API key.
const HeaderAPIKey = "X-API-Key"

// Config configures an Authenticator. At least one way to authenticate
// must be configured.
type Config struct {
	// APIKeys are the accepted API keys.
	APIKeys []APIKey
	// JWT accepts JSON Web Tokens; nil accepts none.
	JWT *JWTConfig
	// ClientCert accepts verified TLS client certificates; nil accepts
	// none. The TLS listener verifies them; the name is the subject's
	// common name.
	ClientCert *ClientCertConfig
	// TicketTTL is how long a ticket from IssueTicket stays valid; default
	// 30s.
	TicketTTL time.Duration
	// TicketsPerIdentity bounds the tickets one identity holds at once
	// (issued, not redeemed, not expired), across every instance that
	// shares Tickets; default 100.
	TicketsPerIdentity int
	// TicketRate is how fast one identity may get tickets, at this
	// instance; default 10 per second, burst 20.
	TicketRate ratelimit.Rate
	// Tickets keeps the tickets: the memory store's (in this process) or
	// the Redis store's (any instance redeems a ticket that any issued).
	// Nil: no tickets are issued.
	Tickets bridge.Tickets
	// Logger; default discards. Credentials never reach it.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// APIKey is one accepted API key.
type APIKey struct {
	// Name is the identity's name (%u in rules): no +, #, / or U+0000.
	Name string
	// SHA256 is the hex SHA-256 of the key (64 hex digits).
	SHA256 string
	// Rules are the identity's topic permissions.
	Rules bridge.Rules
}

// ClientCertConfig configures client-certificate authentication.
type ClientCertConfig struct {
	// Rules are the topic permissions of every certificate holder; %u is
	// the certificate's common name.
	Rules bridge.Rules
}

// HashKey returns the hex SHA-256 of an API key, as APIKey.SHA256 wants it.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Authenticator authenticates requests. It is safe for concurrent use.
type Authenticator struct {
	cfg        Config
	keys       map[[32]byte]*APIKey
	jwt        *jwtVerifier
	ticketRate *ratelimit.Limiter
	log        *slog.Logger
}

// New checks cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = 30 * time.Second
	}
	if cfg.TicketsPerIdentity <= 0 {
		cfg.TicketsPerIdentity = 100
	}
	if cfg.TicketRate.PerSecond <= 0 {
		cfg.TicketRate = ratelimit.Rate{PerSecond: 10, Burst: 20}
	}
	if len(cfg.APIKeys) == 0 && cfg.JWT == nil && cfg.ClientCert == nil {
		return nil, errors.New("auth: no API keys, JWT or client certificates configured")
	}
	a := &Authenticator{cfg: cfg, keys: map[[32]byte]*APIKey{}, log: cfg.Logger}
	for i := range cfg.APIKeys {
		k := &cfg.APIKeys[i]
		if err := acl.CheckName(k.Name); err != nil {
			return nil, fmt.Errorf("auth: API key %d: name %q %w", i, k.Name, err)
		}
		raw, err := hex.DecodeString(k.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("auth: API key %q: sha256 must be 64 hex digits", k.Name)
		}
		if err := acl.ValidateRules(k.Rules); err != nil {
			return nil, fmt.Errorf("auth: API key %q: rules: %w", k.Name, err)
		}
		h := [32]byte(raw)
		if _, dup := a.keys[h]; dup {
			return nil, fmt.Errorf("auth: API key %q: the same key as another", k.Name)
		}
		a.keys[h] = k
	}
	if cfg.ClientCert != nil {
		if err := acl.ValidateRules(cfg.ClientCert.Rules); err != nil {
			return nil, fmt.Errorf("auth: client certificate rules: %w", err)
		}
	}
	if cfg.JWT != nil { // last: it may start the JWKS refresh, which Close stops
		v, err := newJWTVerifier(*cfg.JWT, cfg.Now, cfg.Logger)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	a.ticketRate = ratelimit.New(ratelimit.Config{Ticket: cfg.TicketRate})
	return a, nil
}

// Close stops the background refresh of the JWKS, if any. Authenticate
// goes on working with the keys it has. Safe to call more than once.
func (a *Authenticator) Close() {
	if a.jwt != nil {
		a.jwt.stop()
	}
}

// unauthorized is a 401 with a message safe to show.
func unauthorized(format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeUnauthorized, format, args...)
}

// Authenticate finds who is calling: from Authorization: Bearer, X-API-Key,
// the access_token query parameter when allowQuery (browser WebSocket and
// SSE only), or a verified TLS client certificate. The returned Identity
// has the caller's name, client id, rules and expiry; an error is an
// *bridge.Error with ECodeUnauthorized (no or bad credentials) or
// ECodeForbidden (good credentials for a name that cannot be used).
func (a *Authenticator) Authenticate(r *http.Request, allowQuery bool) (bridge.Identity, error) {
	id, err := a.authenticate(r, allowQuery)
	if err != nil {
		return bridge.Identity{}, err
	}
	if err := acl.CheckName(id.Name); err != nil {
		return bridge.Identity{}, bridge.Errorf(bridge.ECodeForbidden, "the identity name %q cannot be used: it %v", truncate(id.Name), err)
	}
	if id.ClientID != "" {
		if err := acl.CheckName(id.ClientID); err != nil {
			return bridge.Identity{}, bridge.Errorf(bridge.ECodeForbidden, "the client id %q cannot be used: it %v", truncate(id.ClientID), err)
		}
	}
	return id, nil
}

func (a *Authenticator) authenticate(r *http.Request, allowQuery bool) (bridge.Identity, error) {
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		if len(h) > 1 {
			return bridge.Identity{}, unauthorized("more than one Authorization header")
		}
		scheme, token, _ := strings.Cut(strings.TrimSpace(h[0]), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return bridge.Identity{}, unauthorized("the Authorization header must be \"Bearer <token>\"")
		}
		return a.token(r.Context(), strings.TrimSpace(token), allowQuery)
	}
	if h := r.Header.Values(HeaderAPIKey); len(h) > 0 {
		if len(h) > 1 {
			return bridge.Identity{}, unauthorized("more than one %s header", HeaderAPIKey)
		}
		return a.apiKey(strings.TrimSpace(h[0]))
	}
	if allowQuery {
		if q := r.URL.Query()[QueryParam]; len(q) > 0 {
			if len(q) > 1 {
				return bridge.Identity{}, unauthorized("more than one %s parameter", QueryParam)
			}
			return a.token(r.Context(), q[0], true)
		}
	}
	if a.cfg.ClientCert != nil && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		return bridge.Identity{Name: cert.Subject.CommonName, Kind: bridge.KindCert, Rules: &a.cfg.ClientCert.Rules, Expires: cert.NotAfter}, nil
	}
	how := "Authorization: Bearer <token> or X-API-Key"
	if allowQuery {
		how += ", or the access_token query parameter"
	}
	return bridge.Identity{}, unauthorized("credentials required: send %s", how)
}

// token authenticates a bearer token: a ticket, a JWT or an API key.
func (a *Authenticator) token(ctx context.Context, tok string, ticketsOK bool) (bridge.Identity, error) {
	switch {
	case tok == "":
		return bridge.Identity{}, unauthorized("empty token")
	case strings.HasPrefix(tok, TicketPrefix):
		if !ticketsOK {
			return bridge.Identity{}, unauthorized("tickets are accepted only by GET /v1/ws and GET /v1/stream")
		}
		return a.redeemTicket(ctx, tok)
	case a.jwt != nil && strings.Count(tok, ".") == 2:
		return a.jwt.verify(tok)
	case a.jwt != nil && len(a.keys) == 0:
		return bridge.Identity{}, unauthorized("invalid token: not a JWT (three base64url parts separated by dots)")
	}
	return a.apiKey(tok)
}

func (a *Authenticator) apiKey(key string) (bridge.Identity, error) {
	if key == "" {
		return bridge.Identity{}, unauthorized("empty API key")
	}
	if len(a.keys) == 0 {
		return bridge.Identity{}, unauthorized("this server accepts no API keys (auth.api_keys is empty): send a JWT as Authorization: Bearer <token>")
	}
	k, ok := a.keys[sha256.Sum256([]byte(key))]
	if !ok {
		return bridge.Identity{}, unauthorized("unknown API key")
	}
	return bridge.Identity{Name: k.Name, Kind: bridge.KindAPIKey, Rules: &k.Rules}, nil
}

// IssueTicket returns a one-time ticket that authenticates as id on
// GET /v1/ws and GET /v1/stream (as access_token) until it expires, within
// TicketTTL. The connection it opens still ends when id's own credentials
// expire. Over id's TicketRate or TicketsPerIdentity it is an *bridge.Error
// with ECodeRateLimited and RetryAfter; other identities are not affected.
func (a *Authenticator) IssueTicket(ctx context.Context, id bridge.Identity) (string, time.Time, error) {
	if id.IsAnonymous() {
		return "", time.Time{}, unauthorized("credentials required to get a ticket")
	}
	return a.issueTicket(ctx, id)
}

// TicketTTL is how long tickets stay valid.
func (a *Authenticator) TicketTTL() time.Duration { return a.cfg.TicketTTL }

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
