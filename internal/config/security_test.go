package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecurityValidation(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir, "ca.pem", "cert.pem", "key.pem")
	hash := strings.Repeat("ab", 32)
	for _, c := range []struct {
		name, yaml, key string
		want            []string
	}{
		{"tls key missing", "http: {tls: {cert_file: x.pem}}", "http.tls.key_file", []string{"both or neither"}},
		{"tls bad pair", "http: {tls: {cert_file: " + filepath.Join(dir, "ca.pem") + ", key_file: " + filepath.Join(dir, "key.pem") + "}}", "http.tls.cert_file", []string{"key_file"}},
		{"client CA without TLS", "http: {tls: {client_ca_file: " + filepath.Join(dir, "ca.pem") + "}}", "http.tls.client_ca_file", []string{"needs http.tls.cert_file"}},
		{"client_auth", "http: {tls: {client_auth: always}}", "http.tls.client_auth", []string{`"always"`, "optional, require"}},
		{"min_version", "http: {tls: {min_version: '1.0'}}", "http.tls.min_version", []string{`"1.0"`}},
		{"cors star with credentials", "http: {cors: {allowed_origins: ['*'], allow_credentials: true}}", "http.cors.allowed_origins[0]", []string{"allow_credentials"}},
		{"cors bad origin", "http: {cors: {allowed_origins: ['app.example']}}", "http.cors.allowed_origins[0]", []string{"origin like"}},
		{"api key name", "auth: {api_keys: [{name: 'a/b', sha256: " + hash + "}]}", "auth.api_keys[0].name", []string{`"a/b"`, "+, #, /"}},
		{"api key hash", "auth: {api_keys: [{name: a, sha256: abc}]}", "auth.api_keys[0].sha256", []string{"64 hex digits"}},
		{"api key twice", "auth: {api_keys: [{name: a, sha256: " + hash + "}, {name: b, sha256: " + strings.ToUpper(hash) + "}]}", "auth.api_keys[1].sha256", []string{"auth.api_keys[0]"}},
		{"api key rule", "auth: {api_keys: [{name: a, sha256: " + hash + ", rules: {subscribe: [ok, 'a/#/b']}}]}", "auth.api_keys[0].rules.subscribe[1]", []string{`"a/#/b"`}},
		{"rule placeholder inside a level", "auth: {api_keys: [{name: a, sha256: " + hash + ", rules: {publish: ['dev/x%u']}}]}", "auth.api_keys[0].rules.publish[0]", []string{"whole levels"}},
		{"alg none", "auth: {jwt: {algorithms: [none]}}", "auth.jwt.algorithms[0]", []string{"never accepted"}},
		{"alg unknown", "auth: {jwt: {algorithms: [HS1]}}", "auth.jwt.algorithms[0]", []string{`"HS1"`}},
		{"HS without key", "auth: {jwt: {algorithms: [HS256]}}", "auth.jwt.hmac_key_files", []string{"MQTTBRIDGE_JWT_HMAC_KEY"}},
		{"short HMAC key", "auth: {jwt: {algorithms: [HS256], hmac_keys: [short]}}", "auth.jwt.hmac_keys[0]", []string{"at least 32"}},
		{"RS without keys", "auth: {jwt: {algorithms: [RS256]}}", "auth.jwt.jwks_url", []string{"public_key_files"}},
		{"jwks over http", "auth: {jwt: {algorithms: [RS256], jwks_url: 'http://idp.example/jwks'}}", "auth.jwt.jwks_url", []string{"https://"}},
		{"name claim", "auth: {jwt: {name_claim: ''}}", "auth.jwt.name_claim", []string{"empty"}},
		{"client cert without CA", "auth: {client_cert: {enabled: true}}", "auth.client_cert.enabled", []string{"client_ca_file"}},
		{"ticket ttl", "auth: {ticket_ttl: 1h}", "auth.ticket_ttl", []string{"at most 10m"}},
		{"tickets per identity", "auth: {tickets_per_identity: 0}", "auth.tickets_per_identity", []string{"at least 1"}},
		{"ticket rate", "auth: {ticket_rate: 0}", "auth.ticket_rate", []string{"more than 0"}},
		{"ticket burst", "auth: {ticket_burst: 0}", "auth.ticket_burst", []string{"at least 1"}},
		{"topic_length", "limits: {topic_length: 70000}", "limits.topic_length", []string{"65535"}},
		{"negative levels", "limits: {topic_levels: -1}", "limits.topic_levels", []string{"0 (no limit)"}},
		{"burst", "limits: {publish_rate: 5, publish_burst: 0}", "limits.publish_burst", []string{"at least 1"}},
		{"read burst", "limits: {read_rate: 5, read_burst: 0}", "limits.read_burst", []string{"at least 1"}},
		{"negative read rate", "limits: {read_rate: -1}", "limits.read_rate", []string{"0 (no limit)"}},
		{"secret file missing", "mqtt: {url: 'mqtt://a', password_file: " + filepath.Join(dir, "nope") + "}", "mqtt.password_file", []string{"cannot read", "no such file"}},
		{"secret twice", "mqtt: {url: 'mqtt://a', password: p, password_file: " + filepath.Join(dir, "ca.pem") + "}", "mqtt.password_file", []string{"set one of them"}},
		{"password file without url", "mqtt: {password_file: " + filepath.Join(dir, "ca.pem") + "}", "mqtt.password_file", []string{"only used with mqtt.url"}},
		{"redis password without url", "redis: {password: p}", "redis.password", []string{"only used with redis.url"}},
		{"redis password twice", "redis: {url: 'redis://:a@r', password: p}", "redis.password", []string{"keep one"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, c.yaml, nil, nil)
			requireProblem(t, err, c.key, c.want...)
		})
	}
	// A complete set-up is valid.
	ok := `
http:
  tls: {cert_file: ` + filepath.Join(dir, "cert.pem") + `, key_file: ` + filepath.Join(dir, "key.pem") + `, client_ca_file: ` + filepath.Join(dir, "ca.pem") + `}
  cors: {allowed_origins: ['https://app.example'], allow_credentials: true}
auth:
  api_keys: [{name: backend, sha256: ` + hash + `, rules: {publish: ['devices/+/cmd'], subscribe: ['devices/#']}}]
  jwt: {algorithms: [HS256, RS256], jwks_url: 'https://idp.example/jwks', issuer: i, audience: a, rules: {subscribe: ['users/%u/#']}}
  client_cert: {enabled: true, rules: {publish: ['devices/%u/#']}}
limits: {publish_rate: 0.5, publish_burst: 1}
`
	cfg, err := loadYAML(t, ok, nil, map[string]string{"MQTTBRIDGE_JWT_HMAC_KEY": strings.Repeat("k", 32)})
	if err != nil {
		t.Fatalf("%s\n%v", ok, err)
	}
	if !cfg.Auth.Enabled() || !cfg.HTTP.TLS.Enabled() || len(cfg.Auth.JWT.HMACKeys) != 1 {
		t.Errorf("auth %v, tls %v, keys %d", cfg.Auth.Enabled(), cfg.HTTP.TLS.Enabled(), len(cfg.Auth.JWT.HMACKeys))
	}
	if Default().Auth.Enabled() {
		t.Error("authentication is on by default")
	}
}

// Secrets come from files (relative to the config file) and the
// environment, and are never shown.
func TestSecretsFromFiles(t *testing.T) {
	const (
		mqttPW  = "mqtt-Secret-1"
		brokPW  = "broker-Secret-2"
		redisPW = "redis-Secret-3"
		hmacKey = "hmac-Secret-4-0123456789abcdefghijklmnop"
	)
	dir := t.TempDir()
	writeFile(t, dir, "mqtt.pw", mqttPW+"\n")
	writeFile(t, dir, "broker.pw", brokPW)
	writeFile(t, dir, "redis.pw", redisPW+"\r\n")
	writeFile(t, dir, "hmac.key", hmacKey+"\n")
	p := writeFile(t, dir, "c.yaml", `
mqtt:
  brokers: [{name: a, url: 'mqtt://a', password_file: broker.pw, topics: [a/#]}]
redis: {url: 'redis://user@r:6379/0', password_file: redis.pw}
auth: {jwt: {algorithms: [HS256], hmac_key_files: [hmac.key]}}
`)
	cfg, err := Load([]string{"--config", p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Brokers[0].Password != brokPW || cfg.Redis.Password != redisPW || len(cfg.Auth.JWT.HMACKeys) != 1 || cfg.Auth.JWT.HMACKeys[0] != hmacKey {
		t.Fatalf("secrets not read: %q %q %q", cfg.MQTT.Brokers[0].Password, cfg.Redis.Password, cfg.Auth.JWT.HMACKeys)
	}
	if got, want := cfg.RedisURL(), "redis://user:"+redisPW+"@r:6379/0"; got != want {
		t.Errorf("RedisURL = %q, want %q", got, want)
	}
	p2 := writeFile(t, dir, "c2.yaml", "mqtt: {url: 'mqtt://a', password_file: mqtt.pw}\n")
	cfg2, err := Load([]string{"--config", p2}, env(map[string]string{"MQTTBRIDGE_REDIS_URL": "redis://r", "MQTTBRIDGE_REDIS_PASSWORD": redisPW}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.MQTT.Password != mqttPW || cfg2.Brokers()[0].Password != mqttPW || cfg2.RedisURL() != "redis://:"+redisPW+"@r" {
		t.Errorf("password %q, broker %q, redis %q", cfg2.MQTT.Password, cfg2.Brokers()[0].Password, cfg2.RedisURL())
	}

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg, "cfg2", cfg2)
	shown := logs.String()
	for _, c := range []Config{cfg, cfg2} {
		for _, v := range []any{c, c.Auth, c.Auth.JWT, c.Redis, c.MQTT, &c} {
			shown += fmt.Sprintf("%v %+v %#v %s", v, v, v, v)
		}
	}
	for _, secret := range []string{mqttPW, brokPW, redisPW, hmacKey} {
		if strings.Contains(shown, secret) {
			t.Errorf("a secret is shown: %s", secret)
		}
	}
	if !strings.Contains(cfg.String(), "hmac_key_files") || !strings.Contains(cfg.String(), "xxxxx") {
		t.Errorf("String() lacks the key files or the redaction mark:\n%s", cfg)
	}
}
