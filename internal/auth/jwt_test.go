package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Each way a token can fail has its own message (12.13: a token without
// iss was told "exp is required").
func TestJWTReasons(t *testing.T) {
	k1, k9 := ecKey(t), ecKey(t)
	srv := newJWKSServer(t, jwkOf("k1", k1))
	a := newAuth(t, func(c *Config) {
		c.JWT.Algorithms = []string{"HS256", "ES256"}
		c.JWT.JWKSURL = srv.URL
	})
	hs := func(mod jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, hmacKey, claims(mod), nil) }
	exp := t0.Add(-time.Minute)
	for _, c := range []struct {
		name, tok, want string
	}{
		{"good", hs(nil), ""},
		{"malformed", "a.b.c", "malformed: not a JSON Web Token (base64url header, claims and signature; JSON header and claims)"},
		{"alg none", noneToken(claims(nil)), `the algorithm "none" is not allowed (allowed: HS256, ES256)`},
		{"alg not allowed", sign(t, jwt.SigningMethodHS384, hmacKey, claims(nil), nil), `the algorithm "HS384" is not allowed (allowed: HS256, ES256)`},
		{"bad signature", sign(t, jwt.SigningMethodHS256, otherKey, claims(nil), nil), "bad signature"},
		{"unknown kid", sign(t, jwt.SigningMethodES256, k9, claims(nil), map[string]any{"kid": "k9"}), `no key with id "k9"`},
		{"no iss", hs(jwt.MapClaims{"iss": nil}), "no iss claim, which is required"},
		{"wrong iss", hs(jwt.MapClaims{"iss": "https://evil.example"}), `wrong issuer: iss "https://evil.example" is not the configured issuer`},
		{"no aud", hs(jwt.MapClaims{"aud": nil}), "no aud claim, which is required"},
		{"wrong aud", hs(jwt.MapClaims{"aud": "other"}), "wrong audience: aud does not name this bridge's audience"},
		{"no exp", hs(jwt.MapClaims{"exp": nil}), "no exp claim, which is required"},
		{"expired", hs(jwt.MapClaims{"exp": exp.Unix()}), "expired at 2026-01-01T11:59:00Z"},
		{"not yet valid", hs(jwt.MapClaims{"nbf": t0.Add(time.Minute).Unix()}), "not valid before 2026-01-01T12:01:00Z"},
		{"issued in the future", hs(jwt.MapClaims{"iat": t0.Add(time.Minute).Unix()}), "issued in the future, at 2026-01-01T12:01:00Z"},
		{"exp a string", hs(jwt.MapClaims{"exp": "tomorrow"}), "a claim has the wrong type (exp, nbf and iat are numbers; iss a string; aud a string or a list of strings)"},
		{"no iss, expired", hs(jwt.MapClaims{"iss": nil, "exp": exp.Unix()}), "no iss claim, which is required; expired at 2026-01-01T11:59:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Authenticate(req("Authorization", "Bearer "+c.tok), false)
			got := ""
			if err != nil {
				got = err.(*bridge.Error).Message
			}
			if c.want != "" {
				c.want = "invalid token: " + c.want
			}
			if got != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}
