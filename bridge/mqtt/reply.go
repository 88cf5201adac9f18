package mqtt

import (
	"slices"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

var _ bridge.Replier = (*Conn)(nil)

// fillReplies checks ReplyPrefix, OnReply and IgnorePrefix, adds the reply
// filter (ReplyPrefix + "+") to the subscriptions, so that it is
// subscribed, checked and reported like the others after every
// (re)connect, and keeps ignored topics from OnMessage and OnMessagesAck.
func (cfg *Config) fillReplies(bad func(format string, args ...any) error) error {
	for _, p := range []struct{ key, v string }{{"ReplyPrefix", cfg.ReplyPrefix}, {"IgnorePrefix", cfg.IgnorePrefix}} {
		if p.v == "" {
			continue
		}
		if !strings.HasSuffix(p.v, "/") {
			return bad("%s %q must end with /", p.key, p.v)
		}
		if err := topic.ValidateName(p.v + "x"); err != nil {
			return bad("%s %q: %v", p.key, p.v, err)
		}
	}
	switch {
	case cfg.ReplyPrefix == "" && cfg.OnReply != nil:
		return bad("OnReply needs a ReplyPrefix")
	case cfg.ReplyPrefix != "" && cfg.OnReply == nil:
		return bad("ReplyPrefix needs OnReply")
	}
	if cfg.ReplyPrefix != "" {
		f := cfg.ReplyPrefix + "+"
		if slices.Contains(cfg.Filters, f) {
			return bad("filter %q is the reply filter", f)
		}
		cfg.Filters = append(slices.Clip(cfg.Filters), f)
	}
	if ignore := cfg.IgnorePrefix; ignore != "" {
		if h := cfg.OnMessage; h != nil {
			cfg.OnMessage = func(m bridge.Message) {
				if !strings.HasPrefix(m.Topic, ignore) {
					h(m)
				}
			}
		}
		if h := cfg.OnMessagesAck; h != nil {
			// Ignored messages count as handled, so that they are
			// acknowledged in order with the others.
			var kept []bridge.Message
			cfg.OnMessagesAck = func(ms []bridge.Message) bool {
				kept = kept[:0]
				for _, m := range ms {
					if !strings.HasPrefix(m.Topic, ignore) {
						kept = append(kept, m)
					}
				}
				return len(kept) == 0 || h(kept)
			}
		}
	}
	return nil
}

// ReplyPrefix is the prefix of the topics on which this connection
// receives replies ("" when it receives none); see bridge.Replier.
func (c *Conn) ReplyPrefix() string { return c.cfg.ReplyPrefix }

// RepliesReady reports whether the reply subscription is granted on the
// current connection.
func (c *Conn) RepliesReady() bool {
	if c.cfg.ReplyPrefix == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up && !c.closed && c.ctx.Err() == nil && c.subs[len(c.subs)-1].state == subOK
}

// reply hands a PUBLISH under ReplyPrefix to OnReply, from paho's
// goroutine (OnReply must not block), and reports whether it was one.
func (c *Conn) reply(p *paho.Publish) bool {
	if c.cfg.OnReply == nil || p == nil || !strings.HasPrefix(p.Topic, c.cfg.ReplyPrefix) {
		return false
	}
	msg := fromPahoPublish(p)
	msg.ReceivedAt = time.Now()
	c.cfg.OnReply(msg)
	return true
}
