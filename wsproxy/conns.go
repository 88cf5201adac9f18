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
	end     func(C) // shutdown's, once closing: ends the latecomers too
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

// run registers c while fn runs. A handshake admitted before Shutdown but
// registered after it walked the open connections is ended at once, with
// the same end, so that Shutdown does not wait out its grace period for
// it. end must not block (it runs under the lock); fn then sees the end
// request like any other connection.
func (t *conns[C]) run(c C, fn func()) {
	t.add(c)
	defer t.remove(c)
	fn()
}

// add registers c until remove, as run does around its fn.
func (t *conns[C]) add(c C) {
	t.mu.Lock()
	if t.set == nil {
		t.set = map[C]struct{}{}
	}
	t.set[c] = struct{}{}
	if t.closing {
		t.end(c)
	}
	t.mu.Unlock()
}

func (t *conns[C]) remove(c C) {
	t.mu.Lock()
	delete(t.set, c)
	t.mu.Unlock()
}

// shutdown refuses new connections, calls end for each open one and each
// one registered from now on, and waits for all of them to leave or ctx
// to be done. end must not block. Safe to call twice.
func (t *conns[C]) shutdown(ctx context.Context, end func(C)) error {
	t.mu.Lock()
	if !t.closing {
		t.closing, t.end = true, end
	}
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
