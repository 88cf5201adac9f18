package wsproxy

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// maxRequests bounds the requests one connection has waiting for replies.
const maxRequests = 16

// requestFrame is a request: a publish frame's fields (without retain),
// plus the seconds to wait for the reply.
type requestFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	wire.PublishRequest
	Timeout *float64 `json:"timeout"`
}

// requests are a connection's requests waiting for their replies, each in
// its own goroutine, so that the reader goes on meanwhile. The zero value
// is ready; stop ends them when the connection ends.
type requests struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	stopped bool
	running int
	wg      sync.WaitGroup
}

// start runs fn for a request unless too many are under way.
func (r *requests) start(parent context.Context, fn func(ctx context.Context)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(parent)
	}
	switch {
	case r.stopped:
		return bridge.ErrFeedClosed
	case r.running >= maxRequests:
		return bridge.Errorf(bridge.ECodeRateLimited, "at most %d requests may wait for replies on one connection", maxRequests)
	}
	r.running++
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn(r.ctx)
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
	}()
	return nil
}

// stop cancels the requests under way and waits for them.
func (r *requests) stop() {
	r.mu.Lock()
	r.stopped = true
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// timeouts are the default and the longest request timeout.
func (s *Server) timeouts() (def, max time.Duration) {
	def, max = s.cfg.RequestTimeout, s.cfg.MaxRequestTimeout
	if def <= 0 {
		def = 10 * time.Second
	}
	if max <= 0 {
		max = time.Minute
	}
	return min(def, max), max
}

// handleRequest checks a request frame and starts waiting for its reply;
// the ok (with the reply envelope as result) or error frame comes when it
// ends.
func (c *conn) handleRequest(ctx context.Context, ref string, f requestFrame) error {
	msg, err := f.PublishRequest.Message()
	if err != nil {
		return err
	}
	timeout, max := c.s.timeouts()
	if f.Timeout != nil {
		t := *f.Timeout
		if math.IsNaN(t) || t <= 0 || t > max.Seconds() {
			return bridge.Errorf(bridge.ECodeInvalidRequest, "timeout must be a number of seconds above 0 and at most %g", max.Seconds())
		}
		timeout = time.Duration(t * float64(time.Second))
	}
	if err := c.s.cfg.Bridge.CheckRequest(ctx, c.id, msg); err != nil {
		return err
	}
	return c.reqs.start(ctx, func(ctx context.Context) {
		reply, err := c.s.cfg.Bridge.Request(ctx, c.id, msg, timeout)
		switch {
		case ctx.Err() != nil:
			// The connection ended: nobody to answer.
		case err != nil:
			c.reply(errorFrameFor(ref, err))
		default:
			c.ok(ref, wire.NewReply(&reply, time.Now()))
		}
	})
}
