package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestValidationRules loads a file breaking one rule and expects a problem
// on the key as written in YAML.
func TestValidationRules(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir, "ca.pem", "cert.pem", "key.pem")
	writeCerts(t, dir, "ca2.pem", "cert2.pem", "key2.pem")
	writeFile(t, dir, "notpem.txt", "hello\n")

	tests := []struct {
		name string
		yaml string
		key  string
		want []string
	}{
		{"instance_id charset", `instance_id: "a b"`, "instance_id", []string{`"a b"`, "A-Z"}},
		{"instance_id length", `instance_id: ` + strings.Repeat("a", 33), "instance_id", []string{"1 to 32"}},
		{"log_level", `log_level: verbose`, "log_level", []string{`"verbose"`, "debug, info, warn, error"}},
		{"log_format", `log_format: xml`, "log_format", []string{`"xml"`, "text, json"}},
		{"http.addr no port", "http: {addr: localhost}", "http.addr", []string{"missing port"}},
		{"http.addr bad port", "http: {addr: ':http'}", "http.addr", []string{"port must be a number"}},
		{"http.addr port range", "http: {addr: ':70000'}", "http.addr", []string{"port must be a number"}},
		{"max_payload zero", "http: {max_payload: 0}", "http.max_payload", []string{"must be positive"}},
		{"max_payload too big", "http: {max_payload: 1GiB}", "http.max_payload", []string{"more than MQTT allows"}},
		{"max_batch", "http: {max_batch: 0}", "http.max_batch", []string{"at least 1"}},
		{"shutdown_timeout", "http: {shutdown_timeout: 0s}", "http.shutdown_timeout", []string{"positive"}},
		{"read_header_timeout", "http: {read_header_timeout: 0s}", "http.read_header_timeout", []string{"positive"}},
		{"read_timeout", "http: {read_timeout: -1s}", "http.read_timeout", []string{"positive"}},
		{"idle_timeout", "http: {idle_timeout: 0s}", "http.idle_timeout", []string{"positive"}},
		{"max_header_bytes small", "http: {max_header_bytes: 512}", "http.max_header_bytes", []string{"1KiB to 1MiB", "512"}},
		{"max_header_bytes big", "http: {max_header_bytes: 2MiB}", "http.max_header_bytes", []string{"1KiB to 1MiB"}},
		{"connect_timeout", "mqtt: {connect_timeout: -1s}", "mqtt.connect_timeout", []string{"positive"}},
		{"publish_timeout", "mqtt: {publish_timeout: 0s}", "mqtt.publish_timeout", []string{"positive"}},
		{"reconnect_min", "mqtt: {reconnect_min: 0s}", "mqtt.reconnect_min", []string{"positive"}},
		{"reconnect_max", "mqtt: {reconnect_max: 0s}", "mqtt.reconnect_max", []string{"positive"}},
		{"reconnect_max < min", "mqtt: {reconnect_min: 5s, reconnect_max: 1s}", "mqtt.reconnect_max", []string{"less than mqtt.reconnect_min"}},
		{"keepalive zero", "mqtt: {keepalive: 0s}", "mqtt.keepalive", []string{"between 1s and 65535s"}},
		{"keepalive too long", "mqtt: {keepalive: 65536s}", "mqtt.keepalive", []string{"between 1s and 65535s"}},
		{"keepalive fraction", "mqtt: {keepalive: 1500ms}", "mqtt.keepalive", []string{"whole seconds"}},
		{"client_id_prefix", "mqtt: {client_id_prefix: 'a b/'}", "mqtt.client_id_prefix", []string{"at most 64"}},
		{"url scheme", "mqtt: {url: 'http://broker'}", "mqtt.url", []string{`unsupported scheme "http" (want mqtt, mqtts, ws or wss)`}},
		{"url without scheme", "mqtt: {url: 'broker:1883'}", "mqtt.url", []string{"not a URL with a host"}},
		{"url without host", "mqtt: {url: 'mqtt://'}", "mqtt.url", []string{"no host"}},
		{"url port", "mqtt: {url: 'mqtt://b:0'}", "mqtt.url", []string{`port "0"`}},
		{"url path", "mqtt: {url: 'mqtt://b/mqtt'}", "mqtt.url", []string{"no path"}},
		{"url credentials", "mqtt: {url: 'mqtt://u:p@b'}", "mqtt.url", []string{"credentials in the URL", "mqtt.username"}},
		{"url unparseable", "mqtt: {url: 'mqtt://b:1883/%zz'}", "mqtt.url", []string{"not a valid URL"}},
		{"url and brokers", "mqtt: {url: 'mqtt://a', brokers: [{name: b, url: 'mqtt://b', topics: [b]}]}", "mqtt.url", []string{"mqtt.brokers", "not both"}},
		{"topics empty", "mqtt: {topics: []}", "mqtt.topics", []string{"at least one"}},
		{"topics invalid", "mqtt: {topics: ['a/#/b']}", "mqtt.topics[0]", []string{`"a/#/b"`, "wildcard"}},
		{"topics duplicate", "mqtt: {topics: ['a', 'b', 'a']}", "mqtt.topics[2]", []string{"already mqtt.topics[0]"}},
		{"topics shared", "mqtt: {topics: ['$share/g/a/#']}", "mqtt.topics[0]", []string{"shared subscription", `"a/#"`}},
		{"username without url", "mqtt: {username: u}", "mqtt.username", []string{"only used with mqtt.url"}},
		{"password without url", "mqtt: {password: p}", "mqtt.password", []string{"only used with mqtt.url"}},
		{"tls without url", "mqtt: {tls: {server_name: x}}", "mqtt.tls", []string{"only used with mqtt.url"}},
		{"username with brokers", "mqtt: {username: u, brokers: [{name: b, url: 'mqtt://b', topics: [b]}]}", "mqtt.username", []string{"set it on each broker"}},
		{"topics with brokers", "mqtt: {topics: ['#'], brokers: [{name: b, url: 'mqtt://b', topics: [b]}]}", "mqtt.topics", []string{"set topics on each broker"}},
		{"broker name missing", "mqtt: {brokers: [{url: 'mqtt://b', topics: [b]}]}", "mqtt.brokers[0].name", []string{"missing"}},
		{"broker name charset", "mqtt: {brokers: [{name: 'a.b', url: 'mqtt://b', topics: [b]}]}", "mqtt.brokers[0].name", []string{`"a.b"`}},
		{"broker name duplicate", "mqtt: {brokers: [{name: a, url: 'mqtt://a', topics: [a]}, {name: a, url: 'mqtt://b', topics: [b]}]}",
			"mqtt.brokers[1].name", []string{"already the name of mqtt.brokers[0]"}},
		{"broker url missing", "mqtt: {brokers: [{name: a, topics: [a]}]}", "mqtt.brokers[0].url", []string{"missing"}},
		{"broker url scheme", "mqtt: {brokers: [{name: a, url: 'mqtt://a', topics: [a]}, {name: b, url: 'http://b', topics: [b]}]}",
			"mqtt.brokers[1].url", []string{`unsupported scheme "http" (want mqtt, mqtts, ws or wss)`}},
		{"broker credentials in url", "mqtt: {brokers: [{name: a, url: 'mqtt://u:p@a', topics: [a]}]}", "mqtt.brokers[0].url", []string{"mqtt.brokers[0].password"}},
		{"broker topics missing", "mqtt: {brokers: [{name: a, url: 'mqtt://a'}]}", "mqtt.brokers[0].topics", []string{"at least one"}},
		{"broker topic invalid", "mqtt: {brokers: [{name: a, url: 'mqtt://a', topics: [a, 'b+']}]}", "mqtt.brokers[0].topics[1]", []string{`"b+"`}},
		{"overlap inside one broker", "mqtt: {url: 'mqtt://a', topics: ['a/#', 'a/+/c']}", "mqtt.topics[1]", []string{`"a/+/c" overlaps mqtt.topics[0] "a/#"`}},
		{"brokers overlap", `
mqtt:
  brokers:
    - {name: a, url: 'mqtt://a', topics: [x]}
    - {name: b, url: 'mqtt://b', topics: [y]}
    - {name: c, url: 'mqtt://c', topics: [c/#, a/#]}
    - {name: d, url: 'mqtt://d', topics: [a/b/+]}
`, "mqtt.brokers[2].topics[1]", []string{`mqtt.brokers[2].topics[1]: "a/#" overlaps mqtt.brokers[3].topics[0] "a/b/+"`}},
		{"tls on plain mqtt", "mqtt: {url: 'mqtt://a', tls: {ca_file: " + dir + "/ca.pem}}", "mqtt.tls", []string{`scheme "mqtt" does not use TLS`}},
		{"tls on plain ws", "mqtt: {brokers: [{name: a, url: 'ws://a/mqtt', tls: {insecure_skip_verify: true}, topics: [a]}]}",
			"mqtt.brokers[0].tls", []string{`scheme "ws" does not use TLS`}},
		{"cert without key", "mqtt: {url: 'mqtts://a', tls: {cert_file: " + dir + "/cert.pem}}", "mqtt.tls.key_file", []string{"both or neither"}},
		{"key without cert", "mqtt: {brokers: [{name: a, url: 'wss://a', tls: {key_file: " + dir + "/key.pem}, topics: [a]}]}",
			"mqtt.brokers[0].tls.cert_file", []string{"both or neither"}},
		{"ca_file missing", "mqtt: {url: 'mqtts://a', tls: {ca_file: " + dir + "/nope.pem}}", "mqtt.tls.ca_file", []string{"no such file"}},
		{"ca_file not PEM", "mqtt: {url: 'mqtts://a', tls: {ca_file: " + dir + "/notpem.txt}}", "mqtt.tls.ca_file", []string{"no PEM certificate"}},
		{"cert and key mismatch", "mqtt: {url: 'mqtts://a', tls: {cert_file: " + dir + "/cert.pem, key_file: " + dir + "/key2.pem}}",
			"mqtt.tls.cert_file", []string{"key_file"}},
		{"key file unreadable", "mqtt: {url: 'mqtts://a', tls: {cert_file: " + dir + "/cert.pem, key_file: " + dir + "/nokey.pem}}",
			"mqtt.tls.cert_file", []string{"no such file"}},
		{"redis scheme", "redis: {url: 'http://r'}", "redis.url", []string{`unsupported scheme "http" (want redis or rediss)`}},
		{"redis no host", "redis: {url: 'redis://'}", "redis.url", []string{"no host"}},
		{"redis db", "redis: {url: 'redis://r/x'}", "redis.url", []string{"database number"}},
		{"redis port", "redis: {url: 'redis://r:99999'}", "redis.url", []string{"between 1 and 65535"}},
		{"embedded addr", "embedded_mqtt: {addr: '11883'}", "embedded_mqtt.addr", []string{"missing port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			requireProblem(t, err, tt.key, tt.want...)
		})
	}
}

// TestValidConfigs must pass: each is close to a rule above.
func TestValidConfigs(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir, "ca.pem", "cert.pem", "key.pem")
	tests := []struct{ name, yaml string }{
		{"ipv6 and port 0", "http: {addr: '[::1]:0'}\nembedded_mqtt: {addr: 'localhost:0'}"},
		{"max_payload at the limit", "http: {max_payload: 256MiB}"},
		{"keepalive bounds", "mqtt: {keepalive: 65535s}"},
		{"reconnect equal", "mqtt: {reconnect_min: 1s, reconnect_max: 1s}"},
		{"empty client id prefix", "mqtt: {client_id_prefix: ''}"},
		{"upper-case log level", "log_level: DEBUG\nlog_format: JSON"},
		{"url aliases and ws path", "mqtt: {brokers: [{name: a, url: 'tcp://a', topics: [a]}, {name: b, url: 'ssl://b:8884', topics: [b]}, {name: c, url: 'ws://c:9001/mqtt?x=1', topics: [c]}]}"},
		{"disjoint filters in one broker", "mqtt: {url: 'mqtt://a', topics: ['a/#', 'b/+/c', '$SYS/#']}"},
		{"$ topics do not overlap #", "mqtt: {brokers: [{name: a, url: 'mqtt://a', topics: ['#']}, {name: sys, url: 'mqtt://a', topics: ['$SYS/#']}]}"},
		{"full tls", "mqtt: {url: 'mqtts://a', tls: {ca_file: " + dir + "/ca.pem, cert_file: " + dir + "/cert.pem, key_file: " + dir + "/key.pem, server_name: b}}"},
		{"insecure tls on wss", "mqtt: {url: 'wss://a/mqtt', tls: {insecure_skip_verify: true}}"},
		{"redis with password and db", "redis: {url: 'rediss://user:pw@r:6380/3', key_prefix: ''}"},
		{"url with username and password", "mqtt: {url: 'mqtt://a', username: u, password: p}"},
		{"broker names", "mqtt: {brokers: [{name: A_b-9, url: 'mqtt://a', topics: [a]}]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := loadYAML(t, tt.yaml, nil, nil); err != nil {
				t.Errorf("unexpected problems:\n%v", err)
			}
		})
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	c := Default()
	c.HTTP.Addr = "x"
	c.MQTT.URL = "http://x"
	c.Redis.URL = "ftp://r"
	c.HTTP.MaxBatch = 0
	err := c.Validate()
	var keys []string
	for _, ve := range validationErrors(err) {
		keys = append(keys, ve.Key)
	}
	want := []string{"http.addr", "http.max_batch", "mqtt.url", "redis.url"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("problems on %q, want %q", keys, want)
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want)-1 {
		t.Errorf("want one problem a line, got:\n%v", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Error("errors.As finds no *ValidationError")
	}
}

func TestValidateWithoutLoad(t *testing.T) {
	c := Default()
	c.MQTT.Topics = nil
	c.MQTT.Brokers = []Broker{{Name: "a", URL: "mqtt://a", Topics: []string{"a/#"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	c.MQTT.Brokers = append(c.MQTT.Brokers, Broker{Name: "b", URL: "mqtt://b", Topics: []string{"+/x"}})
	err := c.Validate()
	requireProblem(t, err, "mqtt.brokers[0].topics[0]", `"a/#" overlaps mqtt.brokers[1].topics[0] "+/x"`)
	if ve := validationErrors(err); ve[0].Source != "" {
		t.Errorf("Validate() invents a source: %q", ve[0].Source)
	}
}

// TestPasswordsNeverShown puts a password everywhere one can go and checks
// that no error, String, %v or log line shows it.
func TestPasswordsNeverShown(t *testing.T) {
	const pw = "Hunter2Zq9x"
	// A malformed password: "/" ends the URL's authority, so a naive parse
	// takes "Hun" for a port and "ter2Zq9x@host" for a path.
	const slashPW = "Hun/ter2Zq9x"
	leaks := func(s string) bool {
		return strings.Contains(s, pw) || strings.Contains(s, "ter2Zq9x") || strings.Contains(s, "Hunter2")
	}

	errCases := []struct {
		name    string
		yaml    string
		args    []string
		environ map[string]string
	}{
		{name: "password without url", environ: map[string]string{"MQTTBRIDGE_MQTT_PASSWORD": pw}},
		{name: "file password with brokers", yaml: "mqtt: {password: " + pw + ", brokers: [{name: a, url: 'mqtt://a', topics: [a]}]}"},
		{name: "mqtt url with userinfo", args: []string{"--mqtt-url", "mqtt://u:" + pw + "@h"}},
		{name: "mqtt url with bad scheme and userinfo", args: []string{"--mqtt-url", "http://u:" + pw + "@h"}},
		{name: "mqtt url with slash in password", args: []string{"--mqtt-url", "mqtt://u:" + slashPW + "@h"}},
		// This one parses: host "u", port 4711, path "/ter2Zq9x@h".
		{name: "ws url with slash in password", args: []string{"--mqtt-url", "ws://u:4711/ter2Zq9x@h"}},
		{name: "broker url with userinfo", yaml: "mqtt: {brokers: [{name: a, url: 'mqtts://u:" + pw + "@h:1/x', password: " + pw + ", topics: [a]}]}"},
		{name: "redis url bad db", environ: map[string]string{"MQTTBRIDGE_REDIS_URL": "redis://:" + pw + "@r/x"}},
		{name: "redis url bad scheme", args: []string{"--redis-url", "http://:" + pw + "@r"}},
		{name: "redis url no host", args: []string{"--redis-url", "redis://:" + pw + "@"}},
		{name: "redis url bad escape", args: []string{"--redis-url", "redis://:" + pw + "%zz@r"}},
		{name: "redis url slash in password", args: []string{"--redis-url", "redis://:" + slashPW + "@r:6379"}},
		{name: "redis url password in query", args: []string{"--redis-url", "redis://r/x?password=" + pw}},
		{name: "password of the wrong type", yaml: "mqtt: {url: 'mqtt://a', password: [" + pw + "]}"},
		{name: "misspelt password key", yaml: "mqtt: {url: 'mqtt://a', pasword: " + pw + "}"},
		{name: "unterminated quote", yaml: "mqtt:\n  url: mqtt://a\n  password: \"" + pw + "\n"},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, tt.args, tt.environ)
			if err == nil {
				t.Fatal("no error")
			}
			if leaks(err.Error()) {
				t.Errorf("the error shows the password:\n%v", err)
			}
		})
	}

	cfg, err := loadYAML(t, `
mqtt:
  brokers:
    - {name: a, url: 'mqtt://a', username: u, password: `+pw+`, topics: [a/#]}
`, nil, map[string]string{"MQTTBRIDGE_REDIS_URL": "redis://user:" + pw + "@r:6379/0?password=" + pw})
	if err != nil {
		t.Fatal(err)
	}
	cfgURL, err := Load([]string{"--mqtt-url", "mqtt://a"}, env(map[string]string{"MQTTBRIDGE_MQTT_PASSWORD": pw}))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", cfg, "cfgURL", cfgURL)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg, "cfgURL", cfgURL)
	if !strings.Contains(logs.String(), "mqtt://a") {
		t.Errorf("the log holds no config: %s", logs.String())
	}
	shown := map[string]string{"log": logs.String()}
	for _, c := range []Config{cfg, cfgURL} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			for i, v := range []any{c, c.MQTT, c.MQTT.Brokers, c.Redis, c.Brokers(), &c, c.Redacted()} {
				shown[fmt.Sprintf("%s of value %d", verb, i)] += fmt.Sprintf(verb, v)
			}
		}
	}
	for what, s := range shown {
		if leaks(s) {
			t.Errorf("%s shows the password:\n%s", what, s)
		}
	}
	if !strings.Contains(cfg.String(), "xxxxx") {
		t.Errorf("String() does not mark the redacted password:\n%s", cfg)
	}
	// Redacted must not change the config itself.
	if cfg.MQTT.Brokers[0].Password != pw || !strings.Contains(cfg.Redis.URL, pw) {
		t.Error("Redacted() changed the original config")
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"1048576", MiB, ""},
		{"1MiB", MiB, ""},
		{"512KiB", 512 * KiB, ""},
		{"2 GiB", 2 * GiB, ""},
		{"64kB", 64000, ""},
		{"3MB", 3000000, ""},
		{"1GB", 1000000000, ""},
		{"10B", 10, ""},
		{"0", 0, ""},
		{"-1", 0, "negative"},
		{"-1MiB", 0, "negative"},
		{"1.5MiB", 0, "want a size"},
		{"1mb", 0, "want a size"},
		{"MiB", 0, "want a size"},
		{"", 0, "want a size"},
		{"99999999999GiB", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseByteSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
	for b, want := range map[ByteSize]string{MiB: "1MiB", 2048: "2KiB", 1536: "1536B", 1500: "1500B", 0: "0B", 3 * GiB: "3GiB"} {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"1", "1MiB", "64kB", "-3", " 7 GiB ", "9223372036854775807", "8589934592GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, int64(b))
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, int64(b), b.String(), int64(back), err)
		}
	})
}

func TestDurationYAML(t *testing.T) {
	cfg, err := loadYAML(t, "mqtt: {reconnect_min: 250ms, reconnect_max: 1m30s}", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.ReconnectMin != Duration(250*time.Millisecond) || cfg.MQTT.ReconnectMax != Duration(90*time.Second) {
		t.Errorf("got %s and %s", cfg.MQTT.ReconnectMin, cfg.MQTT.ReconnectMax)
	}
	if !strings.Contains(cfg.String(), "reconnect_min: 250ms") {
		t.Errorf("String() does not write durations as strings:\n%s", cfg)
	}
}
