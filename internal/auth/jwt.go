package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
)

// Algorithms are the JWT algorithms that may be allowed; "none" never is.
var Algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// JWTConfig configures JWT authentication.
type JWTConfig struct {
	// Algorithms is the allow-list, from Algorithms; required.
	Algorithms []string
	// HMACKeys are the secrets of HS256/384/512 tokens (several during a
	// rotation).
	HMACKeys [][]byte
	// PublicKeyFiles are PEM files of public keys or certificates (RSA,
	// ECDSA, Ed25519) for RS*, PS*, ES* and EdDSA tokens.
	PublicKeyFiles []string
	// JWKSURL is an identity provider's key set, fetched by New and again
	// every JWKSRefresh in the background (until Close), and when a token
	// names an unknown key id (at most every JWKSMinRefresh).
	JWKSURL string
	// JWKSRefresh defaults to 15m; JWKSMinRefresh to 30s.
	JWKSRefresh    time.Duration
	JWKSMinRefresh time.Duration
	// HTTPClient fetches the key set; default a client with a 10s timeout.
	HTTPClient *http.Client
	// Issuer and Audience, when set, must be the token's iss and one of
	// its aud.
	Issuer   string
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat; default 0.
	Leeway time.Duration
	// NameClaim holds the identity's name; default "sub".
	NameClaim string
	// ClientIDClaim, when set, holds the identity's client id (%c).
	ClientIDClaim string
	// RulesClaim, when set, may hold topic rules as an object
	// {"publish": [...], "subscribe": [...], "request": [...]}, added to
	// Rules.
	RulesClaim string
	// Rules are the topic permissions of every JWT identity.
	Rules bridge.Rules
}

type jwtVerifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	static []crypto.PublicKey
	jwks   keyfunc.Keyfunc // nil without JWKSURL
	stop   context.CancelFunc
	log    *slog.Logger
}

func newJWTVerifier(cfg JWTConfig, now func() time.Time, log *slog.Logger) (*jwtVerifier, error) {
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("auth: jwt: no algorithms allowed")
	}
	var hmac, public bool
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(Algorithms, alg) {
			return nil, fmt.Errorf("auth: jwt: algorithm %q is not one of %s", alg, strings.Join(Algorithms, ", "))
		}
		if strings.HasPrefix(alg, "HS") {
			hmac = true
		} else {
			public = true
		}
	}
	if hmac && len(cfg.HMACKeys) == 0 {
		return nil, errors.New("auth: jwt: HS algorithms allowed, but no HMAC key")
	}
	for i, k := range cfg.HMACKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("auth: jwt: HMAC key %d is %d bytes; at least 32 are needed", i, len(k))
		}
	}
	if public && len(cfg.PublicKeyFiles) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("auth: jwt: public-key algorithms allowed, but no public key file or JWKS URL")
	}
	if cfg.NameClaim == "" {
		cfg.NameClaim = "sub"
	}
	if err := acl.ValidateRules(cfg.Rules); err != nil {
		return nil, fmt.Errorf("auth: jwt: rules: %w", err)
	}
	v := &jwtVerifier{cfg: cfg, log: log, stop: func() {}}
	for _, f := range cfg.PublicKeyFiles {
		keys, err := readPublicKeys(f)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt: %w", err)
		}
		v.static = append(v.static, keys...)
	}
	if cfg.JWKSURL != "" {
		ctx, stop := context.WithCancel(context.Background())
		jwks, err := newJWKS(ctx, cfg, log)
		if err != nil {
			stop()
			return nil, fmt.Errorf("auth: jwt: jwks_url: %w", err)
		}
		v.jwks, v.stop = jwks, stop
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// verify checks a token and builds its identity.
func (v *jwtVerifier) verify(tok string) (bridge.Identity, error) {
	claims := jwt.MapClaims{}
	if t, err := v.parser.ParseWithClaims(tok, claims, v.keyFunc); err != nil {
		return bridge.Identity{}, unauthorized("invalid token: %s", v.reason(t, claims, err))
	}
	id := bridge.Identity{Kind: bridge.KindJWT}
	name, ok := claims[v.cfg.NameClaim].(string)
	if !ok || name == "" {
		return bridge.Identity{}, unauthorized("invalid token: no %q claim with the identity's name", v.cfg.NameClaim)
	}
	id.Name = name
	if v.cfg.Issuer == "" {
		// Tokens of any issuer pass: the issuer is part of who this is
		// (Identity.Key), so that "alice" of one issuer is not "alice" of
		// another whose tokens the same keys verify (a multi-tenant
		// provider). With one configured issuer every token has it.
		id.Issuer, _ = claims.GetIssuer()
	}
	if v.cfg.ClientIDClaim != "" {
		if c, ok := claims[v.cfg.ClientIDClaim]; ok {
			s, isString := c.(string)
			if !isString {
				return bridge.Identity{}, unauthorized("invalid token: the %q claim is not a string", v.cfg.ClientIDClaim)
			}
			id.ClientID = s
		}
	}
	rules := v.cfg.Rules
	if v.cfg.RulesClaim != "" {
		if raw, ok := claims[v.cfg.RulesClaim]; ok {
			extra, err := parseRulesClaim(raw)
			if err != nil {
				return bridge.Identity{}, unauthorized("invalid token: the %q claim: %v", v.cfg.RulesClaim, err)
			}
			rules.Publish = slices.Concat(rules.Publish, extra.Publish)
			rules.Subscribe = slices.Concat(rules.Subscribe, extra.Subscribe)
			rules.Request = slices.Concat(rules.Request, extra.Request)
		}
	}
	id.Rules = &rules
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time
	}
	return id, nil
}

// parseRulesClaim reads {"publish": [...], "subscribe": [...], "request":
// [...]} strictly and validates the patterns.
func parseRulesClaim(raw any) (bridge.Rules, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return bridge.Rules{}, err
	}
	var r bridge.Rules
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return bridge.Rules{}, errors.New(`want {"publish": [...], "subscribe": [...], "request": [...]} of MQTT filters`)
	}
	if err := acl.ValidateRules(r); err != nil {
		return bridge.Rules{}, err
	}
	return r, nil
}

// reason says why a token failed, one message for each problem, quoting
// nothing of the token but what it says wrongly (its alg, kid, iss).
func (v *jwtVerifier) reason(t *jwt.Token, claims jwt.MapClaims, err error) string {
	var u *unknownKey
	switch {
	case t == nil || errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed: not a JSON Web Token (base64url header, claims and signature; JSON header and claims)"
	case t.Method == nil || !slices.Contains(v.cfg.Algorithms, t.Method.Alg()):
		alg, _ := t.Header["alg"].(string)
		if alg == "" {
			return "the header names no algorithm (alg)"
		}
		return fmt.Sprintf("the algorithm %q is not allowed (allowed: %s)", truncate(alg), strings.Join(v.cfg.Algorithms, ", "))
	case errors.As(err, &u):
		return u.Error()
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "no key can verify it"
	}
	// The signature is good: the claims are wrong, maybe several of them.
	var out []string
	if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		exp, expErr := claims.GetExpirationTime()
		iss, issErr := claims.GetIssuer()
		aud, audErr := claims.GetAudience()
		for _, c := range []struct {
			name    string
			missing bool
		}{
			{"exp", expErr == nil && exp == nil},
			{"iss", v.cfg.Issuer != "" && issErr == nil && iss == ""},
			{"aud", v.cfg.Audience != "" && audErr == nil && strings.Join(aud, "") == ""},
		} {
			if c.missing {
				out = append(out, "no "+c.name+" claim, which is required")
			}
		}
	}
	at := func(get func() (*jwt.NumericDate, error)) string {
		if d, err := get(); err == nil && d != nil {
			return d.UTC().Format(time.RFC3339)
		}
		return "?"
	}
	for _, c := range []struct {
		err error
		msg func() string
	}{
		{jwt.ErrTokenInvalidIssuer, func() string {
			iss, _ := claims.GetIssuer()
			return fmt.Sprintf("wrong issuer: iss %q is not the configured issuer", truncate(iss))
		}},
		{jwt.ErrTokenInvalidAudience, func() string { return "wrong audience: aud does not name this bridge's audience" }},
		{jwt.ErrTokenExpired, func() string { return "expired at " + at(claims.GetExpirationTime) }},
		{jwt.ErrTokenNotValidYet, func() string { return "not valid before " + at(claims.GetNotBefore) }},
		{jwt.ErrTokenUsedBeforeIssued, func() string { return "issued in the future, at " + at(claims.GetIssuedAt) }},
		{jwt.ErrInvalidType, func() string {
			return "a claim has the wrong type (exp, nbf and iat are numbers; iss a string; aud a string or a list of strings)"
		}},
	} {
		if errors.Is(err, c.err) {
			out = append(out, c.msg())
		}
	}
	if len(out) == 0 {
		return "not a valid token"
	}
	return strings.Join(out, "; ")
}

type unknownKey struct{ kid string }

func (u *unknownKey) Error() string {
	if u.kid == "" {
		return "no key to verify it"
	}
	return fmt.Sprintf("no key with id %q", u.kid)
}

// keyFunc returns the keys that can verify t: HMAC secrets for HS*, and
// public keys of the algorithm's type for the others (from the files and
// the JWKS, by kid when the token names one).
func (v *jwtVerifier) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if !slices.Contains(v.cfg.Algorithms, alg) { // the parser checked; twice is cheap
		return nil, fmt.Errorf("algorithm %q not allowed", alg)
	}
	var keys []jwt.VerificationKey
	if strings.HasPrefix(alg, "HS") {
		for _, k := range v.cfg.HMACKeys {
			keys = append(keys, k)
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
	kid, _ := t.Header["kid"].(string)
	candidates := slices.Clone(v.static)
	if v.jwks != nil {
		// The key of the token's kid, or every key when it names none; an
		// error when the set lacks the kid even after a refresh.
		if k, err := v.jwks.Keyfunc(t); err == nil {
			if set, ok := k.(jwt.VerificationKeySet); ok {
				for _, k := range set.Keys {
					candidates = append(candidates, k)
				}
			} else {
				candidates = append(candidates, k)
			}
		}
	}
	for _, k := range candidates {
		if keyFits(alg, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, &unknownKey{kid}
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// keyFits reports whether k is the key type of alg.
func keyFits(alg string, k crypto.PublicKey) bool {
	switch k.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// readPublicKeys reads every public key and certificate in a PEM file.
func readPublicKeys(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []crypto.PublicKey
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out = append(out, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out = append(out, k)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out = append(out, c.PublicKey)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key or certificate", path)
	}
	return out, nil
}
