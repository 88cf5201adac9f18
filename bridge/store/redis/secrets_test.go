package redisstore

import (
	"bytes"
	"sync"
	"testing"
)

// Instances sharing a prefix get the same secret, whoever asks first, even
// when they ask at once; another name or prefix gets another one.
func TestSharedSecret(t *testing.T) {
	c := newTestClient(t)
	prefix := newTestPrefix(t, c)
	var (
		wg  sync.WaitGroup
		got [8][]byte
	)
	for i := range got {
		s, err := New(newTestClient(t), Config{KeyPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			k, err := s.SharedSecret(t.Context(), "cursor")
			if err != nil {
				t.Errorf("instance %d: %v", i, err)
			}
			got[i] = k
		})
	}
	wg.Wait()
	for i, k := range got {
		if len(k) != secretLen || !bytes.Equal(k, got[0]) {
			t.Fatalf("instance %d got %x, instance 0 %x", i, k, got[0])
		}
	}
	s, err := New(c, Config{KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := s.SharedSecret(t.Context(), "other"); err != nil || bytes.Equal(k, got[0]) {
		t.Errorf("another name: %x, %v", k, err)
	}
	other := newTestStore(t, Config{})
	if k, err := other.SharedSecret(t.Context(), "cursor"); err != nil || bytes.Equal(k, got[0]) {
		t.Errorf("another prefix: %x, %v", k, err)
	}
}
