package webhook

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Body formats.
const (
	BodyEnvelope = "envelope" // the JSON message envelope, application/json
	BodyRaw      = "raw"      // the payload, with its content type and MQTT-* headers
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultAttempts       = 9 // the first and 8 retries
	DefaultBackoffMin     = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultConcurrency    = 8
	DefaultClaimIdle      = 30 * time.Second
	DefaultMaxDeadLetters = 10000
)

// SecretPrefix starts a Standard Webhooks secret; the rest is its base64.
const SecretPrefix = "whsec_"

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Config is one webhook. The comment of each field gives the default its
// zero value gets.
type Config struct {
	// Name identifies the webhook in URLs, logs and store keys;
	// [A-Za-z0-9_-]{1,64}. Required.
	Name string
	// Filters are the MQTT topic filters whose messages are delivered; at
	// least one.
	Filters []string
	// URL receives the POST requests: http or https. Required.
	URL string
	// Headers are added to every request (e.g. Authorization); they cannot
	// replace Content-Type or the webhook-* headers.
	Headers map[string]string
	// Body is BodyEnvelope (default) or BodyRaw.
	Body string
	// Secret signs every request: "whsec_" and the base64 of 24 to 64
	// random bytes. Empty: requests are not signed.
	Secret string
	// Timeout bounds one attempt, answer included; default 10s.
	Timeout time.Duration
	// Attempts is how many times a message is tried before it is
	// dead-lettered; default 9 (the first and 8 retries).
	Attempts int
	// BackoffMin and BackoffMax bound the wait before a retry: BackoffMin
	// (default 1s) after the first failure, doubling, at most BackoffMax
	// (default 5m), each wait shortened by up to half at random (jitter).
	BackoffMin, BackoffMax time.Duration
	// Concurrency is how many topics are delivered at once; messages of
	// one topic always go one at a time. Default 8.
	Concurrency int
	// ClaimIdle is the webhook's lease time, and how long the messages a
	// stopped instance left pending wait before another instance takes
	// them over; more than Timeout. Default 30s.
	ClaimIdle time.Duration
	// MaxDeadLetters bounds the dead-letter list (the oldest go); default
	// 10000.
	MaxDeadLetters int
}

// fill validates c and sets the defaults; it returns the decoded secret.
func (c *Config) fill() ([]byte, error) {
	bad := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("webhook %q: %s", c.Name, fmt.Sprintf(format, args...))
	}
	if err := CheckName(c.Name); err != nil {
		return bad("%v", err)
	}
	if len(c.Filters) == 0 {
		return bad("needs at least one filter")
	}
	for _, f := range c.Filters {
		if err := topic.ValidateFilter(f); err != nil {
			return bad("filter %q: %v", f, err)
		}
	}
	if err := CheckURL(c.URL); err != nil {
		return bad("%v", err)
	}
	for k := range c.Headers {
		if err := CheckHeader(k); err != nil {
			return bad("%v", err)
		}
	}
	switch c.Body {
	case "":
		c.Body = BodyEnvelope
	case BodyEnvelope, BodyRaw:
	default:
		return bad("body must be %q or %q, not %q", BodyEnvelope, BodyRaw, c.Body)
	}
	var key []byte
	if c.Secret != "" {
		var err error
		if key, err = ParseSecret(c.Secret); err != nil {
			return bad("%v", err)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, DefaultTimeout)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, max(DefaultBackoffMax, c.BackoffMin))
	def(&c.ClaimIdle, DefaultClaimIdle)
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxDeadLetters == 0 {
		c.MaxDeadLetters = DefaultMaxDeadLetters
	}
	switch {
	case c.Timeout < 0 || c.BackoffMin < 0 || c.ClaimIdle < 0:
		return bad("durations must not be negative")
	case c.BackoffMax < c.BackoffMin:
		return bad("BackoffMax %s is below BackoffMin %s", c.BackoffMax, c.BackoffMin)
	case c.ClaimIdle <= c.Timeout:
		return bad("ClaimIdle %s must be longer than Timeout %s", c.ClaimIdle, c.Timeout)
	case c.ClaimIdle < 100*time.Millisecond:
		return bad("ClaimIdle %s is below 100ms", c.ClaimIdle)
	case c.Attempts < 1, c.Concurrency < 1, c.MaxDeadLetters < 1:
		return bad("Attempts, Concurrency and MaxDeadLetters must be at least 1")
	}
	return key, nil
}

// CheckName reports why name cannot name a webhook.
func CheckName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("the name must be 1 to 64 of A-Z, a-z, 0-9, _ and -")
	}
	return nil
}

// CheckURL reports why raw is not an http or https URL with a host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return fmt.Errorf("the URL is required")
	case err != nil:
		return fmt.Errorf("the URL cannot be parsed")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("the URL must be http:// or https:// with a host")
	}
	return nil
}

// reserved are the headers a webhook's configured headers cannot set.
var reserved = []string{"Content-Type", "Content-Length", "Host", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}

// CheckHeader reports why name cannot be a configured header.
func CheckHeader(name string) error {
	canon := http.CanonicalHeaderKey(name)
	if name == "" || strings.ContainsAny(name, " \t\r\n:") {
		return fmt.Errorf("header name %q is not valid", name)
	}
	for _, r := range reserved {
		if canon == r {
			return fmt.Errorf("header %q is set by the bridge", name)
		}
	}
	return nil
}

// ParseSecret decodes a Standard Webhooks secret, "whsec_" and the
// standard base64 of 24 to 64 bytes. Errors never show the secret.
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("the secret must start with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("the secret is not %q and standard base64", SecretPrefix)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("the secret must hold 24 to 64 bytes, not %d", len(key))
	}
	return key, nil
}
