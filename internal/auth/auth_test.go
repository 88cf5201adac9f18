package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/ratelimit"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
)

var (
	hmacKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	t0       = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
)

const apiKey = "mbk_test-key-1"

func sign(tb testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	tb.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": t0.Add(time.Hour).Unix(), "iat": t0.Unix(), "iss": "https://idp.example", "aud": "mqttbridge"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// noneToken is an unsigned token (alg "none"), which must never pass.
func noneToken(c jwt.MapClaims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func newAuth(tb testing.TB, mod func(*Config)) *Authenticator {
	tb.Helper()
	cfg := Config{
		APIKeys: []APIKey{{Name: "svc", SHA256: HashKey(apiKey), Rules: bridge.Rules{Publish: []string{"cmd/#"}}}},
		JWT: &JWTConfig{
			Algorithms: []string{"HS256"}, HMACKeys: [][]byte{hmacKey},
			Issuer: "https://idp.example", Audience: "mqttbridge",
			ClientIDClaim: "cid", RulesClaim: "mqtt",
			Rules: bridge.Rules{Subscribe: []string{"users/%u/#"}},
		},
		Tickets: memory.NewTickets(),
		Now:     func() time.Time { return t0 },
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	return a
}

func req(header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/ws", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	a := newAuth(t, nil)
	good := sign(t, jwt.SigningMethodHS256, hmacKey, claims(nil), nil)
	for _, c := range []struct {
		name  string
		r     *http.Request
		query bool
		who   string // "" when refused
		code  string
	}{
		{"no credentials", req(), false, "", bridge.ECodeUnauthorized},
		{"API key, Bearer", req("Authorization", "Bearer "+apiKey), false, "svc", ""},
		{"API key, bearer lower case", req("Authorization", "bearer "+apiKey), false, "svc", ""},
		{"API key, X-API-Key", req("X-API-Key", apiKey), false, "svc", ""},
		{"unknown API key", req("X-API-Key", apiKey+"x"), false, "", bridge.ECodeUnauthorized},
		{"empty API key", req("X-API-Key", ""), false, "", bridge.ECodeUnauthorized},
		{"two API keys", req("X-API-Key", apiKey, "X-API-Key", apiKey), false, "", bridge.ECodeUnauthorized},
		{"Basic", req("Authorization", "Basic c3ZjOng="), false, "", bridge.ECodeUnauthorized},
		{"Bearer without token", req("Authorization", "Bearer"), false, "", bridge.ECodeUnauthorized},
		{"JWT", req("Authorization", "Bearer "+good), false, "alice", ""},
		{"JWT in X-API-Key", req("X-API-Key", good), false, "", bridge.ECodeUnauthorized},
		{"malformed JWT", req("Authorization", "Bearer a.b.c"), false, "", bridge.ECodeUnauthorized},
		{"wrong signature", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, otherKey, claims(nil), nil)), false, "", bridge.ECodeUnauthorized},
		{"alg none", req("Authorization", "Bearer "+noneToken(claims(nil))), false, "", bridge.ECodeUnauthorized},
		{"alg not allowed", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS384, hmacKey, claims(nil), nil)), false, "", bridge.ECodeUnauthorized},
		{"expired", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"exp": t0.Add(-time.Second).Unix()}), nil)), false, "", bridge.ECodeUnauthorized},
		{"no exp", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"exp": nil}), nil)), false, "", bridge.ECodeUnauthorized},
		{"wrong audience", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"aud": "other"}), nil)), false, "", bridge.ECodeUnauthorized},
		{"no audience", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"aud": nil}), nil)), false, "", bridge.ECodeUnauthorized},
		{"wrong issuer", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"iss": "https://evil.example"}), nil)), false, "", bridge.ECodeUnauthorized},
		{"not yet valid", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"nbf": t0.Add(time.Minute).Unix()}), nil)), false, "", bridge.ECodeUnauthorized},
		{"no sub", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"sub": nil}), nil)), false, "", bridge.ECodeUnauthorized},
		{"sub with a wildcard", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"sub": "a/#"}), nil)), false, "", bridge.ECodeForbidden},
		{"sub with U+0000", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"sub": "a\x00"}), nil)), false, "", bridge.ECodeForbidden},
		{"client id with a +", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"cid": "c+"}), nil)), false, "", bridge.ECodeForbidden},
		{"bad rules claim", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"mqtt": map[string]any{"publish": []string{"a/#/b"}}}), nil)), false, "", bridge.ECodeUnauthorized},
		{"unknown rules field", req("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"mqtt": map[string]any{"admin": true}}), nil)), false, "", bridge.ECodeUnauthorized},
		{"query on a header-only endpoint", httptest.NewRequest(http.MethodGet, "/v1/topics/a?access_token="+apiKey, nil), false, "", bridge.ECodeUnauthorized},
		{"query", httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+apiKey, nil), true, "svc", ""},
		{"query JWT", httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+good, nil), true, "alice", ""},
		{"query twice", httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+apiKey+"&access_token="+apiKey, nil), true, "", bridge.ECodeUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := a.Authenticate(c.r, c.query)
			if c.who == "" {
				if err == nil || bridge.ErrorCode(err) != c.code {
					t.Fatalf("authenticated as %+v (%v), want %s", id, err, c.code)
				}
				if !id.IsAnonymous() {
					t.Errorf("an identity %q with the error", id.Name)
				}
				if strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), "eyJ") {
					t.Errorf("the error shows the credential: %v", err)
				}
				return
			}
			if err != nil || id.Name != c.who {
				t.Fatalf("got %q, %v; want %q", id.Name, err, c.who)
			}
		})
	}
}

func TestJWTIdentity(t *testing.T) {
	a := newAuth(t, nil)
	tok := sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{
		"cid": "web-1", "mqtt": map[string]any{"publish": []string{"users/%u/out"}, "request": []string{"rpc/%c/+"}},
	}), nil)
	id, err := a.Authenticate(req("Authorization", "Bearer "+tok), false)
	if err != nil {
		t.Fatal(err)
	}
	want := bridge.Rules{Publish: []string{"users/%u/out"}, Subscribe: []string{"users/%u/#"}, Request: []string{"rpc/%c/+"}}
	if id.Name != "alice" || id.ClientID != "web-1" || !id.Expires.Equal(t0.Add(time.Hour)) ||
		strings.Join(id.Rules.Publish, ",") != strings.Join(want.Publish, ",") ||
		strings.Join(id.Rules.Subscribe, ",") != strings.Join(want.Subscribe, ",") ||
		strings.Join(id.Rules.Request, ",") != strings.Join(want.Request, ",") {
		t.Errorf("identity %+v rules %+v", id, *id.Rules)
	}
	// The configured rules are not changed by a token's claim.
	if n := len(a.jwt.cfg.Rules.Publish); n != 0 {
		t.Errorf("the configured rules grew to %d publish rules", n)
	}
	// API keys never expire.
	id, err = a.Authenticate(req("X-API-Key", apiKey), false)
	if err != nil || !id.Expires.IsZero() || id.Rules.Publish[0] != "cmd/#" {
		t.Errorf("API key identity %+v, %v", id, err)
	}
}

func writeKeyFile(tb testing.TB, pub crypto.PublicKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(tb.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestPublicKeyFiles(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a := newAuth(t, func(c *Config) {
		c.JWT = &JWTConfig{Algorithms: []string{"RS256", "PS256", "ES256", "HS256"}, HMACKeys: [][]byte{hmacKey},
			PublicKeyFiles: []string{writeKeyFile(t, &rsaKey.PublicKey), writeKeyFile(t, &ecKey.PublicKey)}}
	})
	c := claims(jwt.MapClaims{"aud": nil, "iss": nil})
	for _, tc := range []struct {
		name string
		tok  string
		ok   bool
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, c, nil), true},
		{"PS256", sign(t, jwt.SigningMethodPS256, rsaKey, c, nil), true},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey, c, nil), true},
		// The RSA public key used as an HMAC secret (algorithm confusion).
		{"HS256 with the public key", sign(t, jwt.SigningMethodHS256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))}), c, nil), false},
		{"RS512 not allowed", sign(t, jwt.SigningMethodRS512, rsaKey, c, nil), false},
	} {
		_, err := a.Authenticate(req("Authorization", "Bearer "+tc.tok), false)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func jwkOf(kid string, k *ecdsa.PrivateKey) map[string]string {
	b := k.PublicKey.X.FillBytes(make([]byte, 32))
	c := k.PublicKey.Y.FillBytes(make([]byte, 32))
	return map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(b), "y": base64.RawURLEncoding.EncodeToString(c)}
}

func TestTickets(t *testing.T) {
	now := t0
	a := newAuth(t, func(c *Config) { c.Now = func() time.Time { return now }; c.TicketTTL = 30 * time.Second })
	alice := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"#"}}, Expires: t0.Add(time.Hour)}
	ctx := t.Context()
	tk, exp, err := a.IssueTicket(ctx, alice)
	if err != nil || !exp.Equal(t0.Add(30*time.Second)) || !strings.HasPrefix(tk, TicketPrefix) {
		t.Fatalf("IssueTicket: %q %v %v", tk, exp, err)
	}
	// Not on endpoints that take only headers.
	if _, err := a.Authenticate(req("Authorization", "Bearer "+tk), false); err == nil {
		t.Fatal("a ticket worked outside /v1/ws and /v1/stream")
	}
	id, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+tk, nil), true)
	if err != nil || id.Key() != alice.Key() || !id.Expires.Equal(alice.Expires) {
		t.Fatalf("redeem: %+v %v", id, err)
	}
	if _, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+tk, nil), true); bridge.ErrorCode(err) != bridge.ECodeUnauthorized {
		t.Fatalf("a ticket worked twice: %v", err)
	}
	// A ticket never outlives the credentials it was issued for.
	short := alice
	short.Expires = now.Add(5 * time.Second)
	if _, exp, _ := a.IssueTicket(ctx, short); !exp.Equal(short.Expires) {
		t.Errorf("ticket expiry %v, want the credentials' %v", exp, short.Expires)
	}
	if _, _, err := a.IssueTicket(ctx, bridge.Identity{}); bridge.ErrorCode(err) != bridge.ECodeUnauthorized {
		t.Errorf("a ticket for the anonymous caller: %v", err)
	}
}

// One identity at its bound or over its rate is refused with a 429 and
// Retry-After; another identity, a namesake of another kind included, is not.
func TestTicketLimits(t *testing.T) {
	ctx := t.Context()
	alice, bob := bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}, bridge.Identity{Name: "bob", Kind: bridge.KindAPIKey}
	jwtAlice := bridge.Identity{Name: "alice", Kind: bridge.KindJWT}
	tooMany := func(a *Authenticator, what, want string) {
		t.Helper()
		_, _, err := a.IssueTicket(ctx, alice)
		var e *bridge.Error
		if !errors.As(err, &e) || e.Code != bridge.ECodeRateLimited || e.RetryAfter <= 0 || !strings.Contains(e.Message, want) {
			t.Fatalf("%s: %v, want rate_limited with RetryAfter saying %q", what, err, want)
		}
		for _, other := range []bridge.Identity{bob, jwtAlice} {
			if _, _, err := a.IssueTicket(ctx, other); err != nil {
				t.Fatalf("%s: %s was refused too: %v", what, other.Key(), err)
			}
		}
	}
	bound := newAuth(t, func(c *Config) { c.TicketsPerIdentity = 2; c.TicketRate = ratelimit.Rate{PerSecond: 1000, Burst: 1000} })
	for range 2 {
		if _, _, err := bound.IssueTicket(ctx, alice); err != nil {
			t.Fatal(err)
		}
	}
	tooMany(bound, "over TicketsPerIdentity", "unused tickets")
	rate := newAuth(t, func(c *Config) { c.TicketRate = ratelimit.Rate{PerSecond: 0.01, Burst: 2} })
	for range 2 {
		if _, _, err := rate.IssueTicket(ctx, alice); err != nil {
			t.Fatal(err)
		}
	}
	tooMany(rate, "over TicketRate", "tickets per second")
}

// downTickets is a ticket store that cannot be reached.
type downTickets struct{}

var errDown = &bridge.Error{Code: bridge.ECodeStoreUnavailable, Message: "Redis did not answer"}

func (downTickets) Issue(context.Context, [32]byte, bridge.Identity, time.Duration, int) error {
	return errDown
}
func (downTickets) Take(context.Context, [32]byte) (bridge.Identity, error) {
	return bridge.Identity{}, errDown
}

// While the store is down a ticket is neither issued nor refused as bad:
// both are store_unavailable (503), never a panic or a 401.
func TestTicketsStoreDown(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.Tickets = downTickets{} })
	if _, _, err := a.IssueTicket(t.Context(), bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}); bridge.ErrorCode(err) != bridge.ECodeStoreUnavailable {
		t.Errorf("IssueTicket: %v", err)
	}
	_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/v1/ws?access_token="+TicketPrefix+"x", nil), true)
	if bridge.ErrorCode(err) != bridge.ECodeStoreUnavailable {
		t.Errorf("redeem: %v", err)
	}
	// Without a ticket store no ticket is issued.
	none := newAuth(t, func(c *Config) { c.Tickets = nil })
	if _, _, err := none.IssueTicket(t.Context(), bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}); bridge.ErrorCode(err) != bridge.ECodeNotFound {
		t.Errorf("IssueTicket without a store: %v", err)
	}
}

func TestClientCertificate(t *testing.T) {
	a := newAuth(t, func(c *Config) {
		c.ClientCert = &ClientCertConfig{Rules: bridge.Rules{Publish: []string{"devices/%u/#"}}}
	})
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "device-7"}, NotAfter: t0.Add(time.Hour), SerialNumber: big.NewInt(1)}
	r := req()
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	id, err := a.Authenticate(r, false)
	if err != nil || id.Name != "device-7" || !id.Expires.Equal(cert.NotAfter) {
		t.Fatalf("%+v %v", id, err)
	}
	// An unverified certificate is no credential.
	r.TLS.VerifiedChains = nil
	if _, err := a.Authenticate(r, false); bridge.ErrorCode(err) != bridge.ECodeUnauthorized {
		t.Fatalf("unverified: %v", err)
	}
	// Without client-certificate authentication configured, neither.
	r.TLS.VerifiedChains = [][]*x509.Certificate{{cert}}
	if _, err := newAuth(t, nil).Authenticate(r, false); bridge.ErrorCode(err) != bridge.ECodeUnauthorized {
		t.Fatalf("not configured: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]Config{
		"nothing":          {},
		"bad hash":         {APIKeys: []APIKey{{Name: "a", SHA256: "abc"}}},
		"bad name":         {APIKeys: []APIKey{{Name: "a/b", SHA256: HashKey("k")}}},
		"same key twice":   {APIKeys: []APIKey{{Name: "a", SHA256: HashKey("k")}, {Name: "b", SHA256: HashKey("k")}}},
		"bad rule":         {APIKeys: []APIKey{{Name: "a", SHA256: HashKey("k"), Rules: bridge.Rules{Publish: []string{"a/#/b"}}}}},
		"alg none":         {JWT: &JWTConfig{Algorithms: []string{"none"}}},
		"no algorithms":    {JWT: &JWTConfig{HMACKeys: [][]byte{hmacKey}}},
		"HS without key":   {JWT: &JWTConfig{Algorithms: []string{"HS256"}}},
		"short HMAC key":   {JWT: &JWTConfig{Algorithms: []string{"HS256"}, HMACKeys: [][]byte{[]byte("short")}}},
		"RS without a key": {JWT: &JWTConfig{Algorithms: []string{"RS256"}}},
		"missing key file": {JWT: &JWTConfig{Algorithms: []string{"RS256"}, PublicKeyFiles: []string{"/nonexistent.pem"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// Whatever a client sends as a token, Authenticate does not panic and
// admits it only when it is the API key or a JWT signed with the key.
func FuzzToken(f *testing.F) {
	a := newAuth(f, nil)
	good := sign(f, jwt.SigningMethodHS256, hmacKey, claims(nil), nil)
	for _, s := range []string{apiKey, good, good[:len(good)-2], noneToken(claims(nil)), "a.b.c", "mbt_x", "..", "Bearer x", strings.Replace(good, ".", "..", 1)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, tok string, query bool) {
		r := req("Authorization", "Bearer "+tok)
		id, err := a.Authenticate(r, query)
		if err != nil {
			if c := bridge.ErrorCode(err); c != bridge.ECodeUnauthorized && c != bridge.ECodeForbidden {
				t.Fatalf("error code %q", c)
			}
			return
		}
		tok = strings.TrimSpace(tok)
		if tok == apiKey {
			return
		}
		if _, perr := jwt.Parse(tok, func(*jwt.Token) (any, error) { return hmacKey, nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return t0 })); perr != nil {
			t.Fatalf("%q authenticated as %q, but it is neither the key nor a signed token: %v", tok, id.Name, perr)
		}
	})
}

// Each way to authenticate gives its kind; a JWT's issuer is part of the
// identity only when tokens of any issuer are accepted.
func TestIdentityKinds(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, hmacKey, claims(nil), nil)
	a := newAuth(t, nil)
	if id, err := a.Authenticate(req("Authorization", "Bearer "+tok), false); err != nil || id.Key() != "jwt:alice" {
		t.Errorf("JWT with a configured issuer: %q, %v", id.Key(), err)
	}
	if id, err := a.Authenticate(req("X-API-Key", apiKey), false); err != nil || id.Key() != "key:svc" {
		t.Errorf("API key: %q, %v", id.Key(), err)
	}
	anyIssuer := newAuth(t, func(c *Config) { c.JWT.Issuer = "" })
	if id, err := anyIssuer.Authenticate(req("Authorization", "Bearer "+tok), false); err != nil || id.Key() != "jwt@https%3A%2F%2Fidp.example:alice" {
		t.Errorf("JWT of any issuer: %q, %v", id.Key(), err)
	}
	noIss := sign(t, jwt.SigningMethodHS256, hmacKey, claims(jwt.MapClaims{"iss": nil}), nil)
	if id, err := anyIssuer.Authenticate(req("Authorization", "Bearer "+noIss), false); err != nil || id.Key() != "jwt:alice" {
		t.Errorf("JWT without iss: %q, %v", id.Key(), err)
	}
	c := newAuth(t, func(c *Config) { c.ClientCert = &ClientCertConfig{} })
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, NotAfter: t0.Add(time.Hour), SerialNumber: big.NewInt(1)}
	r := req()
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	if id, err := c.Authenticate(r, false); err != nil || id.Key() != "cert:alice" {
		t.Errorf("certificate: %q, %v", id.Key(), err)
	}
}

// With only JWT configured, a token that is no JWT and an X-API-Key say so
// instead of "unknown API key" (a server that has none).
func TestOnlyJWTErrors(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.APIKeys = nil })
	for r, want := range map[*http.Request]string{
		req("Authorization", "Bearer garbage"): "not a JWT",
		req("X-API-Key", "abc"):                "accepts no API keys",
	} {
		_, err := a.Authenticate(r, false)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "unknown API key") {
			t.Errorf("%v: %v, want %q", r.Header, err, want)
		}
	}
}
