package bridge

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// SharedSecrets is the store capability that gives every instance of a
// fleet the same secret: the Redis store keeps it in Redis. The Bridge
// seals list cursors with the secret "cursor"; with a store that lacks the
// capability (the memory store: one instance) it uses a random key of its
// own.
type SharedSecrets interface {
	// SharedSecret returns the 32 bytes stored under name, storing 32
	// random bytes first when there are none yet (one instance wins; every
	// other one reads what it stored).
	SharedSecret(ctx context.Context, name string) ([]byte, error)
}

// cursorKeyTTL is how long a shared cursor key is used before it is read
// again from the store: after the store lost it (a flushed Redis), the
// instances agree on the new one within this time.
const cursorKeyTTL = time.Minute

// cursorAAD starts the associated data of every cursor: a cursor is
// bound to the purpose, the identity and the filter it was made for.
const cursorAAD = "mqttbridge list cursor v1\x00"

// cursors seals the positions List continues from: a cursor is the
// position (a topic name) encrypted and authenticated with AES-256-GCM
// under a server key, with the identity's Key and the filter as associated
// data, so it reveals nothing (not even a topic the caller may not read)
// and is good only for the same caller and filter. The zero value works.
type cursors struct {
	mu      sync.Mutex
	aead    cipher.AEAD
	fetched time.Time // when aead's key was made or read from the store
}

// key returns the AEAD of the current key: the store's shared one when the
// store has SharedSecrets (read again after cursorKeyTTL), else a random
// key made once. The store is asked without holding the mutex, so a slow
// store delays only the calls that need it.
func (c *cursors) key(ctx context.Context, store Store) (cipher.AEAD, error) {
	ss, shared := store.(SharedSecrets)
	c.mu.Lock()
	last, fresh := c.aead, c.aead != nil && (!shared || time.Since(c.fetched) < cursorKeyTTL)
	c.mu.Unlock()
	if fresh {
		return last, nil
	}
	key := make([]byte, 32)
	if shared {
		k, err := ss.SharedSecret(ctx, "cursor")
		switch {
		case err != nil && last != nil:
			return last, nil // keep the last key while the store does not answer
		case err != nil:
			return nil, err
		}
		key = k
	} else {
		_, _ = rand.Read(key) // crypto/rand.Read never fails
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, Errorf(ECodeInternal, "the cursor key: %v", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, Errorf(ECodeInternal, "the cursor key: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !shared && c.aead != nil {
		return c.aead, nil // another call made the local key first
	}
	c.aead, c.fetched = aead, time.Now()
	return aead, nil
}

func cursorData(id Identity, filter string) []byte {
	return []byte(cursorAAD + id.Key() + "\x00" + filter)
}

// seal turns a position into a cursor for id and filter: URL-safe base64
// of the nonce and the sealed position.
func (c *cursors) seal(ctx context.Context, store Store, id Identity, filter, pos string) (string, error) {
	aead, err := c.key(ctx, store)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pos)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(pos), cursorData(id, filter))), nil
}

// open returns the position of a cursor that seal made for id and filter;
// any other string is an *Error with ECodeInvalidCursor.
func (c *cursors) open(ctx context.Context, store Store, id Identity, filter, cursor string) (string, error) {
	aead, err := c.key(ctx, store)
	if err != nil {
		return "", err
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil && len(raw) >= aead.NonceSize()+aead.Overhead() {
		n := aead.NonceSize()
		var pos []byte
		if pos, err = aead.Open(nil, raw[:n], raw[n:], cursorData(id, filter)); err == nil {
			return string(pos), nil
		}
	}
	return "", Errorf(ECodeInvalidCursor, "the cursor is not one this server returned for this filter and caller; list again without it")
}
