package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
)

// Request configures MQTT v5 request/response: POST /v1/request/{topic}
// and the WebSocket request frame.
type Request struct {
	// ReplyPrefix starts every reply topic: each instance subscribes to
	// ReplyPrefix + InstanceID + "/+" on every broker, and each request
	// gets the response topic ReplyPrefix + InstanceID + "/" + 32 hex
	// characters. Messages under ReplyPrefix are never recorded as last
	// values nor streamed. It ends with "/". Default "mqttbridge/reply/".
	ReplyPrefix string `yaml:"reply_prefix"`
	// Timeout is how long a request waits for its reply when the caller
	// does not say. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxTimeout is the longest wait a caller may ask for. Default 60s.
	MaxTimeout Duration `yaml:"max_timeout"`
}

// Webhook is one webhook: the messages of Filters are POSTed to URL. Zero
// values get the defaults of bridge/webhook.Config.
type Webhook struct {
	// Name is unique, [A-Za-z0-9_-]{1,64}; it names the webhook in the
	// dead-letter endpoints, logs and store keys.
	Name string `yaml:"name"`
	// Filters are MQTT topic filters; at least one.
	Filters []string `yaml:"filters"`
	// URL is http:// or https://.
	URL string `yaml:"url"`
	// Headers are added to every request; values are never logged.
	Headers map[string]string `yaml:"headers"`
	// Body is envelope (the JSON message envelope, default) or raw (the
	// payload, with MQTT-* headers).
	Body string `yaml:"body"`
	// Secret signs the requests (Standard Webhooks): "whsec_" and base64
	// of 24 to 64 bytes. SecretFile holds it instead (Load reads it).
	// Neither: unsigned.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Timeout bounds one attempt. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// Retries is how many times a failed delivery is tried again before
	// the message goes to the dead letters. Default 8; 0 for none.
	Retries *int `yaml:"retries"`
	// BackoffMin and BackoffMax bound the wait before a retry, doubling
	// from BackoffMin, with jitter. Defaults 1s and 5m.
	BackoffMin Duration `yaml:"backoff_min"`
	BackoffMax Duration `yaml:"backoff_max"`
	// Concurrency is how many topics are delivered at once (one message
	// of a topic at a time). Default 8.
	Concurrency int `yaml:"concurrency"`
	// ClaimIdle is how long an instance's delivery lease lasts, and how
	// long messages a stopped instance left unfinished wait before another
	// instance delivers them; longer than Timeout. Default 30s.
	ClaimIdle Duration `yaml:"claim_idle"`
	// MaxDeadLetters bounds the dead-letter list. Default 10000.
	MaxDeadLetters int `yaml:"max_dead_letters"`
}

// DefaultRetries is the default of webhooks[].retries.
const DefaultRetries = 8

// defaultRequests fills the defaults of the sections in this file.
func defaultRequests(c *Config) {
	c.Request = Request{ReplyPrefix: "mqttbridge/reply/", Timeout: Duration(10 * time.Second), MaxTimeout: Duration(time.Minute)}
}

// ReplyPrefix is this instance's reply prefix: request.reply_prefix and the
// instance id, ending with "/".
func (c Config) ReplyPrefix() string { return c.Request.ReplyPrefix + c.InstanceID + "/" }

// WebhookConfig is the webhook as bridge/webhook takes it; Load has read
// SecretFile into Secret.
func (w Webhook) WebhookConfig() webhook.Config {
	c := webhook.Config{
		Name: w.Name, Filters: w.Filters, URL: w.URL, Headers: w.Headers, Body: w.Body, Secret: w.Secret,
		Timeout: time.Duration(w.Timeout), BackoffMin: time.Duration(w.BackoffMin), BackoffMax: time.Duration(w.BackoffMax),
		Concurrency: w.Concurrency, ClaimIdle: time.Duration(w.ClaimIdle), MaxDeadLetters: w.MaxDeadLetters,
	}
	if w.Retries != nil {
		c.Attempts = *w.Retries + 1
	}
	return c
}

func (c Config) validateRequests(p *problems) {
	r := c.Request
	switch pre := r.ReplyPrefix; {
	case pre == "":
		p.add("request.reply_prefix", "must not be empty")
	case !strings.HasSuffix(pre, "/"):
		p.add("request.reply_prefix", "%q must end with /", pre)
	case strings.HasPrefix(pre, "$share/"):
		p.add("request.reply_prefix", "%q must not be a shared subscription", pre)
	default:
		if err := topic.ValidateName(pre + "x"); err != nil {
			p.add("request.reply_prefix", "%q: %v", pre, err)
		}
	}
	okT := checkPositive(p, "request.timeout", r.Timeout)
	okM := checkPositive(p, "request.max_timeout", r.MaxTimeout)
	if okT && okM && r.Timeout > r.MaxTimeout {
		p.add("request.timeout", "%s is longer than request.max_timeout %s", r.Timeout, r.MaxTimeout)
	}

	names := map[string]int{}
	for i, w := range c.Webhooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case w.Name == "":
			p.add(key+".name", "missing; every webhook needs a unique name")
		case webhook.CheckName(w.Name) != nil:
			p.add(key+".name", "%q must be 1 to 64 of A-Z, a-z, 0-9, _ and -", w.Name)
		default:
			if j, dup := names[w.Name]; dup {
				p.add(key+".name", "%q is already the name of webhooks[%d]", w.Name, j)
			} else {
				names[w.Name] = i
			}
		}
		if len(w.Filters) == 0 {
			p.add(key+".filters", "needs at least one topic filter")
		}
		for j, f := range w.Filters {
			if err := topic.ValidateFilter(f); err != nil {
				p.add(fmt.Sprintf("%s.filters[%d]", key, j), "%q: %v", f, err)
			} else if !c.bridges(f) {
				p.add(fmt.Sprintf("%s.filters[%d]", key, j), "%q matches no bridged topic, so it would never deliver anything", f)
			}
		}
		if err := webhook.CheckURL(w.URL); err != nil {
			p.add(key+".url", "%v", err)
		}
		for h, v := range w.Headers {
			if err := webhook.CheckHeader(h); err != nil {
				p.add(key+".headers", "%v", err)
			} else if strings.ContainsAny(v, "\r\n") {
				p.add(key+".headers", "the value of %q must be one line", h)
			}
		}
		switch w.Body {
		case "", webhook.BodyEnvelope, webhook.BodyRaw:
		default:
			p.add(key+".body", "%q is not one of envelope, raw", w.Body)
		}
		if w.Secret != "" {
			if _, err := webhook.ParseSecret(w.Secret); err != nil {
				k := key + ".secret"
				if w.SecretFile != "" {
					k = key + ".secret_file"
				}
				p.add(k, "%v", err)
			}
		}
		for k, d := range map[string]Duration{".timeout": w.Timeout, ".backoff_min": w.BackoffMin, ".backoff_max": w.BackoffMax, ".claim_idle": w.ClaimIdle} {
			if d < 0 {
				p.add(key+k, "must not be negative, got %s", d)
			}
		}
		if w.Retries != nil && (*w.Retries < 0 || *w.Retries > 100) {
			p.add(key+".retries", "must be between 0 and 100, got %d", *w.Retries)
		}
		if w.Concurrency < 0 || w.Concurrency > 1000 {
			p.add(key+".concurrency", "must be between 1 and 1000 (0 for the default), got %d", w.Concurrency)
		}
		if w.MaxDeadLetters < 0 {
			p.add(key+".max_dead_letters", "must not be negative, got %d", w.MaxDeadLetters)
		}
		eff := func(d Duration, def time.Duration) time.Duration {
			if d == 0 {
				return def
			}
			return time.Duration(d)
		}
		timeout, idle := eff(w.Timeout, webhook.DefaultTimeout), eff(w.ClaimIdle, webhook.DefaultClaimIdle)
		if w.Timeout >= 0 && w.ClaimIdle >= 0 && idle <= timeout {
			p.add(key+".claim_idle", "%s must be longer than the timeout %s", idle, timeout)
		}
		bmin := eff(w.BackoffMin, webhook.DefaultBackoffMin)
		if bmax := eff(w.BackoffMax, max(webhook.DefaultBackoffMax, bmin)); w.BackoffMax > 0 && bmax < bmin {
			p.add(key+".backoff_max", "%s is less than backoff_min %s", bmax, bmin)
		}
	}
}

// bridges reports whether filter can match a topic some broker bridges.
func (c Config) bridges(filter string) bool {
	topics := c.MQTT.Topics
	for _, b := range c.MQTT.Brokers {
		topics = append(topics[:len(topics):len(topics)], b.Topics...)
	}
	for _, t := range topics {
		if topic.ValidateFilter(t) == nil && topic.Overlap(t, filter) {
			return true
		}
	}
	return false
}

// resolveWebhookSecrets reads every webhooks[].secret_file into secret.
func resolveWebhookSecrets(c *Config, origins map[string]string) error {
	p := &problems{origins: origins}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		key := fmt.Sprintf("webhooks[%d].secret", i)
		switch {
		case w.SecretFile == "":
		case w.Secret != "":
			p.add(key+"_file", "set together with %s; set one of them", key)
		default:
			if s, ok := secretFile(p, key+"_file", w.SecretFile); ok {
				w.Secret = strings.TrimSpace(s)
			}
		}
	}
	return p.err()
}

// resolveWebhookPaths makes relative secret files set in the YAML file
// relative to its directory.
func resolveWebhookPaths(c *Config, origins map[string]string, dir string) {
	for i := range c.Webhooks {
		f := &c.Webhooks[i].SecretFile
		if _, fromFile := origins[fmt.Sprintf("webhooks[%d].secret_file", i)]; fromFile && *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
}

// redacted hides the secret and the header values.
func (w Webhook) redacted() Webhook {
	w.Secret = redactSecret(w.Secret)
	w.Filters = append([]string(nil), w.Filters...)
	if w.Headers != nil {
		h := make(map[string]string, len(w.Headers))
		for k := range w.Headers {
			h[k] = redactedMark
		}
		w.Headers = h
	}
	return w
}

func redactWebhooks(ws []Webhook) []Webhook {
	if ws == nil {
		return nil
	}
	out := make([]Webhook, len(ws))
	for i, w := range ws {
		out[i] = w.redacted()
	}
	return out
}

// String renders w as YAML with its secret and header values redacted.
func (w Webhook) String() string { return yamlString(w.redacted()) }

// GoString is String.
func (w Webhook) GoString() string { return w.String() }
