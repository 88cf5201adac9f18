package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// jwks caches an identity provider's JSON Web Key Set. Keys are fetched
// when first needed, again when older than refresh, and when a token names
// a key id the set lacks (a rotation), at most every minRefresh. A failed
// fetch keeps the keys it had.
type jwks struct {
	url        string
	client     *http.Client
	refresh    time.Duration
	minRefresh time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu       sync.Mutex                    // never held across the fetch
	set      map[string][]crypto.PublicKey // kid → keys ("" for keys without kid)
	fetched  time.Time                     // of the last good fetch
	tried    time.Time                     // of the last attempt
	fetching chan struct{}                 // closed when the fetch under way ends; nil when none
}

func newJWKS(cfg JWTConfig, now func() time.Time, log *slog.Logger) *jwks {
	j := &jwks{url: cfg.JWKSURL, client: cfg.HTTPClient, refresh: cfg.JWKSRefresh, minRefresh: cfg.JWKSMinRefresh, now: now, log: log}
	if j.client == nil {
		j.client = &http.Client{Timeout: 5 * time.Second}
	}
	if j.refresh <= 0 {
		j.refresh = 15 * time.Minute
	}
	if j.minRefresh <= 0 {
		j.minRefresh = 30 * time.Second
	}
	return j
}

// keys returns the keys with id kid (every key when kid is ""). One fetch
// runs at a time, outside mu: while it runs, callers that have the key
// they need go on with it; only those that lack it wait for the fetch.
func (j *jwks) keys(kid string) []crypto.PublicKey {
	j.mu.Lock()
	now := j.now()
	_, known := j.set[kid]
	missing := j.set == nil || kid != "" && !known
	stale := missing || now.Sub(j.fetched) >= j.refresh
	switch {
	case stale && j.fetching == nil && now.Sub(j.tried) >= j.minRefresh:
		j.tried = now
		done := make(chan struct{})
		j.fetching = done
		j.mu.Unlock()
		set, err := j.fetch()
		if err != nil {
			j.log.Warn("fetching the JWKS failed; keeping the keys we had", "url", j.url, "err", err)
		}
		j.mu.Lock()
		if err == nil {
			j.set, j.fetched = set, now
		}
		j.fetching = nil
		close(done)
	case missing && j.fetching != nil:
		wait := j.fetching
		j.mu.Unlock()
		<-wait
		j.mu.Lock()
	}
	defer j.mu.Unlock()
	if kid == "" {
		var all []crypto.PublicKey
		for _, ks := range j.set {
			all = append(all, ks...)
		}
		return all
	}
	return j.set[kid]
}

// fetch reads the key set.
func (j *jwks) fetch() (map[string][]crypto.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return ParseJWKS(body)
}

// jwk is one JSON Web Key, the fields of RSA, EC and OKP public keys.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads a JSON Web Key Set: RSA, EC (P-256, P-384, P-521) and
// Ed25519 public keys, by kid. Keys for encryption (use "enc") and of
// other types are skipped; a key that does not parse is an error.
func ParseJWKS(data []byte) (map[string][]crypto.PublicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	set := map[string][]crypto.PublicKey{}
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.public()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		if pub != nil {
			set[k.Kid] = append(set[k.Kid], pub)
		}
	}
	return set, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func (k jwk) public() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 {
			return nil, errors.New("RSA key too weak (less than 2048 bits or e < 3)")
		}
		return pub, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC x or y")
		}
		return ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
	case "OKP":
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("only Ed25519 OKP keys are supported")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, nil // other key types (oct, ...) are not for us
}
