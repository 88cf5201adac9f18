package bridge

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Limits bound what one caller can ask of the bridge. Zero values mean the
// MQTT maximum or no limit.
type Limits struct {
	// MaxTopicLength is the longest topic name or filter, in bytes;
	// default (and at most) 65535, the MQTT limit.
	MaxTopicLength int
	// MaxTopicLevels is the most levels of a topic name or filter; default
	// no limit.
	MaxTopicLevels int
	// SubscriptionsPerFeed is the most filters one feed (a WebSocket
	// connection, an SSE stream) may hold; default no limit.
	SubscriptionsPerFeed int
	// ConnectionsPerIdentity is the most connections (Connect) one named
	// identity may hold at once; default no limit. The anonymous identity
	// is never counted: with authentication off it stands for everyone.
	ConnectionsPerIdentity int
}

// validateName checks a topic name: the MQTT rules and the limits.
func (b *Bridge) validateName(name string) error {
	if err := validateName(name); err != nil {
		return err
	}
	return b.checkTopicLimits("topic", name)
}

// validateFilter checks a topic filter: the MQTT rules and the limits.
func (b *Bridge) validateFilter(filter string) error {
	if err := topic.ValidateFilter(filter); err != nil {
		return Errorf(ECodeInvalidTopic, "filter %q: %v", truncate(filter), err)
	}
	return b.checkTopicLimits("filter", filter)
}

func (b *Bridge) checkTopicLimits(what, s string) error {
	l := b.cfg.Limits
	if l.MaxTopicLength > 0 && len(s) > l.MaxTopicLength {
		return Errorf(ECodeInvalidTopic, "%s %q is %d bytes long, more than the limit of %d", what, truncate(s), len(s), l.MaxTopicLength)
	}
	if l.MaxTopicLevels > 0 {
		if n := strings.Count(s, "/") + 1; n > l.MaxTopicLevels {
			return Errorf(ECodeInvalidTopic, "%s %q has %d levels, more than the limit of %d", what, truncate(s), n, l.MaxTopicLevels)
		}
	}
	return nil
}

// listScanBudget bounds how many last values one List call reads when it
// must check topics one by one: a page may then come back short (even
// empty) with a cursor, instead of one request reading much of the store.
const listScanBudget = 1000

// listAllowed is List for a filter the identity may not read whole: it
// reads the filter's topics and keeps those the identity may read, and
// returns the position to continue from ("" at the end). It is refused at
// once when the Authorizer says no topic of the filter can be allowed, and
// otherwise takes a read from the identity's budget.
func (b *Bridge) listAllowed(ctx context.Context, id Identity, filter, after string, limit int) ([]Message, string, error) {
	if pa, ok := b.cfg.Authorizer.(PartialAuthorizer); ok {
		if err := pa.AuthorizeSome(ctx, id, ActionSubscribe, filter); err != nil {
			return nil, "", err
		}
	}
	if err := b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
		return nil, "", err
	}
	var out []Message
	for scanned := 0; scanned < listScanBudget; {
		page, next, err := b.cfg.Store.List(ctx, filter, after, listScanBudget-scanned)
		if err != nil {
			return nil, "", err
		}
		for i, m := range page {
			scanned++
			after = m.Topic
			if b.cfg.Authorizer.Authorize(ctx, id, ActionSubscribe, m.Topic) != nil {
				continue
			}
			out = append(out, m)
			if len(out) == limit {
				if i == len(page)-1 && next == "" {
					return out, "", nil
				}
				return out, m.Topic, nil
			}
		}
		if next == "" {
			return out, "", nil
		}
		after = next
	}
	return out, after, nil
}

// Connect counts a long-lived connection (WebSocket, SSE stream, long
// poll) of id against Limits.ConnectionsPerIdentity; call release when it
// ends. Over the limit it returns an *Error with ECodeRateLimited. Each
// connection also takes a read from id's budget (Limiter, ActionSubscribe).
func (b *Bridge) Connect(id Identity) (release func(), err error) {
	if err := b.cfg.Limiter.Allow(id, ActionSubscribe); err != nil {
		return nil, err
	}
	if id.IsAnonymous() {
		return func() {}, nil
	}
	return b.conns.add(id.Key(), b.cfg.Limits.ConnectionsPerIdentity)
}

// connCounter counts connections per Identity.Key; the zero value works.
type connCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *connCounter) add(name string, max int) (func(), error) {
	if max <= 0 || name == "" {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[name] >= max {
		return nil, &Error{Code: ECodeRateLimited, RetryAfter: time.Second,
			Message: "too many connections for this identity: at most " + strconv.Itoa(max) + " at once"}
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[name]--; c.n[name] <= 0 {
				delete(c.n, name)
			}
		})
	}, nil
}
