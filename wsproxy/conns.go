package wsproxy

import (
	"context"
	"sync"
)

// conns tracks a server's open connections so that Shutdown can end them
// and wait: both endpoints (/v1/ws and /mqtt) use it.
type conns[C comparable] struct {
	mu      sync.Mutex
	set     map[C]struct{}
	closing bool
	wg      sync.WaitGroup
}

// enter admits a new handshake, or refuses it (false) once Shutdown began;
// an admitted one calls leave when it is done.
func (t *conns[C]) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *conns[C]) leave() { t.wg.Done() }

// run registers c while fn runs.
func (t *conns[C]) run(c C, fn func()) {
	t.mu.Lock()
	if t.set == nil {
		t.set = map[C]struct{}{}
	}
	t.set[c] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.set, c)
		t.mu.Unlock()
	}()
	fn()
}

// shutdown refuses new connections, calls end for each open one, and
// waits for all of them to leave or ctx to be done. Safe to call twice.
func (t *conns[C]) shutdown(ctx context.Context, end func(C)) error {
	t.mu.Lock()
	t.closing = true
	for c := range t.set {
		end(c)
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
