package config

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Tracing configures OpenTelemetry traces, exported over OTLP/HTTP. It is
// off unless otlp_endpoint is set; then every HTTP request gets a server
// span, every publish a producer span whose W3C trace context travels to
// devices in the MQTT user property traceparent, a request's span links to
// the reply's traceparent, and an ingested message that carries one gets a
// consumer span in the device's trace (docs/operations.md, Tracing).
type Tracing struct {
	// OTLPEndpoint is the OTLP/HTTP receiver, http:// or https://, e.g.
	// "http://otel-collector:4318" (an OpenTelemetry Collector, Jaeger or
	// Grafana Tempo). Without a path spans go to /v1/traces; a URL with a
	// path is used as given. Empty: tracing is off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// Headers are added to every export request (an API key, say); their
	// values are secrets, never logged or printed. Prefer HeadersFile, one
	// "Name: value" per line, or MQTTBRIDGE_TRACING_HEADERS ("Name=value,...",
	// values percent-encoded); Load reads them into Headers.
	Headers     map[string]string `yaml:"headers"`
	HeadersFile string            `yaml:"headers_file"`
	// SampleRatio is the share of new traces that are recorded, 0 to 1.
	// A request that arrives with a trace context (a traceparent header or
	// user property) follows that context's sampled flag instead. Default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans. Default "mqttbridge".
	ServiceName string `yaml:"service_name"`
	// BatchTimeout is the longest a finished span waits before it is
	// exported; spans still waiting are exported at shutdown. Default 5s.
	BatchTimeout Duration `yaml:"batch_timeout"`
}

// Enabled reports whether traces are recorded and exported.
func (t Tracing) Enabled() bool { return t.OTLPEndpoint != "" }

// ExportURL is the URL spans are sent to: OTLPEndpoint, with the path
// /v1/traces when it has none.
func (t Tracing) ExportURL() string {
	u, err := url.Parse(t.OTLPEndpoint)
	if err != nil || t.OTLPEndpoint == "" {
		return t.OTLPEndpoint
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String()
}

// defaultTracing fills the defaults of the section in this file.
func defaultTracing(c *Config) {
	c.Tracing = Tracing{SampleRatio: 1, ServiceName: "mqttbridge", BatchTimeout: Duration(5 * time.Second)}
}

// parseHeaderList parses "Name=value,Name2=value2" with percent-encoded
// values. Errors never show a value.
func parseHeaderList(v string) (map[string]string, error) {
	out := map[string]string{}
	for i, item := range strings.Split(v, ",") {
		name, value, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("item %d: want Name=value", i+1)
		}
		dec, err := url.PathUnescape(value)
		if err != nil {
			return nil, fmt.Errorf("item %d (%s): the value is not correctly percent-encoded", i+1, name)
		}
		out[name] = strings.TrimSpace(dec)
	}
	return out, nil
}

// parseHeaderFile parses one "Name: value" per line; blank lines and lines
// starting with # are skipped. Errors never show a value.
func parseHeaderFile(data string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want \"Name: value\"", i+1)
		}
		out[name] = strings.TrimSpace(value)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no \"Name: value\" line")
	}
	return out, nil
}

// resolveTracingHeaders reads tracing.headers_file into tracing.headers.
func resolveTracingHeaders(c *Config, origins map[string]string) error {
	p := &problems{origins: origins}
	t := &c.Tracing
	switch {
	case t.HeadersFile == "":
	case len(t.Headers) > 0:
		p.add("tracing.headers_file", "set together with tracing.headers; set one of them")
	default:
		if s, ok := secretFile(p, "tracing.headers_file", t.HeadersFile); ok {
			h, err := parseHeaderFile(s)
			if err != nil {
				p.add("tracing.headers_file", "%q: %v", t.HeadersFile, err)
			}
			t.Headers = h
		}
	}
	return p.err()
}

// resolveTracingPaths makes a relative headers_file set in the YAML file
// relative to its directory.
func resolveTracingPaths(c *Config, origins map[string]string, dir string) {
	f := &c.Tracing.HeadersFile
	if _, fromFile := origins["tracing.headers_file"]; fromFile && *f != "" && !filepath.IsAbs(*f) {
		*f = filepath.Join(dir, *f)
	}
}

// exporterHeaders are set by the OTLP exporter itself.
var exporterHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Host", "User-Agent"}

func (c Config) validateTracing(p *problems) {
	t := c.Tracing
	if t.OTLPEndpoint != "" {
		checkOTLPEndpoint(p, "tracing.otlp_endpoint", t.OTLPEndpoint)
	} else if len(t.Headers) > 0 {
		p.add("tracing.headers", "only used with tracing.otlp_endpoint, which is not set")
	}
	for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
		switch {
		case !validHeaderName(name):
			p.add("tracing.headers", "header name %q is not valid", name)
		case slices.Contains(exporterHeaders, http.CanonicalHeaderKey(name)):
			p.add("tracing.headers", "header %q is set by the exporter", name)
		case strings.ContainsAny(t.Headers[name], "\r\n\x00"):
			p.add("tracing.headers", "the value of %q must be one line", name)
		}
	}
	if math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1 {
		p.add("tracing.sample_ratio", "must be from 0 to 1, got %g", t.SampleRatio)
	}
	if strings.TrimSpace(t.ServiceName) == "" {
		p.add("tracing.service_name", "must not be empty")
	}
	checkPositive(p, "tracing.batch_timeout", t.BatchTimeout)
}

// checkOTLPEndpoint checks an OTLP/HTTP URL. Messages never show the URL
// as written, which could hold a password.
func checkOTLPEndpoint(p *problems, key, raw string) {
	u, ok := parseURL(p, key, raw)
	if !ok {
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		if u.Opaque != "" || u.Scheme == "" {
			p.add(key, "%q is not a URL with a host; want e.g. http://otel-collector:4318", redactURL(raw))
		} else {
			p.add(key, "unsupported scheme %q (want http or https)", u.Scheme)
		}
		return
	}
	switch {
	case u.User != nil:
		p.add(key, "credentials in the URL are not supported; set tracing.headers (or tracing.headers_file)")
	case u.Hostname() == "":
		p.add(key, "%q has no host", redactURL(raw))
	case u.RawQuery != "" || u.Fragment != "":
		p.add(key, "%q: the exporter sends no query or fragment; give scheme, host, port and path only", redactURL(raw))
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.add(key, "port %q is not between 1 and 65535", port)
		}
	}
}

// validHeaderName admits an HTTP token (RFC 9110).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

// redacted hides the header values and a password in the endpoint.
func (t Tracing) redacted() Tracing {
	t.OTLPEndpoint = redactURL(t.OTLPEndpoint)
	if t.Headers != nil {
		h := make(map[string]string, len(t.Headers))
		for k := range t.Headers {
			h[k] = redactedMark
		}
		t.Headers = h
	}
	return t
}

// String renders t as YAML with the header values redacted.
func (t Tracing) String() string { return yamlString(t.redacted()) }

// GoString is String.
func (t Tracing) GoString() string { return t.String() }
