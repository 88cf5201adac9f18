package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// jwksTimeout bounds one fetch of the key set, and how long a token that
// names an unknown key id may wait for the fetch it causes.
const jwksTimeout = 10 * time.Second

// maxJWKSSize bounds the key set document.
const maxJWKSSize = 1 << 20

// newJWKS keeps an identity provider's JSON Web Key Set with keyfunc: it
// is fetched now (waiting at most jwksTimeout; on failure the bridge
// starts without its keys and tries again), then every JWKSRefresh in a
// goroutine that ends with ctx, and when a token names a key id the set
// lacks (a rotation), at most every JWKSMinRefresh. A failed fetch keeps
// the keys it had; tokens of known key ids never wait for a fetch. Keys
// that cannot be used are skipped (usableKeys), not the whole set.
func newJWKS(ctx context.Context, cfg JWTConfig, log *slog.Logger) (keyfunc.Keyfunc, error) {
	client := &http.Client{Timeout: jwksTimeout}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
	}
	next := client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	client.Transport = usableKeys{next: next, log: log}
	refresh, minRefresh := cfg.JWKSRefresh, cfg.JWKSMinRefresh
	if refresh <= 0 {
		refresh = 15 * time.Minute
	}
	if minRefresh <= 0 {
		minRefresh = 30 * time.Second
	}
	return keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:            client,
		HTTPTimeout:       jwksTimeout,
		RefreshInterval:   refresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(minRefresh), 1),
		// Also bounds the fetch an unknown key id causes: a token whose
		// wait for the limiter would be longer fails at once.
		RateLimitWaitMax: jwksTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				if ctx.Err() == nil { // not the fetch that Close cut short
					log.Warn("fetching the JWKS failed; keeping the keys we had", "url", u, "err", err)
				}
			}
		},
	})
}

// usableKeys is the transport of the key set's fetches: it drops from the
// set the keys that cannot verify a signature (malformed, too weak, for
// encryption, symmetric), so that one bad key does not make jwkset refuse
// the whole set and freeze a rotation.
type usableKeys struct {
	next http.RoundTripper
	log  *slog.Logger
}

func (u usableKeys) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := u.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("the key set is larger than %d bytes", maxJWKSSize)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	kept := []json.RawMessage{}
	for i, raw := range set.Keys {
		switch kid, err := usableKey(raw); {
		case err == nil:
			kept = append(kept, raw)
		case !errors.Is(err, errNotForUs):
			u.log.Warn("skipping a key of the JWKS that cannot be used", "index", i, "kid", kid, "err", err)
		}
	}
	body, _ = json.Marshal(map[string]any{"keys": kept})
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// errNotForUs marks keys skipped without a warning: of a type or use that
// is not for verifying signatures.
var errNotForUs = errors.New("not a signature key")

// usableKey returns the key's id, and an error when it cannot be used.
func usableKey(raw json.RawMessage) (string, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("not a JSON Web Key: %w", err)
	}
	if m.USE != "" && m.USE != jwkset.UseSig || m.KTY == jwkset.KtyOct {
		return m.KID, errNotForUs
	}
	k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
	switch {
	case errors.Is(err, jwkset.ErrUnsupportedKey):
		return m.KID, errNotForUs
	case err != nil:
		return m.KID, err
	}
	key := k.Key()
	if p, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = p.Public() // a set may hold private keys; only their public half is used
	}
	if pub, ok := key.(*rsa.PublicKey); ok && (pub.N.BitLen() < 2048 || pub.E < 3) {
		return m.KID, errors.New("RSA key too weak (less than 2048 bits or e < 3)")
	}
	return m.KID, nil
}
