// Package ratelimit is the bridge.Limiter: a token bucket per identity and
// action (golang.org/x/time/rate). The anonymous identity is not limited:
// with authentication off it stands for every caller at once.
package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Rate is a token bucket: PerSecond tokens are added every second, at most
// Burst are kept. PerSecond 0 means no limit.
type Rate struct {
	PerSecond float64
	// Burst defaults to PerSecond rounded up (at least 1).
	Burst int
}

// Config sets the rate of each limited action. Zero values: no limit.
type Config struct {
	Publish Rate
	Request Rate
	// Read limits reads (bridge.ActionSubscribe): last values, list pages,
	// and each stream, WebSocket or long-poll connection.
	Read Rate
	// Ticket is the rate of POST /v1/tickets (AllowTicket).
	Ticket Rate
	// IdleTTL drops the bucket of an identity idle this long; default 10m.
	IdleTTL time.Duration
}

// Limiter limits publishes, requests, reads and tickets per identity.
type Limiter struct {
	cfg  Config
	now  func() time.Time
	mu   sync.Mutex
	bkts map[key]*bucket
	last time.Time // of the last sweep
}

type key struct {
	id     string // Identity.Key
	action bridge.Action
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

var _ bridge.Limiter = (*Limiter)(nil)

// New returns a Limiter.
func New(cfg Config) *Limiter {
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = 10 * time.Minute
	}
	return &Limiter{cfg: cfg, now: time.Now, bkts: map[key]*bucket{}}
}

// Allow takes a token from id's bucket for action, or returns an
// *bridge.Error with ECodeRateLimited and RetryAfter when it is empty.
func (l *Limiter) Allow(id bridge.Identity, action bridge.Action) error {
	var r Rate
	what := string(action) + "s"
	switch action {
	case bridge.ActionPublish:
		r = l.cfg.Publish
	case bridge.ActionRequest:
		r = l.cfg.Request
	case bridge.ActionSubscribe:
		r, what = l.cfg.Read, "reads"
	case actionTicket:
		r = l.cfg.Ticket
	}
	if r.PerSecond <= 0 || id.IsAnonymous() {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	k := key{id.Key(), action}
	b := l.bkts[k]
	if b == nil {
		burst := r.Burst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(r.PerSecond)))
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(r.PerSecond), burst)}
		l.bkts[k] = b
	}
	b.used = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &bridge.Error{Code: bridge.ECodeRateLimited, RetryAfter: d,
			Message: fmt.Sprintf("rate limit of %g %s per second exceeded; retry in %s", r.PerSecond, what, d.Round(time.Millisecond))}
	}
	return nil
}

// actionTicket is no bridge.Action: it names the ticket buckets.
const actionTicket bridge.Action = "ticket"

// AllowTicket takes a token from id's ticket bucket (Config.Ticket), or
// returns an *bridge.Error with ECodeRateLimited and RetryAfter.
func (l *Limiter) AllowTicket(id bridge.Identity) error { return l.Allow(id, actionTicket) }

// sweepLocked drops idle buckets, at most once per IdleTTL.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Sub(l.last) < l.cfg.IdleTTL {
		return
	}
	l.last = now
	for k, b := range l.bkts {
		if now.Sub(b.used) >= l.cfg.IdleTTL {
			delete(l.bkts, k)
		}
	}
}
