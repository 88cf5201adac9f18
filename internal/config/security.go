package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/acl"
)

// ServerTLS makes the HTTP listener serve HTTPS. Relative paths in the YAML
// file are relative to the file's directory.
type ServerTLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key: both
	// or neither. They are read again on SIGHUP, without dropping
	// connections.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of CAs whose client certificates the
	// listener verifies (auth.client_cert turns them into identities).
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "optional" (verify a certificate when one is sent) or
	// "require" (refuse connections without one); used with ClientCAFile.
	// Default "optional".
	ClientAuth string `yaml:"client_auth"`
	// MinVersion is "1.2" or "1.3". Default "1.2".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether the listener serves TLS.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// CORS configures cross-origin requests to the HTTP API.
type CORS struct {
	// AllowedOrigins may call the API from a browser: exact origins like
	// "https://app.example.com", or "*" (not with AllowCredentials).
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowCredentials lets those pages send cookies and Authorization.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long browsers cache a preflight. Default 10m.
	MaxAge Duration `yaml:"max_age"`
}

// Rules are topic permissions: MQTT filters per action, with %u (the
// identity's name) and %c (its client id) as whole levels.
type Rules struct {
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
	Request   []string `yaml:"request"`
}

// Auth configures authentication. It is on when any API key, JWT algorithm
// or client-certificate authentication is configured; then nothing but
// /healthz and /readyz answers without credentials, and every identity may
// do only what its rules allow.
type Auth struct {
	APIKeys    []APIKey   `yaml:"api_keys"`
	JWT        JWT        `yaml:"jwt"`
	ClientCert ClientCert `yaml:"client_cert"`
	// TicketTTL is how long a ticket from POST /v1/tickets stays valid.
	// Default 30s, at most 10m.
	TicketTTL Duration `yaml:"ticket_ttl"`
	// TicketsPerIdentity bounds the tickets one identity holds at once
	// (issued, not yet used, not expired), across the fleet with Redis;
	// more is 429. Default 100.
	TicketsPerIdentity int `yaml:"tickets_per_identity"`
	// TicketRate and TicketBurst are the token bucket of each identity's
	// POST /v1/tickets, per second, at each instance; more is 429.
	// Defaults 10 and 20.
	TicketRate  float64 `yaml:"ticket_rate"`
	TicketBurst int     `yaml:"ticket_burst"`
	// PublicConsole serves the console page, its scripts and /openapi.yaml
	// without credentials (they hold no data; the console asks for an API
	// key or JWT and every API call it makes needs it). false: they need
	// credentials too, so a browser without a client certificate gets 401.
	// Default true.
	PublicConsole bool `yaml:"public_console"`
}

// Enabled reports whether authentication is on.
func (a Auth) Enabled() bool {
	return len(a.APIKeys) > 0 || len(a.JWT.Algorithms) > 0 || a.ClientCert.Enabled
}

// APIKey is one accepted API key, stored as its SHA-256.
type APIKey struct {
	// Name is the identity's name (%u): no +, #, / or U+0000.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the key (`mqttbridge key` makes both).
	SHA256 string `yaml:"sha256"`
	Rules  Rules  `yaml:"rules"`
}

// JWT configures JSON Web Token authentication.
type JWT struct {
	// Algorithms is the allow-list: HS256, HS384, HS512, RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA. "none" is
	// never accepted. Empty: JWTs are not accepted.
	Algorithms []string `yaml:"algorithms"`
	// HMACKeys are HS* secrets (at least 32 bytes each). Prefer
	// HMACKeyFiles or MQTTBRIDGE_JWT_HMAC_KEY; Load adds the files'
	// contents here. Never logged or printed.
	HMACKeys     []string `yaml:"hmac_keys"`
	HMACKeyFiles []string `yaml:"hmac_key_files"`
	// PublicKeyFiles are PEM public keys or certificates for RS*, PS*,
	// ES* and EdDSA.
	PublicKeyFiles []string `yaml:"public_key_files"`
	// JWKSURL is the identity provider's key set (https, or http on a
	// loopback address), cached for JWKSRefresh and fetched again when a
	// token names an unknown key id. Default refresh 15m.
	JWKSURL     string   `yaml:"jwks_url"`
	JWKSRefresh Duration `yaml:"jwks_refresh"`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway tolerates clock skew on exp, nbf and iat. Default 0s.
	Leeway Duration `yaml:"leeway"`
	// NameClaim holds the identity's name. Default "sub".
	NameClaim string `yaml:"name_claim"`
	// ClientIDClaim, when set, holds the client id (%c).
	ClientIDClaim string `yaml:"client_id_claim"`
	// RulesClaim, when set, may hold more rules as
	// {"publish": [...], "subscribe": [...], "request": [...]}.
	RulesClaim string `yaml:"rules_claim"`
	// Rules apply to every JWT identity.
	Rules Rules `yaml:"rules"`
}

// ClientCert configures TLS client-certificate authentication.
type ClientCert struct {
	// Enabled accepts certificates verified against http.tls.client_ca_file;
	// the identity's name is the subject's common name.
	Enabled bool  `yaml:"enabled"`
	Rules   Rules `yaml:"rules"`
}

// Limits bound what one caller may ask for.
type Limits struct {
	// TopicLength is the longest topic name or filter, in bytes, at most
	// 65535. Default 65535.
	TopicLength int `yaml:"topic_length"`
	// TopicLevels is the most levels of a topic or filter; 0 for no
	// limit. Default 64.
	TopicLevels int `yaml:"topic_levels"`
	// SubscriptionsPerConnection bounds the filters of one WebSocket
	// connection or SSE stream; 0 for no limit. Default 1000.
	SubscriptionsPerConnection int `yaml:"subscriptions_per_connection"`
	// ConnectionsPerIdentity bounds the WebSocket, SSE and long-poll
	// connections of one authenticated identity; 0 for no limit. Default
	// 100.
	ConnectionsPerIdentity int `yaml:"connections_per_identity"`
	// PublishRate and PublishBurst are the token bucket of each
	// authenticated identity's publishes (REST, batch items, WebSocket),
	// per second; rate 0 for no limit. Defaults 100 and 200.
	PublishRate  float64 `yaml:"publish_rate"`
	PublishBurst int     `yaml:"publish_burst"`
	// RequestRate and RequestBurst are the same for request/response.
	// Defaults 10 and 20.
	RequestRate  float64 `yaml:"request_rate"`
	RequestBurst int     `yaml:"request_burst"`
	// ReadRate and ReadBurst are the token bucket of each authenticated
	// identity's reads: GET of a topic, each page of a list, and each
	// WebSocket, SSE or long-poll connection; rate 0 for no limit.
	// Defaults 100 and 200.
	ReadRate  float64 `yaml:"read_rate"`
	ReadBurst int     `yaml:"read_burst"`
}

// jwtAlgorithms are the algorithms auth.jwt.algorithms may name.
var jwtAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// defaultSecurity fills the defaults of the sections in this file.
func defaultSecurity(c *Config) {
	c.HTTP.TLS = ServerTLS{ClientAuth: "optional", MinVersion: "1.2"}
	c.HTTP.CORS = CORS{MaxAge: Duration(10 * time.Minute)}
	c.Auth = Auth{TicketTTL: Duration(30 * time.Second), TicketsPerIdentity: 100, TicketRate: 10, TicketBurst: 20, PublicConsole: true, JWT: JWT{NameClaim: "sub", JWKSRefresh: Duration(15 * time.Minute)}}
	c.Limits = Limits{TopicLength: 65535, TopicLevels: 64, SubscriptionsPerConnection: 1000, ConnectionsPerIdentity: 100,
		PublishRate: 100, PublishBurst: 200, RequestRate: 10, RequestBurst: 20, ReadRate: 100, ReadBurst: 200}
}

// secretFile reads a secret from a file: its contents without one trailing
// newline.
func secretFile(p *problems, key, path string) (string, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		p.add(key, "cannot read %q: %v", path, err)
		return "", false
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if s == "" {
		p.add(key, "%q is empty", path)
		return "", false
	}
	return s, true
}

// resolveSecrets reads every *_file secret into its value. Setting both a
// secret and its file is an error.
func resolveSecrets(c *Config, origins map[string]string) error {
	p := &problems{origins: origins}
	pw := func(key string, secret *string, file string) {
		if file == "" {
			return
		}
		if *secret != "" {
			p.add(key+"_file", "set together with %s; set one of them", key)
			return
		}
		if s, ok := secretFile(p, key+"_file", file); ok {
			*secret = s
		}
	}
	pw("mqtt.password", &c.MQTT.Password, c.MQTT.PasswordFile)
	for i := range c.MQTT.Brokers {
		b := &c.MQTT.Brokers[i]
		pw(fmt.Sprintf("mqtt.brokers[%d].password", i), &b.Password, b.PasswordFile)
	}
	pw("redis.password", &c.Redis.Password, c.Redis.PasswordFile)
	pw("redis.sentinel.password", &c.Redis.Sentinel.Password, c.Redis.Sentinel.PasswordFile)
	for i, f := range c.Auth.JWT.HMACKeyFiles {
		if s, ok := secretFile(p, fmt.Sprintf("auth.jwt.hmac_key_files[%d]", i), f); ok {
			c.Auth.JWT.HMACKeys = append(c.Auth.JWT.HMACKeys, s)
		}
	}
	return p.err()
}

// resolveSecurityPaths makes relative file paths set in the YAML file
// relative to its directory.
func resolveSecurityPaths(c *Config, origins map[string]string, dir string) {
	fix := func(key string, p *string) {
		if *p == "" || filepath.IsAbs(*p) {
			return
		}
		if _, fromFile := origins[key]; fromFile {
			*p = filepath.Join(dir, *p)
		}
	}
	fix("http.tls.cert_file", &c.HTTP.TLS.CertFile)
	fix("http.tls.key_file", &c.HTTP.TLS.KeyFile)
	fix("http.tls.client_ca_file", &c.HTTP.TLS.ClientCAFile)
	fix("mqtt.password_file", &c.MQTT.PasswordFile)
	for i := range c.MQTT.Brokers {
		fix(fmt.Sprintf("mqtt.brokers[%d].password_file", i), &c.MQTT.Brokers[i].PasswordFile)
	}
	fix("redis.password_file", &c.Redis.PasswordFile)
	fix("redis.sentinel.password_file", &c.Redis.Sentinel.PasswordFile)
	for i := range c.Auth.JWT.HMACKeyFiles {
		fix(fmt.Sprintf("auth.jwt.hmac_key_files[%d]", i), &c.Auth.JWT.HMACKeyFiles[i])
	}
	for i := range c.Auth.JWT.PublicKeyFiles {
		fix(fmt.Sprintf("auth.jwt.public_key_files[%d]", i), &c.Auth.JWT.PublicKeyFiles[i])
	}
}

func (c Config) validateSecurity(p *problems) {
	t := c.HTTP.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		p.add("http.tls.key_file", "missing; http.tls.cert_file needs it (both or neither)")
	case t.CertFile == "" && t.KeyFile != "":
		p.add("http.tls.cert_file", "missing; http.tls.key_file needs it (both or neither)")
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			p.add("http.tls.cert_file", "with http.tls.key_file: %v", err)
		}
	}
	if t.ClientCAFile != "" {
		if !t.Enabled() {
			p.add("http.tls.client_ca_file", "needs http.tls.cert_file and key_file: client certificates come with TLS")
		}
		if pem, err := os.ReadFile(t.ClientCAFile); err != nil {
			p.add("http.tls.client_ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.add("http.tls.client_ca_file", "no PEM certificate in %q", t.ClientCAFile)
		}
	}
	switch t.ClientAuth {
	case "optional", "require":
	default:
		p.add("http.tls.client_auth", "%q is not one of optional, require", t.ClientAuth)
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		p.add("http.tls.min_version", "%q is not one of 1.2, 1.3", t.MinVersion)
	}

	cors := c.HTTP.CORS
	for i, o := range cors.AllowedOrigins {
		key := fmt.Sprintf("http.cors.allowed_origins[%d]", i)
		if o == "*" {
			if cors.AllowCredentials {
				p.add(key, `"*" cannot be used with http.cors.allow_credentials: list the origins`)
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			p.add(key, "%q must be an origin like https://app.example.com, or *", o)
		}
	}
	checkPositive(p, "http.cors.max_age", cors.MaxAge)

	c.validateAuth(p)

	l := c.Limits
	if l.TopicLength < 1 || l.TopicLength > 65535 {
		p.add("limits.topic_length", "must be between 1 and 65535, got %d", l.TopicLength)
	}
	for key, v := range map[string]int{
		"limits.topic_levels": l.TopicLevels, "limits.subscriptions_per_connection": l.SubscriptionsPerConnection,
		"limits.connections_per_identity": l.ConnectionsPerIdentity,
	} {
		if v < 0 {
			p.add(key, "must be 0 (no limit) or more, got %d", v)
		}
	}
	for _, r := range []struct {
		key   string
		rate  float64
		burst int
	}{{"limits.publish", l.PublishRate, l.PublishBurst}, {"limits.request", l.RequestRate, l.RequestBurst},
		{"limits.read", l.ReadRate, l.ReadBurst}} {
		if r.rate < 0 {
			p.add(r.key+"_rate", "must be 0 (no limit) or more, got %g", r.rate)
		}
		if r.rate > 0 && r.burst < 1 {
			p.add(r.key+"_burst", "must be at least 1 with %s_rate set, got %d", r.key, r.burst)
		}
	}
}

func (c Config) validateAuth(p *problems) {
	a := c.Auth
	hashes := map[string]int{}
	for i, k := range a.APIKeys {
		key := fmt.Sprintf("auth.api_keys[%d]", i)
		if err := acl.CheckName(k.Name); err != nil {
			p.add(key+".name", "%q %v", k.Name, err)
		}
		h := strings.ToLower(k.SHA256)
		if raw, err := hex.DecodeString(h); err != nil || len(raw) != 32 {
			p.add(key+".sha256", "must be the 64 hex digits of the key's SHA-256 (mqttbridge key prints one)")
		} else if j, dup := hashes[h]; dup {
			p.add(key+".sha256", "the same key as auth.api_keys[%d]", j)
		} else {
			hashes[h] = i
		}
		checkRules(p, key+".rules", k.Rules)
	}

	j := a.JWT
	var hmac, public bool
	for i, alg := range j.Algorithms {
		key := fmt.Sprintf("auth.jwt.algorithms[%d]", i)
		switch {
		case strings.EqualFold(alg, "none"):
			p.add(key, `"none" (unsigned tokens) is never accepted`)
		case !slices.Contains(jwtAlgorithms, alg):
			p.add(key, "%q is not one of %s", alg, strings.Join(jwtAlgorithms, ", "))
		case strings.HasPrefix(alg, "HS"):
			hmac = true
		default:
			public = true
		}
	}
	for i, k := range j.HMACKeys {
		if len(k) < 32 {
			p.add(fmt.Sprintf("auth.jwt.hmac_keys[%d]", i), "is %d bytes; an HMAC key needs at least 32", len(k))
		}
	}
	if hmac && len(j.HMACKeys) == 0 {
		p.add("auth.jwt.hmac_key_files", "needed for the HS algorithms in auth.jwt.algorithms (or MQTTBRIDGE_JWT_HMAC_KEY)")
	}
	if !hmac && len(j.HMACKeys) > 0 {
		p.add("auth.jwt.hmac_keys", "set, but auth.jwt.algorithms allows no HS algorithm")
	}
	if public && len(j.PublicKeyFiles) == 0 && j.JWKSURL == "" {
		p.add("auth.jwt.jwks_url", "or auth.jwt.public_key_files needed for the public-key algorithms in auth.jwt.algorithms")
	}
	for i, f := range j.PublicKeyFiles {
		if _, err := os.Stat(f); err != nil {
			p.add(fmt.Sprintf("auth.jwt.public_key_files[%d]", i), "%v", err)
		}
	}
	if j.JWKSURL != "" {
		u, err := url.Parse(j.JWKSURL)
		switch {
		case err != nil || u.Host == "":
			p.add("auth.jwt.jwks_url", "%q is not a URL", j.JWKSURL)
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
		default:
			p.add("auth.jwt.jwks_url", "must be https:// (http:// only on a loopback address), got %q", j.JWKSURL)
		}
	}
	checkPositive(p, "auth.jwt.jwks_refresh", j.JWKSRefresh)
	if j.Leeway < 0 {
		p.add("auth.jwt.leeway", "must not be negative, got %s", j.Leeway)
	}
	if j.NameClaim == "" {
		p.add("auth.jwt.name_claim", "must not be empty")
	}
	checkRules(p, "auth.jwt.rules", j.Rules)

	if a.ClientCert.Enabled && c.HTTP.TLS.ClientCAFile == "" {
		p.add("auth.client_cert.enabled", "needs http.tls.client_ca_file to verify the certificates")
	}
	checkRules(p, "auth.client_cert.rules", a.ClientCert.Rules)
	if checkPositive(p, "auth.ticket_ttl", a.TicketTTL) && a.TicketTTL > Duration(10*time.Minute) {
		p.add("auth.ticket_ttl", "must be at most 10m, got %s", a.TicketTTL)
	}
	if a.TicketsPerIdentity < 1 {
		p.add("auth.tickets_per_identity", "must be at least 1, got %d", a.TicketsPerIdentity)
	}
	if a.TicketRate <= 0 {
		p.add("auth.ticket_rate", "must be more than 0 tickets per second, got %g", a.TicketRate)
	}
	if a.TicketBurst < 1 {
		p.add("auth.ticket_burst", "must be at least 1, got %d", a.TicketBurst)
	}
}

func checkRules(p *problems, key string, r Rules) {
	for action, patterns := range map[string][]string{"publish": r.Publish, "subscribe": r.Subscribe, "request": r.Request} {
		for i, pat := range patterns {
			if err := acl.ValidatePattern(pat); err != nil {
				p.add(fmt.Sprintf("%s.%s[%d]", key, action, i), "%q: %v", pat, err)
			}
		}
	}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// redacted hides the HMAC keys.
func (a Auth) redacted() Auth {
	a.APIKeys = slices.Clone(a.APIKeys)
	keys := make([]string, len(a.JWT.HMACKeys))
	for i := range keys {
		keys[i] = redactedMark
	}
	if a.JWT.HMACKeys == nil {
		keys = nil
	}
	a.JWT.HMACKeys = keys
	return a
}

// String renders a as YAML with the HMAC keys redacted.
func (a Auth) String() string { return yamlString(a.redacted()) }

// GoString is String.
func (a Auth) GoString() string { return a.String() }

// String renders j as YAML with the HMAC keys redacted.
func (j JWT) String() string { return yamlString(Auth{JWT: j}.redacted().JWT) }

// GoString is String.
func (j JWT) GoString() string { return j.String() }

func (c Config) validateRedisPassword(p *problems) {
	r := c.Redis
	if r.Password == "" {
		return
	}
	if !r.Enabled() {
		p.add("redis.password", "only used with redis.url, redis.sentinel or redis.cluster, none of which is set")
		return
	}
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			p.add("redis.password", "set, but redis.url has a password too; keep one")
		}
	}
}

// RedisURL is redis.url with redis.password (when set) in its user info.
func (c Config) RedisURL() string {
	r := c.Redis
	if r.Password == "" || r.URL == "" {
		return r.URL
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return r.URL
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, r.Password)
	return u.String()
}
