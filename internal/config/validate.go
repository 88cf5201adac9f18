package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// ValidationError is one problem with the configuration. Load and Validate
// return them joined with errors.Join, one per line; find one with
// errors.As. Messages never contain a password.
type ValidationError struct {
	// Key is the setting as written in YAML ("mqtt.brokers[1].url"), or ""
	// for a problem with the command line or the file as a whole.
	Key string
	// Source is where the value came from when known: "path:line" for the
	// file, "MQTTBRIDGE_HTTP_ADDR", "--http-addr", "command line".
	Source string
	// Message says what is wrong.
	Message string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	isEnvOrFlag := strings.HasPrefix(e.Source, "MQTTBRIDGE_") || strings.HasPrefix(e.Source, "--")
	if e.Source != "" && !isEnvOrFlag {
		b.WriteString(e.Source + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Message)
	if isEnvOrFlag {
		b.WriteString(" (from " + e.Source + ")")
	}
	return b.String()
}

// problems collects ValidationErrors; origins maps keys to sources.
type problems struct {
	origins map[string]string
	errs    []error
}

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &ValidationError{Key: key, Source: p.source(key), Message: fmt.Sprintf(format, args...)})
}

// source finds where key, or the nearest enclosing key, was set.
func (p *problems) source(key string) string {
	for k := key; k != ""; k = parentKey(k) {
		if s, ok := p.origins[k]; ok {
			return s
		}
	}
	return ""
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

func (p *problems) err() error { return errors.Join(p.errs...) }

var (
	instanceIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	brokerNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	clientIDRe   = regexp.MustCompile(`^[A-Za-z0-9_.-]{0,64}$`)
)

// maxPayloadLimit is the MQTT maximum packet size, rounded down.
const maxPayloadLimit = 256 * MiB

// Validate reports every problem of c, joined; nil when c can work. It
// reads the TLS files to check them.
func (c Config) Validate() error { return c.validate(nil) }

func (c Config) validate(origins map[string]string) error {
	p := &problems{origins: origins}

	if !instanceIDRe.MatchString(c.InstanceID) {
		p.add("instance_id", "%q must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -", c.InstanceID)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		p.add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		p.add("log_format", "%q is not one of text, json", c.LogFormat)
	}

	checkHostPort(p, "http.addr", c.HTTP.Addr)
	switch {
	case c.HTTP.MaxPayload <= 0:
		p.add("http.max_payload", "must be positive, got %d", int64(c.HTTP.MaxPayload))
	case c.HTTP.MaxPayload > maxPayloadLimit:
		p.add("http.max_payload", "%s is more than MQTT allows (%s)", c.HTTP.MaxPayload, maxPayloadLimit)
	}
	if c.HTTP.MaxBatch < 1 {
		p.add("http.max_batch", "must be at least 1, got %d", c.HTTP.MaxBatch)
	}
	checkPositive(p, "http.shutdown_timeout", c.HTTP.ShutdownTimeout)
	checkPositive(p, "http.max_wait", c.HTTP.MaxWait)
	checkPositive(p, "http.sse_heartbeat", c.HTTP.SSEHeartbeat)
	checkPositive(p, "http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	checkPositive(p, "http.read_timeout", c.HTTP.ReadTimeout)
	checkPositive(p, "http.idle_timeout", c.HTTP.IdleTimeout)
	if n := c.HTTP.MaxHeaderBytes; n < KiB || n > MiB {
		p.add("http.max_header_bytes", "must be from 1KiB to 1MiB, got %s", n)
	}
	c.validateWS(p)

	c.validateMQTT(p)

	checkHostPort(p, "embedded_mqtt.addr", c.Embedded.Addr)
	c.validateRedis(p)
	c.validateRedisPassword(p)
	c.validateSecurity(p)
	c.validateRequests(p)
	c.validateAlarms(p)
	c.validateMQTTProxy(p)
	c.validateTracing(p)
	return p.err()
}

func (c Config) validateMQTT(p *problems) {
	m := c.MQTT
	if m.URL != "" && len(m.Brokers) > 0 {
		p.add("mqtt.url", "set together with mqtt.brokers; use mqtt.url for one broker or mqtt.brokers for several, not both")
	}
	if m.URL != "" {
		checkBrokerURL(p, "mqtt", m.URL, m.TLS)
	} else {
		why := "only used with mqtt.url, which is not set (the embedded broker is used)"
		if len(m.Brokers) > 0 {
			why = "only used with mqtt.url; with mqtt.brokers set it on each broker"
		}
		if m.Username != "" {
			p.add("mqtt.username", "%s", why)
		}
		if m.Password != "" {
			p.add("mqtt.password", "%s", why)
		}
		if m.PasswordFile != "" {
			p.add("mqtt.password_file", "%s", why)
		}
		if !m.TLS.IsZero() {
			p.add("mqtt.tls", "%s", why)
		}
	}
	if len(m.Brokers) > 0 {
		if len(m.Topics) > 0 {
			p.add("mqtt.topics", "only used with mqtt.url or the embedded broker; with mqtt.brokers set topics on each broker")
		}
		c.validateBrokers(p)
	} else {
		checkTopics(p, "mqtt.topics", m.Topics)
	}

	if !clientIDRe.MatchString(m.ClientIDPrefix) {
		p.add("mqtt.client_id_prefix", "%q must be at most 64 characters of A-Z, a-z, 0-9, _, . and -", m.ClientIDPrefix)
	}
	switch k := time.Duration(m.Keepalive); {
	case k < time.Second || k > 65535*time.Second:
		p.add("mqtt.keepalive", "must be between 1s and 65535s, got %s", m.Keepalive)
	case k%time.Second != 0:
		p.add("mqtt.keepalive", "must be whole seconds, got %s", m.Keepalive)
	}
	checkPositive(p, "mqtt.connect_timeout", m.ConnectTimeout)
	checkPositive(p, "mqtt.publish_timeout", m.PublishTimeout)
	if checkPositive(p, "mqtt.session_expiry", m.SessionExpiry) && (m.SessionExpiry%Duration(time.Second) != 0 || m.SessionExpiry > Duration(0xFFFFFFFF*time.Second)) {
		p.add("mqtt.session_expiry", "must be whole seconds up to 4294967295s, got %s", m.SessionExpiry)
	}
	if checkPositive(p, "mqtt.ingest_lease", m.IngestLease) && m.IngestLease < Duration(time.Second) {
		p.add("mqtt.ingest_lease", "must be at least 1s, got %s", m.IngestLease)
	}
	okMin := checkPositive(p, "mqtt.reconnect_min", m.ReconnectMin)
	okMax := checkPositive(p, "mqtt.reconnect_max", m.ReconnectMax)
	if okMin && okMax && m.ReconnectMax < m.ReconnectMin {
		p.add("mqtt.reconnect_max", "%s is less than mqtt.reconnect_min %s", m.ReconnectMax, m.ReconnectMin)
	}
}

func (c Config) validateBrokers(p *problems) {
	names := map[string]int{}
	valid := make([][]bool, len(c.MQTT.Brokers)) // valid[i][j]: brokers[i].topics[j] is a valid filter
	for i, b := range c.MQTT.Brokers {
		key := fmt.Sprintf("mqtt.brokers[%d]", i)
		switch {
		case b.Name == "":
			p.add(key+".name", "missing; every broker needs a unique name")
		case !brokerNameRe.MatchString(b.Name):
			p.add(key+".name", "%q must be made of A-Z, a-z, 0-9, _ and -", b.Name)
		default:
			if j, dup := names[b.Name]; dup {
				p.add(key+".name", "%q is already the name of mqtt.brokers[%d]", b.Name, j)
			} else {
				names[b.Name] = i
			}
		}
		if b.URL == "" {
			p.add(key+".url", "missing")
		} else {
			checkBrokerURL(p, key, b.URL, b.TLS)
		}
		valid[i] = checkTopics(p, key+".topics", b.Topics)
	}

	// A topic matched by two brokers' filters would be bridged twice and
	// could not be routed on publish: each topic belongs to one broker.
	for i, a := range c.MQTT.Brokers {
		for j := i + 1; j < len(c.MQTT.Brokers); j++ {
			b := c.MQTT.Brokers[j]
			for x, fa := range a.Topics {
				for y, fb := range b.Topics {
					if valid[i][x] && valid[j][y] && topic.Overlap(fa, fb) {
						p.add(fmt.Sprintf("mqtt.brokers[%d].topics[%d]", i, x),
							"%q overlaps mqtt.brokers[%d].topics[%d] %q; a topic must be bridged by one broker only",
							fa, j, y, fb)
					}
				}
			}
		}
	}
}

// checkTopics checks a list of filters and reports which are valid.
func checkTopics(p *problems, key string, filters []string) []bool {
	valid := make([]bool, len(filters))
	if len(filters) == 0 {
		p.add(key, "needs at least one topic filter (\"#\" bridges every topic)")
		return valid
	}
	seen := map[string]int{}
	for i, f := range filters {
		k := fmt.Sprintf("%s[%d]", key, i)
		if err := topic.ValidateFilter(f); err != nil {
			p.add(k, "%q: %v", f, err)
			continue
		}
		if _, inner, shared := topic.IsShared(f); shared {
			p.add(k, "%q: a shared subscription would let other clients take messages the bridge must see; use %q", f, inner)
			continue
		}
		if j, dup := seen[f]; dup {
			p.add(k, "%q is already %s[%d]", f, key, j)
			continue
		}
		// A broker delivers a message once per matching subscription, so
		// overlapping filters would record every such message twice.
		for g, j := range seen {
			if topic.Overlap(f, g) {
				p.add(k, "%q overlaps %s[%d] %q; keep only the wider filter", f, key, j, g)
			}
		}
		seen[f] = i
		valid[i] = true
	}
	return valid
}

// checkBrokerURL checks prefix+".url" and prefix+".tls". Messages never
// show the URL as written, which could hold a password.
func checkBrokerURL(p *problems, prefix, raw string, t TLS) {
	key := prefix + ".url"
	u, ok := parseURL(p, key, raw)
	if !ok {
		return
	}
	if u.User != nil {
		p.add(key, "credentials in the URL are not supported; set %s.username and %s.password", prefix, prefix)
		return
	}
	scheme := strings.ToLower(u.Scheme)
	useTLS := false
	switch scheme {
	case "mqtt", "tcp", "ws":
	case "mqtts", "ssl", "wss":
		useTLS = true
	default:
		if u.Opaque != "" || scheme == "" {
			p.add(key, "%q is not a URL with a host; want mqtt://host:port (or mqtts://, ws://host/path, wss://host/path)", redactURL(raw))
		} else {
			p.add(key, "unsupported scheme %q (want mqtt, mqtts, ws or wss)", u.Scheme)
		}
		return
	}
	if u.Hostname() == "" {
		p.add(key, "%q has no host", redactURL(raw))
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.add(key, "port %q is not between 1 and 65535", port)
		}
	}
	if (scheme == "mqtt" || scheme == "mqtts" || scheme == "tcp" || scheme == "ssl") &&
		(u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "") {
		p.add(key, "%q: an %s URL takes no path, query or fragment (MQTT over WebSocket is ws:// or wss://)", redactURL(raw), scheme)
	}
	checkTLS(p, prefix+".tls", t, useTLS, scheme)
}

func checkTLS(p *problems, key string, t TLS, useTLS bool, scheme string) {
	if t.IsZero() {
		return
	}
	if !useTLS {
		p.add(key, "set, but the url scheme %q does not use TLS (use mqtts or wss)", scheme)
		return
	}
	if t.CAFile != "" {
		if pem, err := os.ReadFile(t.CAFile); err != nil {
			p.add(key+".ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.add(key+".ca_file", "no PEM certificate in %q", t.CAFile)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		p.add(key+".key_file", "missing; %s.cert_file needs it (both or neither)", key)
	case t.CertFile == "" && t.KeyFile != "":
		p.add(key+".cert_file", "missing; %s.key_file needs it (both or neither)", key)
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			p.add(key+".cert_file", "with key_file: %v", err)
		}
	}
}

// validateRedis checks the Redis deployment: redis.url alone, or
// redis.sentinel or redis.cluster with an optional host-less redis.url.
func (c Config) validateRedis(p *problems) {
	r := c.Redis
	sentinel, cluster := r.Sentinel.enabled(), r.Cluster.enabled()
	deployment := ""
	switch {
	case sentinel && cluster:
		p.add("redis.cluster", "set together with redis.sentinel; a deployment is one or the other")
	case sentinel:
		deployment = "redis.sentinel"
	case cluster:
		deployment = "redis.cluster"
	}
	if sentinel {
		if r.Sentinel.MasterName == "" {
			p.add("redis.sentinel.master_name", "missing; the name the sentinels monitor the master under (sentinel monitor <name> ...)")
		}
		if len(r.Sentinel.Addrs) == 0 {
			p.add("redis.sentinel.addrs", "missing; list the sentinels as host:port")
		}
		checkAddrs(p, "redis.sentinel.addrs", r.Sentinel.Addrs)
	} else {
		if r.Sentinel.Username != "" {
			p.add("redis.sentinel.username", "only used with redis.sentinel.addrs, which is not set")
		}
		if r.Sentinel.Password != "" {
			p.add("redis.sentinel.password", "only used with redis.sentinel.addrs, which is not set")
		}
	}
	if cluster {
		checkAddrs(p, "redis.cluster.addrs", r.Cluster.Addrs)
	}
	if r.URL != "" {
		checkRedisURL(p, "redis.url", r.URL, deployment, cluster && !sentinel)
	}
}

// checkAddrs checks a list of host:port addresses, each with a host and a
// port, none twice.
func checkAddrs(p *problems, key string, addrs []string) {
	seen := map[string]int{}
	for i, a := range addrs {
		k := fmt.Sprintf("%s[%d]", key, i)
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			p.add(k, "%q: want host:port, like \"10.0.0.1:6379\"", a)
			continue
		}
		if j, dup := seen[a]; dup {
			p.add(k, "%q is already %s[%d]", a, key, j)
			continue
		}
		seen[a] = i
	}
}

// checkRedisURL checks redis.url: with deployment "" (a single Redis) it
// needs a host; with "redis.sentinel" or "redis.cluster" it must have
// none, and on a cluster no database but 0.
func checkRedisURL(p *problems, key, raw, deployment string, cluster bool) {
	u, ok := parseURL(p, key, raw)
	if !ok {
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
	default:
		if u.Opaque != "" || u.Scheme == "" {
			p.add(key, "%q is not a URL with a host; want e.g. redis://localhost:6379/0", redactURL(raw))
		} else {
			p.add(key, "unsupported scheme %q (want redis or rediss)", u.Scheme)
		}
		return
	}
	switch {
	case deployment == "" && u.Hostname() == "":
		p.add(key, "%q has no host", redactURL(raw))
	case deployment != "" && u.Host != "":
		p.add(key, "has the host %q, but the servers are %s.addrs; leave the host out, e.g. rediss://:password@/0, to give only credentials, database and TLS", u.Host, deployment)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.add(key, "port %q is not between 1 and 65535", port)
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			p.add(key, "path %q is not a database number like /0", u.Path)
		} else if cluster && n != 0 {
			p.add(key, "database %d: Redis Cluster has only database 0", n)
		}
	}
}

// parseURL parses raw and reports why it cannot, without showing raw,
// which could hold a password.
func parseURL(p *problems, key, raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	switch {
	case err == nil && (u.User != nil || !strings.Contains(raw, "@")):
		return u, true
	case strings.Contains(raw, "@"):
		// Part of the user info was read as host, port or path, or the
		// parse error quotes part of it.
		p.add(key, "cannot be parsed (details hidden: they could show a password); percent-encode @, /, ?, # and %% in a user name or password")
	default:
		detail := "cannot be parsed"
		if ue, ok := errors.AsType[*url.Error](err); ok {
			detail = ue.Err.Error()
		}
		p.add(key, "not a valid URL: %s", detail)
	}
	return nil, false
}

func checkHostPort(p *problems, key, addr string) {
	const want = `want host:port, like ":8080" or "127.0.0.1:8080"`
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			p.add(key, "%q: %s (%s)", addr, ae.Err, want)
		} else {
			p.add(key, "%q: %s", addr, want)
		}
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(key, "%q: port must be a number from 0 to 65535", addr)
	}
}

func checkPositive(p *problems, key string, d Duration) bool {
	if d <= 0 {
		p.add(key, "must be a positive duration like \"10s\", got %s", d)
		return false
	}
	return true
}

func (c Config) validateWS(p *problems) {
	w := c.WS
	if w.ReadLimit < 1*KiB || w.ReadLimit > 256*MiB {
		p.add("ws.read_limit", "must be between 1KiB and 256MiB, got %d bytes", int64(w.ReadLimit))
	}
	if w.QueueMessages < 0 {
		p.add("ws.queue_messages", "must be 0 (no limit) or more, got %d", w.QueueMessages)
	}
	if w.MaxLag < 0 {
		p.add("ws.max_lag", "must be 0 (off) or more, got %s", w.MaxLag)
	}
	if w.QueueBytes < 1*KiB {
		p.add("ws.queue_bytes", "must be at least 1KiB, got %d bytes", int64(w.QueueBytes))
	}
	checkPositive(p, "ws.write_timeout", w.WriteTimeout)
	checkPositive(p, "ws.ping_interval", w.PingInterval)
	checkPositive(p, "ws.pong_timeout", w.PongTimeout)
	checkPositive(p, "ws.session_ttl", w.SessionTTL)
	if w.PongTimeout > 0 && w.PingInterval >= w.PongTimeout {
		p.add("ws.pong_timeout", "%s must be longer than ws.ping_interval %s", w.PongTimeout, w.PingInterval)
	}
	if w.MaxPending < 1 {
		p.add("ws.max_pending", "must be at least 1, got %d", w.MaxPending)
	}
	for i, o := range w.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			p.add(fmt.Sprintf("ws.allowed_origins[%d]", i), "%q must be an origin like https://app.example.com, or *", o)
		}
	}
	if c.History.Size < 1 {
		p.add("history.size", "must be at least 1, got %d", c.History.Size)
	}
	checkPositive(p, "history.age", c.History.Age)
}
