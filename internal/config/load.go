package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvConfig names the YAML file, like --config.
const EnvConfig = "MQTTBRIDGE_CONFIG"

// setting is one key that flags and/or the environment can set. One table
// drives the flags, the environment and the help, so they cannot drift.
type setting struct {
	key  string // as in YAML
	flag string // without dashes; "" for none
	env  string // "" for none
	arg  string // the value's name in the help
	help string
	set  func(c *Config, v string) error
}

var settings = []setting{
	{key: "http.addr", flag: "http-addr", env: "MQTTBRIDGE_HTTP_ADDR", arg: "HOST:PORT",
		help: `HTTP listen address (default ":8080")`,
		set:  func(c *Config, v string) error { c.HTTP.Addr = v; return nil }},
	{key: "http.max_payload", env: "MQTTBRIDGE_MAX_PAYLOAD", arg: "SIZE",
		help: `largest accepted payload: bytes, or with a unit B, KiB, MiB, GiB, kB, MB, GB (default "1MiB")`,
		set: func(c *Config, v string) error {
			n, err := ParseByteSize(v)
			c.HTTP.MaxPayload = n
			return err
		}},
	{key: "mqtt.url", flag: "mqtt-url", env: "MQTTBRIDGE_MQTT_URL", arg: "URL",
		help: `the one upstream broker, mqtt://, mqtts://, ws:// or wss:// (default: none, run the embedded broker)`,
		set:  func(c *Config, v string) error { c.MQTT.URL = v; return nil }},
	{key: "mqtt.username", flag: "mqtt-username", env: "MQTTBRIDGE_MQTT_USERNAME", arg: "NAME",
		help: `user name for --mqtt-url`,
		set:  func(c *Config, v string) error { c.MQTT.Username = v; return nil }},
	{key: "mqtt.password", env: "MQTTBRIDGE_MQTT_PASSWORD", arg: "PASSWORD",
		help: "password for --mqtt-url; there is no flag, because other users can read\n" +
			"a command line (ps, /proc) and shells keep it in their history",
		set: func(c *Config, v string) error { c.MQTT.Password = v; return nil }},
	{key: "mqtt.topics", flag: "topics", env: "MQTTBRIDGE_TOPICS", arg: "FILTERS",
		help: `comma-separated MQTT filters bridged from --mqtt-url or the embedded broker (default "#")`,
		set:  func(c *Config, v string) error { c.MQTT.Topics = splitTopics(v); return nil }},
	{key: "embedded_mqtt.addr", flag: "embedded-mqtt-addr", env: "MQTTBRIDGE_EMBEDDED_MQTT_ADDR", arg: "HOST:PORT",
		help: `TCP listener of the embedded broker, used when no broker is configured (default "127.0.0.1:11883")`,
		set:  func(c *Config, v string) error { c.Embedded.Addr = v; return nil }},
	{key: "redis.url", flag: "redis-url", env: "MQTTBRIDGE_REDIS_URL", arg: "URL",
		help: "Redis store, redis:// or rediss://, password allowed in the URL (default: none, in-memory store);\n" +
			"with Sentinel or Cluster a URL without host (rediss://:password@/0) gives credentials, database and TLS",
		set: func(c *Config, v string) error { c.Redis.URL = v; return nil }},
	{key: "redis.password", env: "MQTTBRIDGE_REDIS_PASSWORD", arg: "PASSWORD",
		help: "password for --redis-url (instead of one in the URL); there is no flag, for the reason above",
		set:  func(c *Config, v string) error { c.Redis.Password = v; return nil }},
	{key: "auth.jwt.hmac_keys", env: "MQTTBRIDGE_JWT_HMAC_KEY", arg: "SECRET",
		help: "the HMAC secret of HS256/384/512 tokens, at least 32 bytes (or auth.jwt.hmac_key_files)",
		set:  func(c *Config, v string) error { c.Auth.JWT.HMACKeys = []string{v}; return nil }},
	{key: "redis.sentinel.addrs", flag: "redis-sentinel-addrs", env: "MQTTBRIDGE_REDIS_SENTINEL_ADDRS", arg: "HOST:PORT,...",
		help: `Redis Sentinel: comma-separated sentinels; with --redis-sentinel-master (default: none)`,
		set:  func(c *Config, v string) error { c.Redis.Sentinel.Addrs = splitTopics(v); return nil }},
	{key: "redis.sentinel.master_name", flag: "redis-sentinel-master", env: "MQTTBRIDGE_REDIS_SENTINEL_MASTER", arg: "NAME",
		help: `Redis Sentinel: the name the sentinels monitor the master under`,
		set:  func(c *Config, v string) error { c.Redis.Sentinel.MasterName = v; return nil }},
	{key: "redis.sentinel.password", env: "MQTTBRIDGE_REDIS_SENTINEL_PASSWORD", arg: "PASSWORD",
		help: "password of the sentinels themselves, when they require one (the master's is MQTTBRIDGE_REDIS_PASSWORD)",
		set:  func(c *Config, v string) error { c.Redis.Sentinel.Password = v; return nil }},
	{key: "redis.cluster.addrs", flag: "redis-cluster-addrs", env: "MQTTBRIDGE_REDIS_CLUSTER_ADDRS", arg: "HOST:PORT,...",
		help: `Redis Cluster: comma-separated nodes to start from (default: none)`,
		set:  func(c *Config, v string) error { c.Redis.Cluster.Addrs = splitTopics(v); return nil }},
	{key: "redis.key_prefix", flag: "redis-key-prefix", env: "MQTTBRIDGE_REDIS_KEY_PREFIX", arg: "PREFIX",
		help: `prefix of every Redis key (default "mqttbridge:")`,
		set:  func(c *Config, v string) error { c.Redis.KeyPrefix = v; return nil }},
	{key: "instance_id", flag: "instance-id", env: "MQTTBRIDGE_INSTANCE_ID", arg: "ID",
		help: `this instance's name in MQTT client ids, [A-Za-z0-9_-]{1,32} (default: 8 random hex characters)`,
		set:  func(c *Config, v string) error { c.InstanceID = v; return nil }},
	{key: "log_level", flag: "log-level", env: "MQTTBRIDGE_LOG_LEVEL", arg: "LEVEL",
		help: `debug, info, warn or error (default "info")`,
		set:  func(c *Config, v string) error { c.LogLevel = v; return nil }},
	{key: "log_format", flag: "log-format", env: "MQTTBRIDGE_LOG_FORMAT", arg: "FORMAT",
		help: `text or json (default "text")`,
		set:  func(c *Config, v string) error { c.LogFormat = v; return nil }},
	{key: "tracing.otlp_endpoint", flag: "tracing-otlp-endpoint", env: "MQTTBRIDGE_TRACING_OTLP_ENDPOINT", arg: "URL",
		help: `OTLP/HTTP receiver of traces, e.g. http://otel-collector:4318 (default: none, tracing off)`,
		set:  func(c *Config, v string) error { c.Tracing.OTLPEndpoint = v; return nil }},
	{key: "tracing.sample_ratio", env: "MQTTBRIDGE_TRACING_SAMPLE_RATIO", arg: "RATIO",
		help: `share of new traces recorded, 0 to 1 (default 1)`,
		set: func(c *Config, v string) error {
			r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("want a number from 0 to 1, got %q", v)
			}
			c.Tracing.SampleRatio = r
			return nil
		}},
	{key: "tracing.service_name", env: "MQTTBRIDGE_TRACING_SERVICE_NAME", arg: "NAME",
		help: `service.name of the spans (default "mqttbridge")`,
		set:  func(c *Config, v string) error { c.Tracing.ServiceName = v; return nil }},
	{key: "tracing.headers", env: "MQTTBRIDGE_TRACING_HEADERS", arg: "NAME=VALUE,...",
		help: "headers of every trace export request, as OTEL_EXPORTER_OTLP_HEADERS writes them\n" +
			"(values percent-encoded); secrets, so there is no flag",
		set: func(c *Config, v string) error {
			h, err := parseHeaderList(v)
			c.Tracing.Headers = h
			return err
		}},
}

// splitTopics splits a comma-separated list, trimming spaces around each
// filter. Empty items are kept, so validation reports them.
func splitTopics(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// Usage is the help text of the mqttbridge command.
func Usage() string {
	var b strings.Builder
	b.WriteString(`Usage: mqttbridge [flags]
       mqttbridge COMMAND [flags]

mqttbridge bridges MQTT brokers to HTTP, Server-Sent Events and WebSocket.
With no configuration at all it runs an embedded MQTT broker and an
in-memory store.

Commands (each takes -h):
  config check  load the configuration as the server would, print it with
                secrets redacted, exit 2 when it is invalid
  key           print a new random API key and its auth.api_keys entry
  token         print an HS256 JWT signed with the configured secret
  help          print this help

Settings come from, highest precedence first: flags, MQTTBRIDGE_*
environment variables, the YAML file, defaults. An empty environment
variable counts as unset. Every setting, including those without a flag or
variable (several brokers, TLS, timeouts, limits), can be set in the file;
mqttbridge.example.yaml lists and explains every key. Both -flag and
--flag work.

Flags, each with its environment variable and YAML key:
`)
	row := func(flagPart, env, key, help string) {
		fmt.Fprintf(&b, "  %s\n", flagPart)
		var where []string
		if env != "" {
			where = append(where, env)
		}
		if key != "" {
			where = append(where, "YAML "+key)
		}
		if len(where) > 0 {
			fmt.Fprintf(&b, "        %s\n", strings.Join(where, ", "))
		}
		for line := range strings.SplitSeq(help, "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
	}
	row("--config PATH", EnvConfig, "", "YAML configuration file; it must exist when given (default: none)")
	for _, s := range settings {
		if s.flag != "" {
			row("--"+s.flag+" "+s.arg, s.env, s.key, s.help)
		}
	}
	row("-h, --help", "", "", "print this help and exit")
	b.WriteString("\nEnvironment only:\n")
	for _, s := range settings {
		if s.flag == "" && s.env != "" {
			row(s.env+"="+s.arg, "", s.key, s.help)
		}
	}
	return b.String()
}

// Load builds the configuration from the command-line arguments (without
// the program name), the environment (read through getenv, usually
// os.Getenv; nil reads nothing) and the YAML file they name, over the
// defaults, and validates it.
//
// For -h or --help it returns flag.ErrHelp; print Usage. Every other
// problem is a *ValidationError, all of them joined with errors.Join.
func Load(args []string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs := flag.NewFlagSet("mqttbridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	configFlag := fs.String("config", "", "")
	flagValues := make(map[string]*string, len(settings))
	for _, s := range settings {
		if s.flag != "" {
			flagValues[s.flag] = fs.String(s.flag, "", s.help)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		msg := err.Error() + " (see --help)"
		if strings.Contains(msg, "-mqtt-password") {
			msg = "there is no --mqtt-password flag, because other users can read a command line; set MQTTBRIDGE_MQTT_PASSWORD"
		}
		return Config{}, &ValidationError{Source: "command line", Message: msg}
	}
	if fs.NArg() > 0 {
		return Config{}, &ValidationError{Source: "command line", Message: fmt.Sprintf("unexpected argument %q; mqttbridge takes flags only (see --help)", fs.Arg(0))}
	}
	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })

	cfg := Default()
	origins := map[string]string{}
	var errs []error

	path, pathSource := *configFlag, "--config"
	if !setFlags["config"] {
		path, pathSource = getenv(EnvConfig), EnvConfig
	}
	if setFlags["config"] || path != "" {
		if err := loadFile(&cfg, origins, path, pathSource); err != nil {
			errs = append(errs, err)
		}
	}

	for _, s := range settings {
		if v := getenv(s.env); s.env != "" && v != "" {
			errs = appendSet(errs, &cfg, origins, s, v, s.env)
		}
	}
	for _, s := range settings {
		if s.flag != "" && setFlags[s.flag] {
			errs = appendSet(errs, &cfg, origins, s, *flagValues[s.flag], "--"+s.flag)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}

	// mqtt.topics defaults to "#" only where it is used.
	if _, set := origins["mqtt.topics"]; !set && len(cfg.MQTT.Brokers) > 0 {
		cfg.MQTT.Topics = nil
	}
	cfg.LogLevel = strings.ToLower(cfg.LogLevel)
	cfg.LogFormat = strings.ToLower(cfg.LogFormat)
	if err := resolveWebhookSecrets(&cfg, origins); err != nil {
		return Config{}, err
	}
	if err := resolveSecrets(&cfg, origins); err != nil {
		return Config{}, err
	}
	if err := resolveTracingHeaders(&cfg, origins); err != nil {
		return Config{}, err
	}

	if err := cfg.validate(origins); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func appendSet(errs []error, c *Config, origins map[string]string, s setting, v, source string) []error {
	for k := range origins { // the file's positions of list items no longer apply
		if strings.HasPrefix(k, s.key+"[") {
			delete(origins, k)
		}
	}
	origins[s.key] = source
	if err := s.set(c, v); err != nil {
		errs = append(errs, &ValidationError{Key: s.key, Source: source, Message: err.Error()})
	}
	return errs
}

// loadFile decodes the YAML file at path over c, recording in origins
// where each key was set ("path:line"). Unknown keys, values of the wrong
// type and syntax errors are ValidationErrors, joined.
func loadFile(c *Config, origins map[string]string, path, pathSource string) error {
	if path == "" {
		return &ValidationError{Key: "config file", Source: pathSource, Message: "empty path"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return &ValidationError{Key: "config file", Source: pathSource, Message: err.Error()}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // an empty file: all defaults
			return nil
		}
		return yamlSyntaxError(path, err, data)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return yamlSyntaxError(path, err, nil)
		}
		return &ValidationError{Source: fmt.Sprintf("%s:%d", path, extra.Line), Message: "a second YAML document; the file must hold one"}
	}

	d := &fileDecoder{path: path, origins: origins, active: map[*yaml.Node]bool{}}
	root := doc.Content[0]
	d.decodeStruct(root, reflect.ValueOf(c).Elem(), "")
	if err := errors.Join(d.errs...); err != nil {
		return err
	}
	// A final strict decode, so nothing the walk above let through can
	// slip past yaml.v3's own checks.
	check := Default()
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&check); err != nil {
		return yamlSyntaxError(path, err, nil)
	}
	resolveTLSPaths(c, origins, filepath.Dir(path))
	resolveSecurityPaths(c, origins, filepath.Dir(path))
	resolveWebhookPaths(c, origins, filepath.Dir(path))
	resolveTracingPaths(c, origins, filepath.Dir(path))
	return nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): `)

// yamlSyntaxError makes "yaml: line 3: msg" into "path:3: msg". yaml.v3
// names the line where the enclosing block began, not the one that broke
// it (a key indented one space too little is reported at its parent); with
// the document's data, the line is the first whose prefix of the document
// fails with the same message.
func yamlSyntaxError(path string, err error, data []byte) error {
	msg := err.Error()
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return &ValidationError{Source: path, Message: msg}
	}
	line, problem := m[1], msg[len(m[0]):]
	lines := bytes.SplitAfter(data, []byte("\n"))
	for k := 1; k < len(lines); k++ {
		var n yaml.Node
		perr := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		if pm := yamlLineRe.FindStringSubmatch(fmt.Sprint(perr)); pm != nil && perr.Error()[len(pm[0]):] == problem {
			line = strconv.Itoa(k)
			break
		}
	}
	return &ValidationError{Source: path + ":" + line, Message: problem}
}

// resolveTLSPaths makes relative TLS file paths set in the file relative
// to the file's directory.
func resolveTLSPaths(c *Config, origins map[string]string, dir string) {
	fix := func(key string, p *string) {
		if *p == "" || filepath.IsAbs(*p) {
			return
		}
		if _, fromFile := origins[key]; fromFile {
			*p = filepath.Join(dir, *p)
		}
	}
	fixTLS := func(prefix string, t *TLS) {
		fix(prefix+".ca_file", &t.CAFile)
		fix(prefix+".cert_file", &t.CertFile)
		fix(prefix+".key_file", &t.KeyFile)
	}
	fixTLS("mqtt.tls", &c.MQTT.TLS)
	for i := range c.MQTT.Brokers {
		fixTLS(fmt.Sprintf("mqtt.brokers[%d].tls", i), &c.MQTT.Brokers[i].TLS)
	}
}

// fileDecoder walks the YAML tree along the Config struct, so that every
// unknown key and every bad value is reported with its full key and line,
// and every key set is recorded in origins.
type fileDecoder struct {
	path    string
	origins map[string]string
	errs    []error
	active  map[*yaml.Node]bool // mappings being walked, to catch alias cycles
	visits  int                 // mappings walked, to bound alias expansion
}

// maxVisits bounds the mappings walked, so that aliases cannot make a small
// file expand into an exponential walk. Real files need a few dozen.
const maxVisits = 10000

func (d *fileDecoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &ValidationError{Key: key, Source: d.pos(n), Message: fmt.Sprintf(format, args...)})
}

func (d *fileDecoder) pos(n *yaml.Node) string { return d.path + ":" + strconv.Itoa(n.Line) }

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// yamlFields maps the yaml tag names of struct type t to field indexes.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	idx := map[string]int{}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" && t.Field(i).IsExported() {
			idx[name] = i
			names = append(names, name)
		}
	}
	return idx, names
}

func (d *fileDecoder) decodeStruct(n *yaml.Node, v reflect.Value, prefix string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) {
		return
	}
	if d.active[n] {
		d.fail(n, prefix, "an alias refers to a mapping that contains it")
		return
	}
	if d.visits++; d.visits > maxVisits {
		if d.visits == maxVisits+1 {
			d.fail(n, prefix, "aliases expand to more than %d mappings", maxVisits)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		what := "the file"
		if prefix != "" {
			what = prefix
		}
		d.fail(n, prefix, "want a mapping of keys to values for %s, got %s", what, nodeKind(n))
		return
	}
	d.active[n] = true
	defer delete(d.active, n)
	fields, names := yamlFields(v.Type())
	// Merged mappings ("<<: *base") first, so the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "<<" && n.Content[i].ShortTag() == "!!merge" {
			val := n.Content[i+1]
			for val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			if val.Kind == yaml.SequenceNode {
				for _, m := range val.Content {
					d.decodeStruct(m, v, prefix)
				}
			} else {
				d.decodeStruct(val, v, prefix)
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, val := n.Content[i], n.Content[i+1]
		if kn.Value == "<<" && kn.ShortTag() == "!!merge" {
			continue
		}
		key := joinKey(prefix, kn.Value)
		fi, ok := fields[kn.Value]
		if kn.Kind != yaml.ScalarNode || !ok {
			where := "at the top level"
			if prefix != "" {
				where = "in " + prefix
			}
			d.fail(kn, key, "unknown key (known %s: %s)", where, strings.Join(names, ", "))
			continue
		}
		for val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		if isNull(val) { // "key:" with no value keeps the default
			continue
		}
		d.origins[key] = d.pos(kn)
		d.decodeValue(val, v.Field(fi), key)
	}
}

func (d *fileDecoder) decodeValue(n *yaml.Node, fv reflect.Value, key string) {
	switch {
	case fv.Kind() == reflect.Struct:
		d.decodeStruct(n, fv, key)
		return
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list, got %s", nodeKind(n))
			return
		}
		s := reflect.MakeSlice(fv.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			d.origins[k] = d.pos(item)
			d.decodeStruct(item, s.Index(i), k)
		}
		fv.Set(s)
		return
	case fv.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			d.origins[fmt.Sprintf("%s[%d]", key, i)] = d.pos(item)
		}
	}
	// A leaf: decode into a fresh value so a failure changes nothing.
	tmp := reflect.New(fv.Type())
	if err := n.Decode(tmp.Interface()); err != nil {
		d.fail(n, key, "%s", leafError(err, fv.Type(), n))
		return
	}
	fv.Set(tmp.Elem())
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// leafError explains a failed decode of a plain value. It quotes the value
// only for scalars of types that cannot hold a password.
func leafError(err error, t reflect.Type, n *yaml.Node) string {
	if t == durationType || t == byteSizeType {
		return err.Error() // our own UnmarshalYAML messages
	}
	want := map[reflect.Kind]string{
		reflect.Int:    "an integer",
		reflect.Bool:   "true or false",
		reflect.String: "a string",
		reflect.Slice:  "a list of strings",
	}[t.Kind()]
	if want == "" {
		return err.Error()
	}
	if n.Kind == yaml.ScalarNode && t.Kind() != reflect.String {
		return fmt.Sprintf("want %s, got %q", want, n.Value)
	}
	return fmt.Sprintf("want %s, got %s", want, nodeKind(n))
}
