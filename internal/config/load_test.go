package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(cfg.InstanceID) {
		t.Errorf("instance_id = %q, want 8 random hex characters", cfg.InstanceID)
	}
	want := Config{
		InstanceID: cfg.InstanceID,
		LogLevel:   "info",
		LogFormat:  "text",
		HTTP: HTTP{
			Addr:            ":8080",
			MaxPayload:      1 << 20,
			MaxBatch:        100,
			ShutdownTimeout: Duration(10 * time.Second),
			MaxWait:         Duration(60 * time.Second),
			SSEHeartbeat:    Duration(15 * time.Second),
			TLS:             ServerTLS{ClientAuth: "optional", MinVersion: "1.2"},
			CORS:            CORS{MaxAge: Duration(10 * time.Minute)},

			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(30 * time.Second),
			IdleTimeout:       Duration(30 * time.Second),
			MaxHeaderBytes:    32 << 10,
		},
		MQTT: MQTT{
			Topics:         []string{"#"},
			ClientIDPrefix: "mqttbridge-",
			Keepalive:      Duration(30 * time.Second),
			ConnectTimeout: Duration(10 * time.Second),
			PublishTimeout: Duration(10 * time.Second),
			ReconnectMin:   Duration(100 * time.Millisecond),
			ReconnectMax:   Duration(10 * time.Second),
			SessionExpiry:  Duration(time.Hour),
			IngestLease:    Duration(5 * time.Second),
		},
		Embedded: Embedded{Addr: "127.0.0.1:11883"},
		Redis:    Redis{KeyPrefix: "mqttbridge:"},
		WS: WS{
			ReadLimit: 64 << 10, QueueMessages: 1024, QueueBytes: 8 << 20,
			WriteTimeout: Duration(10 * time.Second), PingInterval: Duration(25 * time.Second),
			PongTimeout: Duration(60 * time.Second), MaxPending: 1000, SessionTTL: Duration(5 * time.Minute),
		},
		History: History{Size: 10000, Age: Duration(time.Hour)},
		Auth:    Auth{TicketTTL: Duration(30 * time.Second), TicketsPerIdentity: 100, TicketRate: 10, TicketBurst: 20, PublicConsole: true, JWT: JWT{NameClaim: "sub", JWKSRefresh: Duration(15 * time.Minute)}},
		Limits: Limits{TopicLength: 65535, TopicLevels: 64, SubscriptionsPerConnection: 1000, ConnectionsPerIdentity: 100,
			PublishRate: 100, PublishBurst: 200, RequestRate: 10, RequestBurst: 20, ReadRate: 100, ReadBurst: 200},
		Request:   Request{ReplyPrefix: "mqttbridge/reply/", Timeout: Duration(10 * time.Second), MaxTimeout: Duration(time.Minute)},
		MQTTProxy: MQTTProxy{Enabled: true, Credentials: "broker", MaxPacketSize: MiB, IdleTimeout: Duration(5 * time.Minute)},
		Tracing:   Tracing{SampleRatio: 1, ServiceName: "mqttbridge", BatchTimeout: Duration(5 * time.Second)},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n%v\nwant:\n%v", cfg, want)
	}
	if !cfg.UsesEmbedded() || cfg.Brokers() != nil {
		t.Errorf("UsesEmbedded = %v, Brokers = %v; want the embedded broker", cfg.UsesEmbedded(), cfg.Brokers())
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestPrecedence sets each setting in every combination of file,
// environment and flag: flag beats env beats file beats default.
func TestPrecedence(t *testing.T) {
	type source struct{ file, env, flag string }
	settingsUnderTest := []struct {
		key      string // for the file: "a.b" becomes a nested mapping
		env      string
		flag     string // "" when there is none
		def      string
		vals     source
		get      func(Config) string
		fileYAML func(v string) string
	}{
		{key: "http.addr", env: "MQTTBRIDGE_HTTP_ADDR", flag: "http-addr", def: ":8080",
			vals: source{"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"},
			get:  func(c Config) string { return c.HTTP.Addr }},
		{key: "mqtt.url", env: "MQTTBRIDGE_MQTT_URL", flag: "mqtt-url", def: "",
			vals: source{"mqtt://file:1883", "mqtt://env:1883", "mqtt://flag:1883"},
			get:  func(c Config) string { return c.MQTT.URL }},
		{key: "redis.url", env: "MQTTBRIDGE_REDIS_URL", flag: "redis-url", def: "",
			vals: source{"redis://file:6379/0", "redis://env:6379/1", "redis://flag:6379/2"},
			get:  func(c Config) string { return c.Redis.URL }},
		{key: "redis.key_prefix", env: "MQTTBRIDGE_REDIS_KEY_PREFIX", flag: "redis-key-prefix", def: "mqttbridge:",
			vals: source{"f:", "e:", "g:"},
			get:  func(c Config) string { return c.Redis.KeyPrefix }},
		{key: "embedded_mqtt.addr", env: "MQTTBRIDGE_EMBEDDED_MQTT_ADDR", flag: "embedded-mqtt-addr", def: "127.0.0.1:11883",
			vals: source{":2001", ":2002", ":2003"},
			get:  func(c Config) string { return c.Embedded.Addr }},
		{key: "instance_id", env: "MQTTBRIDGE_INSTANCE_ID", flag: "instance-id", def: "",
			vals: source{"file", "env", "flag"},
			get:  func(c Config) string { return c.InstanceID }},
		{key: "log_level", env: "MQTTBRIDGE_LOG_LEVEL", flag: "log-level", def: "info",
			vals: source{"debug", "warn", "error"},
			get:  func(c Config) string { return c.LogLevel }},
		{key: "log_format", env: "MQTTBRIDGE_LOG_FORMAT", flag: "log-format", def: "text",
			vals: source{"json", "text", "json"},
			get:  func(c Config) string { return c.LogFormat }},
		{key: "mqtt.username", env: "MQTTBRIDGE_MQTT_USERNAME", flag: "mqtt-username", def: "",
			vals: source{"fileuser", "envuser", "flaguser"},
			get:  func(c Config) string { return c.MQTT.Username }},
		{key: "mqtt.topics", env: "MQTTBRIDGE_TOPICS", flag: "topics", def: "#",
			vals: source{"file/#", "env/#,env2/+", "flag/#, flag2/x"},
			get:  func(c Config) string { return strings.Join(c.MQTT.Topics, ",") },
			fileYAML: func(v string) string {
				return "mqtt:\n  topics: [" + strings.Join(strings.Split(v, ","), ", ") + "]\n"
			}},
		{key: "http.max_payload", env: "MQTTBRIDGE_MAX_PAYLOAD", def: "1MiB",
			vals: source{file: "2048", env: "512KiB"},
			get:  func(c Config) string { return c.HTTP.MaxPayload.String() }},
		{key: "mqtt.password", env: "MQTTBRIDGE_MQTT_PASSWORD", def: "",
			vals: source{file: "filepw", env: "envpw"},
			get:  func(c Config) string { return c.MQTT.Password }},
	}
	// Settings that need a broker to be valid get one from a flag the
	// setting under test does not touch.
	needsURL := map[string]bool{"mqtt.username": true, "mqtt.password": true}

	for _, s := range settingsUnderTest {
		for mask := range 8 {
			useFile, useEnv, useFlag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			if useFlag && s.flag == "" {
				continue
			}
			name := fmt.Sprintf("%s/file=%v,env=%v,flag=%v", s.key, useFile, useEnv, useFlag)
			t.Run(name, func(t *testing.T) {
				want := s.def
				environ := map[string]string{}
				var args []string
				file := "# empty\n"
				if useFile {
					want = s.vals.file
					if s.fileYAML != nil {
						file = s.fileYAML(s.vals.file)
					} else {
						file = nestedYAML(s.key, s.vals.file)
					}
				}
				if useEnv {
					want = s.vals.env
					environ[s.env] = s.vals.env
				}
				if useFlag {
					want = s.vals.flag
					args = append(args, "--"+s.flag+"="+s.vals.flag)
				}
				if needsURL[s.key] {
					args = append(args, "--mqtt-url=mqtt://broker:1883")
				}
				want = strings.ReplaceAll(want, ", ", ",")
				if s.key == "http.max_payload" && want == "2048" {
					want = "2KiB"
				}
				cfg, err := loadYAML(t, file, args, environ)
				if err != nil {
					t.Fatal(err)
				}
				got := s.get(cfg)
				if s.key == "instance_id" && want == "" {
					if len(got) != 8 {
						t.Errorf("instance_id = %q, want a random default", got)
					}
					return
				}
				if got != want {
					t.Errorf("%s = %q, want %q", s.key, got, want)
				}
			})
		}
	}
}

// nestedYAML writes "a.b: v" as a nested mapping.
func nestedYAML(key, v string) string {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i == len(parts)-1 {
			fmt.Fprintf(&b, " %q", v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestEmptyEnvIsUnset(t *testing.T) {
	cfg, err := loadYAML(t, "http:\n  addr: 127.0.0.1:9000\n", nil, map[string]string{
		"MQTTBRIDGE_HTTP_ADDR": "", "MQTTBRIDGE_INSTANCE_ID": "", "MQTTBRIDGE_MAX_PAYLOAD": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:9000" || cfg.InstanceID == "" || cfg.HTTP.MaxPayload != MiB {
		t.Errorf("empty variables changed the config: %v", cfg)
	}
}

func TestConfigPathPrecedence(t *testing.T) {
	dir := t.TempDir()
	fromFlag := writeFile(t, dir, "flag.yaml", "http:\n  addr: ':1'\n")
	fromEnv := writeFile(t, dir, "env.yaml", "http:\n  addr: ':2'\n")

	cfg, err := Load([]string{"--config", fromFlag}, env(map[string]string{EnvConfig: fromEnv}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":1" {
		t.Errorf("--config lost to MQTTBRIDGE_CONFIG: http.addr = %q", cfg.HTTP.Addr)
	}
	cfg, err = Load(nil, env(map[string]string{EnvConfig: fromEnv}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":2" {
		t.Errorf("MQTTBRIDGE_CONFIG not read: http.addr = %q", cfg.HTTP.Addr)
	}
}

func TestConfigFileProblems(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")

	_, err := Load([]string{"--config", missing}, nil)
	requireProblem(t, err, "config file", "nope.yaml", "--config")

	_, err = Load(nil, env(map[string]string{EnvConfig: missing}))
	requireProblem(t, err, "config file", "nope.yaml", "MQTTBRIDGE_CONFIG")

	_, err = Load([]string{"--config="}, nil)
	requireProblem(t, err, "config file", "empty path")

	// Syntax error: the position is reported.
	_, err = loadYAML(t, "http:\n  addr: ':1'\n bad: [\n", nil, nil)
	if ve := validationErrors(err); len(ve) != 1 || !strings.Contains(ve[0].Source, "mqttbridge.yaml:") {
		t.Errorf("syntax error = %v, want one problem with the file's position", err)
	}

	// The line named is the one that breaks the document, not where its
	// enclosing block began (yaml.v3 names line 2 for these).
	for doc, line := range map[string]string{
		"http:\n  addr: ':1'\n mqtt:\n  url: mqtt://b:1883\n":                 "3",
		"http:\n  addr: ':1'\nmqtt:\n  url: mqtt://b:1883\n    topics: [a]\n": "5",
	} {
		_, err = loadYAML(t, doc, nil, nil)
		if ve := validationErrors(err); len(ve) != 1 || !strings.HasSuffix(ve[0].Source, "mqttbridge.yaml:"+line) {
			t.Errorf("%q: %v, want the problem at line %s", doc, err, line)
		}
	}

	// Duplicate keys: yaml.v3's strict decode catches them.
	_, err = loadYAML(t, "http:\n  addr: ':1'\n  addr: ':2'\n", nil, nil)
	if ve := validationErrors(err); len(ve) != 1 || !strings.HasSuffix(ve[0].Source, "mqttbridge.yaml:3") ||
		!strings.Contains(ve[0].Message, `"addr" already defined`) {
		t.Errorf("duplicate key: err = %v", err)
	}

	_, err = loadYAML(t, "http: {}\n---\nlog_level: debug\n", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "second YAML document") {
		t.Errorf("two documents: err = %v", err)
	}

	_, err = loadYAML(t, "- a\n- b\n", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "want a mapping") {
		t.Errorf("a list at the top: err = %v", err)
	}

	// Alias cycles and alias bombs end with a problem, not a crash or a hang.
	_, err = loadYAML(t, "http: &a\n  <<: *a\n", nil, nil)
	requireProblem(t, err, "http", "alias refers to a mapping that contains it")
	_, err = loadYAML(t, "mqtt:\n  brokers: &b\n    - name: a\n      <<: {brokers: *b}\n", nil, nil)
	requireProblem(t, err, "mqtt.brokers[0].brokers", "unknown key")
	bomb := "http: &h0 {addr: ':1'}\n"
	for i := 1; i <= 12; i++ {
		bomb += fmt.Sprintf("x%d: &h%d\n  <<: [*h%d, *h%d, *h%d, *h%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	bomb = strings.ReplaceAll(bomb, "x12:", "embedded_mqtt:")
	_, err = loadYAML(t, bomb, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Errorf("alias bomb: %v", err)
	}

	for _, empty := range []string{"", "# nothing\n", "---\n", "~\n"} {
		if _, err := loadYAML(t, empty, nil, nil); err != nil {
			t.Errorf("file %q: %v", empty, err)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml, key, line string
	}{
		{"top level", "log_level: info\nloglevel: debug\n", "loglevel", ":2"},
		{"nested", "http:\n  addr: ':1'\n  max_paylod: 5\n", "http.max_paylod", ":3"},
		{"in a broker", "mqtt:\n  brokers:\n    - name: a\n      url: mqtt://a\n      topic: [x]\n      topics: [x]\n",
			"mqtt.brokers[0].topic", ":5"},
		{"in tls", "mqtt:\n  url: mqtts://a\n  tls:\n    cafile: x\n", "mqtt.tls.cafile", ":4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			ve := requireProblem(t, err, tt.key, "unknown key", "known")
			if !strings.HasSuffix(ve.Source, tt.line) {
				t.Errorf("source = %q, want line %s", ve.Source, tt.line)
			}
		})
	}
}

func TestFileTypeErrors(t *testing.T) {
	tests := []struct{ yaml, key, want string }{
		{"http:\n  max_batch: lots\n", "http.max_batch", `want an integer, got "lots"`},
		{"http:\n  shutdown_timeout: 10\n", "http.shutdown_timeout", `with a unit`},
		{"http:\n  shutdown_timeout: soon\n", "http.shutdown_timeout", `want a duration`},
		{"http:\n  max_payload: 1 megabyte\n", "http.max_payload", `want a size`},
		{"http:\n  max_payload: -5\n", "http.max_payload", `negative`},
		{"mqtt:\n  topics: \"#\"\n", "mqtt.topics", `want a list of strings`},
		{"mqtt:\n  brokers: {name: a}\n", "mqtt.brokers", `want a list`},
		{"http: 8080\n", "http", `want a mapping`},
		{"mqtt:\n  url: mqtts://a\n  tls:\n    insecure_skip_verify: maybe\n", "mqtt.tls.insecure_skip_verify", `true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			requireProblem(t, err, tt.key, tt.want, "mqttbridge.yaml:")
		})
	}
}

func TestFileNullKeepsDefault(t *testing.T) {
	cfg, err := loadYAML(t, "http:\n  addr:\n  max_batch: 7\nmqtt:\n", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":8080" || cfg.HTTP.MaxBatch != 7 || !slices.Equal(cfg.MQTT.Topics, []string{"#"}) {
		t.Errorf("got %v", cfg)
	}
}

func TestFileAnchorsAndMerge(t *testing.T) {
	cfg, err := loadYAML(t, `
base: &base
  url: mqtt://a:1883
  username: u
mqtt:
  brokers:
    - <<: *base
      name: a
      topics: [a/#]
    - <<: *base
      name: b
      url: mqtt://b:1883
      topics: [b/#]
`, nil, nil)
	// "base" is not a key of the configuration.
	requireProblem(t, err, "base", "unknown key")
	_ = cfg

	cfg, err = loadYAML(t, `
mqtt:
  brokers:
    - &a
      name: a
      url: mqtt://a:1883
      username: u
      topics: [a/#]
    - <<: *a
      name: b
      url: mqtt://b:1883
      topics: [b/#]
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.MQTT.Brokers[1]
	if b.Name != "b" || b.URL != "mqtt://b:1883" || b.Username != "u" || !slices.Equal(b.Topics, []string{"b/#"}) {
		t.Errorf("merged broker = %+v", b)
	}
}

func TestBrokersFromFile(t *testing.T) {
	cfg, err := loadYAML(t, `
mqtt:
  brokers:
    - name: plant
      url: tcp://plant
      topics: [plant/#]
    - name: fleet
      url: wss://fleet.example.com/mqtt
      topics: [fleet/+/telemetry]
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Topics != nil {
		t.Errorf("mqtt.topics = %q, want no default with brokers", cfg.MQTT.Topics)
	}
	if cfg.UsesEmbedded() {
		t.Error("UsesEmbedded with brokers")
	}
	got := cfg.Brokers()
	want := []Broker{
		{Name: "plant", URL: "mqtt://plant:1883", Topics: []string{"plant/#"}},
		{Name: "fleet", URL: "wss://fleet.example.com/mqtt", Topics: []string{"fleet/+/telemetry"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Brokers() = %v, want %v", got, want)
	}
	got[0].Topics[0] = "changed"
	if cfg.MQTT.Brokers[0].Topics[0] != "plant/#" {
		t.Error("Brokers() shares its slices with the config")
	}
}

func TestBrokersFromURL(t *testing.T) {
	tests := []struct{ url, want string }{
		{"mqtt://h", "mqtt://h:1883"},
		{"tcp://h:1884", "mqtt://h:1884"},
		{"ssl://h", "mqtts://h:8883"},
		{"MQTTS://h", "mqtts://h:8883"},
		{"mqtts://[::1]", "mqtts://[::1]:8883"},
		{"ws://h/mqtt", "ws://h/mqtt"},
		{"wss://h:8443/mqtt", "wss://h:8443/mqtt"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := Load([]string{"--mqtt-url", tt.url, "--mqtt-username", "u", "--topics", "a/#,b"},
				env(map[string]string{"MQTTBRIDGE_MQTT_PASSWORD": "pw"}))
			if err != nil {
				t.Fatal(err)
			}
			want := []Broker{{Name: "default", URL: tt.want, Username: "u", Password: "pw", Topics: []string{"a/#", "b"}}}
			if got := cfg.Brokers(); !reflect.DeepEqual(got, want) {
				t.Errorf("Brokers() = %v, want %v", got, want)
			}
			if cfg.UsesEmbedded() {
				t.Error("UsesEmbedded with mqtt.url")
			}
		})
	}
}

func TestTLSPathsRelativeToFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	writeCerts(t, sub, "ca.pem", "client.pem", "client-key.pem")
	p := writeFile(t, sub, "mqttbridge.yaml", `
mqtt:
  url: mqtts://broker
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client-key.pem
`)
	// The working directory is the package's, not conf/.
	cfg, err := Load([]string{"--config", p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(sub, "ca.pem"); cfg.MQTT.TLS.CAFile != want {
		t.Errorf("ca_file = %q, want %q", cfg.MQTT.TLS.CAFile, want)
	}
	if want := filepath.Join(sub, "client-key.pem"); cfg.MQTT.TLS.KeyFile != want {
		t.Errorf("key_file = %q, want %q", cfg.MQTT.TLS.KeyFile, want)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--http-addr", ":1", "--help"}} {
		_, err := Load(args, nil)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%q) = %v, want flag.ErrHelp", args, err)
		}
	}

	u := Usage()
	flags := []string{"--config", "--http-addr", "--mqtt-url", "--mqtt-username", "--redis-url",
		"--redis-key-prefix", "--embedded-mqtt-addr", "--instance-id", "--log-level", "--log-format", "--topics"}
	envs := []string{"MQTTBRIDGE_CONFIG", "MQTTBRIDGE_HTTP_ADDR", "MQTTBRIDGE_MQTT_URL", "MQTTBRIDGE_MQTT_USERNAME",
		"MQTTBRIDGE_MQTT_PASSWORD", "MQTTBRIDGE_REDIS_URL", "MQTTBRIDGE_REDIS_KEY_PREFIX", "MQTTBRIDGE_EMBEDDED_MQTT_ADDR",
		"MQTTBRIDGE_INSTANCE_ID", "MQTTBRIDGE_LOG_LEVEL", "MQTTBRIDGE_LOG_FORMAT", "MQTTBRIDGE_TOPICS", "MQTTBRIDGE_MAX_PAYLOAD"}
	for _, w := range append(append(flags, envs...), "mqttbridge.example.yaml", "precedence", "--help") {
		if !strings.Contains(u, w) {
			t.Errorf("Usage() lacks %q", w)
		}
	}
	if strings.Contains(u, "--mqtt-password") {
		t.Error("Usage() offers a password flag")
	}
	if !strings.Contains(u, "MQTTBRIDGE_MQTT_PASSWORD") || !strings.Contains(u, "no flag") {
		t.Error("Usage() does not explain why the password has no flag")
	}

	// Every flag in the help is accepted, with one dash or two.
	values := map[string]string{"--config": writeFile(t, t.TempDir(), "c.yaml", ""),
		"--mqtt-url": "mqtt://h", "--redis-url": "redis://h", "--log-level": "debug", "--log-format": "json",
		"--instance-id": "i1", "--http-addr": ":1", "--embedded-mqtt-addr": ":2", "--topics": "a/#"}
	for _, f := range flags {
		v, ok := values[f]
		if !ok {
			v = "x"
		}
		args := []string{f, v}
		if f == "--mqtt-username" {
			args = append(args, "--mqtt-url", "mqtt://h")
		}
		for _, a := range [][]string{args, append([]string{f[1:], v}, args[2:]...)} {
			if _, err := Load(a, nil); err != nil {
				t.Errorf("Load(%q): %v", a, err)
			}
		}
	}
}

func TestCommandLineProblems(t *testing.T) {
	_, err := Load([]string{"--mqtt-password", "x"}, nil)
	ve := requireProblem(t, err, "", "no --mqtt-password flag", "MQTTBRIDGE_MQTT_PASSWORD")
	if ve.Source != "command line" {
		t.Errorf("source = %q", ve.Source)
	}
	_, err = Load([]string{"--http-adr", ":1"}, nil)
	requireProblem(t, err, "", "flag provided but not defined: -http-adr")
	_, err = Load([]string{"serve"}, nil)
	requireProblem(t, err, "", `unexpected argument "serve"`)
}

func TestSourcesInMessages(t *testing.T) {
	_, err := loadYAML(t, "log_level: info\nhttp:\n  addr: nope\n", nil, nil)
	ve := requireProblem(t, err, "http.addr", "missing port")
	if !strings.HasSuffix(ve.Source, "mqttbridge.yaml:3") || !strings.HasPrefix(ve.Error(), ve.Source+": http.addr: ") {
		t.Errorf("file problem = %q (source %q), want it to start with the file position", ve, ve.Source)
	}

	_, err = loadYAML(t, "http:\n  addr: ':1'\n", nil, map[string]string{"MQTTBRIDGE_HTTP_ADDR": "nope"})
	requireProblem(t, err, "http.addr", "(from MQTTBRIDGE_HTTP_ADDR)")

	_, err = loadYAML(t, "", []string{"--http-addr", "nope"}, map[string]string{"MQTTBRIDGE_HTTP_ADDR": ":1"})
	requireProblem(t, err, "http.addr", "(from --http-addr)")

	// The file's list is replaced, so its positions are not shown.
	_, err = loadYAML(t, "mqtt:\n  topics:\n    - a\n    - b\n", nil, map[string]string{"MQTTBRIDGE_TOPICS": "a,b+"})
	requireProblem(t, err, "mqtt.topics[1]", `"b+"`, "(from MQTTBRIDGE_TOPICS)")

	_, err = Load(nil, env(map[string]string{"MQTTBRIDGE_MAX_PAYLOAD": "lots"}))
	requireProblem(t, err, "http.max_payload", "want a size", "(from MQTTBRIDGE_MAX_PAYLOAD)")

	// A problem on a key that is not set names the enclosing one.
	_, err = loadYAML(t, "mqtt:\n  brokers:\n    - name: a\n      url: mqtt://a\n", nil, nil)
	ve = requireProblem(t, err, "mqtt.brokers[0].topics", "at least one")
	if !strings.HasSuffix(ve.Source, ":3") {
		t.Errorf("source = %q, want the broker's line 3", ve.Source)
	}
}

func TestExampleFile(t *testing.T) {
	const path = "../../mqttbridge.example.yaml"
	cfg, err := Load([]string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	def, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	def.InstanceID = cfg.InstanceID
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("the example's active values are not the defaults:\n%v\ndefaults:\n%v", cfg, def)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	// Every key is in it, active or commented out.
	var keys []string
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			keys = append(keys, name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collect(ft)
			}
		}
	}
	collect(reflect.TypeFor[Config]())
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)^[ #]*(- )?` + k + `:`).MatchString(text) {
			t.Errorf("the example lacks the key %s", k)
		}
	}

	// The commented-out brokers are valid once uncommented.
	var block []string
	in := false
	for line := range strings.SplitSeq(text, "\n") {
		if line == "  # brokers:" {
			in = true
		}
		if in && !strings.HasPrefix(line, "  #") {
			break
		}
		if in {
			block = append(block, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(block) < 10 {
		t.Fatalf("brokers example not found: %q", block)
	}
	dir := t.TempDir()
	writeCerts(t, dir, "plant-ca.pem", "plant-client.pem", "plant-client-key.pem")
	p := writeFile(t, dir, "brokers.yaml", "mqtt:\n"+strings.Join(block, "\n")+"\n")
	cfg, err = Load([]string{"--config", p}, nil)
	if err != nil {
		t.Fatalf("the brokers example is not valid:\n%v", err)
	}
	if len(cfg.Brokers()) != 2 {
		t.Errorf("brokers example gives %d brokers, want 2", len(cfg.Brokers()))
	}
}

func FuzzLoadFile(f *testing.F) {
	data, err := os.ReadFile("../../mqttbridge.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add("mqtt:\n  brokers:\n    - name: a\n      url: mqtt://a\n      topics: [a/#, a/+]\n")
	f.Add("a: &a [*a]\n")
	f.Add("http: &a\n  <<: *a\n")
	f.Add("http: {addr: ':1', max_payload: 1KiB}\n")
	f.Fuzz(func(t *testing.T, content string) {
		p := writeFile(t, t.TempDir(), "f.yaml", content)
		_, err := Load([]string{"--config", p}, nil)
		if err != nil && len(validationErrors(err)) == 0 {
			t.Errorf("error without a ValidationError: %v", err)
		}
	})
}
