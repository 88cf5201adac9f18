package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

// The JWKS refresh goroutine ends with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jwksServer serves the key set that set last stored, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []any
	fetches atomic.Int32
	hook    func() // called at every fetch, before answering
}

func newJWKSServer(t *testing.T, keys ...any) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		keys, hook := s.keys, s.hook
		s.mu.Unlock()
		if hook != nil {
			hook()
		}
		if keys == nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

// jwksAuth is an Authenticator of ES256 tokens from the JWKS at url.
func jwksAuth(t *testing.T, url string, refresh, minRefresh time.Duration) (*Authenticator, func(k *ecdsa.PrivateKey, kid string) error) {
	a := newAuth(t, func(c *Config) {
		c.Now = time.Now
		c.JWT = &JWTConfig{Algorithms: []string{"ES256"}, JWKSURL: url, JWKSRefresh: refresh, JWKSMinRefresh: minRefresh}
	})
	c := claims(jwt.MapClaims{"aud": nil, "iss": nil, "iat": nil, "exp": time.Now().Add(time.Hour).Unix()})
	return a, func(k *ecdsa.PrivateKey, kid string) error {
		h := map[string]any{"kid": kid}
		if kid == "" {
			h = nil
		}
		_, err := a.Authenticate(req("Authorization", "Bearer "+sign(t, jwt.SigningMethodES256, k, c, h)), false)
		return err
	}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The key set is fetched at start; a token with a new kid makes the
// bridge fetch it again (a rotation, accepted without a restart), but not
// more often than JWKSMinRefresh; a token signed by one key and naming
// another fails.
func TestJWKSRotation(t *testing.T) {
	k1, k2, k3 := ecKey(t), ecKey(t), ecKey(t)
	srv := newJWKSServer(t, jwkOf("k1", k1))
	_, auth := jwksAuth(t, srv.URL, time.Hour, time.Hour)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	for range 2 {
		if err := auth(k1, "k1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after two tokens of a known key, want 1", n)
	}
	srv.set(jwkOf("k1", k1), jwkOf("k2", k2))
	if err := auth(k2, "k2"); err != nil || srv.fetches.Load() != 2 {
		t.Fatalf("k2 after the rotation: %v, %d fetches, want accepted after a 2nd fetch", err, srv.fetches.Load())
	}
	if err := auth(k2, "k1"); err == nil {
		t.Fatal("a token signed by k2 passed as k1")
	}
	// Within JWKSMinRefresh another unknown kid fails at once, unfetched.
	srv.set(jwkOf("k1", k1), jwkOf("k2", k2), jwkOf("k3", k3))
	if err := auth(k3, "k3"); err == nil || srv.fetches.Load() != 2 {
		t.Fatalf("k3 within the minimum interval: %v, %d fetches, want refused, 2", err, srv.fetches.Load())
	}
	if err := auth(k1, ""); err != nil {
		t.Fatalf("a token without kid: %v", err)
	}
}

// The key set is fetched again every JWKSRefresh in the background; when
// the provider fails, the keys the bridge has keep working.
func TestJWKSBackgroundRefresh(t *testing.T) {
	k1, k2 := ecKey(t), ecKey(t)
	srv := newJWKSServer(t, jwkOf("k1", k1))
	_, auth := jwksAuth(t, srv.URL, 20*time.Millisecond, time.Hour)
	if err := auth(k1, "unknown"); err == nil {
		t.Fatal("an unknown kid passed") // and took the one unknown-kid refresh
	}
	srv.set(jwkOf("k1", k1), jwkOf("k2", k2))
	waitFor(t, "k2 from a background refresh", func() bool { return auth(k2, "k2") == nil })
	srv.set() // the provider fails (500)
	n := srv.fetches.Load()
	waitFor(t, "a failed refresh", func() bool { return srv.fetches.Load() > n+1 })
	if err := auth(k1, "k1"); err != nil {
		t.Fatalf("with the provider failing: %v", err)
	}
}

// One key the bridge cannot use (malformed, too weak, for encryption,
// symmetric, of an unknown type) is skipped; the others verify tokens.
func TestJWKSSkipsBadKeys(t *testing.T) {
	k1 := ecKey(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	srv := newJWKSServer(t,
		map[string]any{"kty": "EC", "crv": "P-256", "kid": "short", "x": "AA", "y": "AA"},
		map[string]any{"kty": "RSA", "kid": "badb64", "n": "!!", "e": "AQAB"},
		map[string]any{"kty": "RSA", "kid": "weak", "n": b64(weak.N.Bytes()), "e": "AQAB"},
		map[string]any{"kty": 5, "kid": "type"},
		"not an object",
		map[string]any{"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
		map[string]any{"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": "AA"},
		jwkOf("k1", k1),
	)
	_, auth := jwksAuth(t, srv.URL, time.Hour, time.Hour)
	if err := auth(k1, "k1"); err != nil {
		t.Fatalf("the good key of a set with bad ones: %v", err)
	}
	if err := auth(k1, ""); err != nil {
		t.Fatalf("without kid: %v", err)
	}
}

// A JWKS fetch that hangs holds back no token whose key the bridge has;
// only the token whose kid it lacks waits for it (at most jwksTimeout).
func TestJWKSSlowServer(t *testing.T) {
	k1, k2 := ecKey(t), ecKey(t)
	srv := newJWKSServer(t, jwkOf("k1", k1))
	_, auth := jwksAuth(t, srv.URL, time.Hour, time.Hour)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv.mu.Lock()
	srv.keys = []any{jwkOf("k1", k1), jwkOf("k2", k2)}
	srv.hook = func() { once.Do(func() { close(entered) }); <-release }
	srv.mu.Unlock()
	newKey := make(chan error, 1)
	go func() { newKey <- auth(k2, "k2") }() // fetches, and hangs
	<-entered
	known := make(chan error, 1)
	go func() { known <- auth(k1, "k1") }()
	select {
	case err := <-known:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a token of a known key waits for the JWKS fetch")
	}
	close(release)
	if err := <-newKey; err != nil {
		t.Fatalf("k2 after the slow fetch: %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
