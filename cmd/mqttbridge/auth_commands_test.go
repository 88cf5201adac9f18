package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
)

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code, ok := subcommand(args, &out, &errOut, func(k string) string { return env[k] })
	if !ok {
		t.Fatalf("%q is not a subcommand", args)
	}
	return code, out.String(), errOut.String()
}

// `mqttbridge config check` prints the effective configuration with every
// secret redacted, and exits 2 for an invalid one.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	secrets := map[string]string{"mqtt": "mqtt-pw-Zq9", "redis": "redis-pw-Zq9", "hmac": "hmac-key-Zq9-0123456789abcdefghijklmn"}
	os.WriteFile(filepath.Join(dir, "hmac.key"), []byte(secrets["hmac"]+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "mqtt.pw"), []byte(secrets["mqtt"]), 0o600)
	cfgFile := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgFile, []byte(`
mqtt: {url: 'mqtt://broker:1883', username: bridge, password_file: mqtt.pw}
redis: {url: 'redis://r:6379/0'}
auth:
  api_keys: [{name: backend, sha256: `+auth.HashKey("k")+`, rules: {publish: ['a/#']}}]
  jwt: {algorithms: [HS256], hmac_key_files: [hmac.key]}
`), 0o600)
	code, out, errOut := run(t, map[string]string{"MQTTBRIDGE_REDIS_PASSWORD": secrets["redis"]}, "config", "check", "--config", cfgFile)
	if code != 0 || !strings.Contains(errOut, "authentication on") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for what, s := range secrets {
		if strings.Contains(out+errOut, s) {
			t.Errorf("config check shows the %s secret:\n%s", what, out)
		}
	}
	for _, want := range []string{"password: xxxxx", "password_file: " + filepath.Join(dir, "mqtt.pw"), "- xxxxx", "name: backend", "url: mqtt://broker:1883"} {
		if !strings.Contains(out, want) {
			t.Errorf("config check lacks %q:\n%s", want, out)
		}
	}
	code, _, errOut = run(t, nil, "config", "check", "--config", cfgFile, "--http-addr", "nowhere")
	if code != 2 || !strings.Contains(errOut, "http.addr") {
		t.Errorf("invalid configuration: exit %d, %s", code, errOut)
	}
	if _, ok := subcommand([]string{"--http-addr", ":1"}, &bytes.Buffer{}, &bytes.Buffer{}, os.Getenv); ok {
		t.Error("flags were taken for a subcommand")
	}
}

// `mqttbridge key` makes a key whose printed hash the server accepts, and
// `mqttbridge token` a JWT that the configured server accepts.
func TestKeyAndTokenCommands(t *testing.T) {
	code, out, _ := run(t, nil, "key", "--name", "backend")
	m := regexp.MustCompile(`(?m)^key: (mbk_\S+)$[\s\S]*sha256: ([0-9a-f]{64})$`).FindStringSubmatch(out)
	if code != 0 || m == nil || auth.HashKey(m[1]) != m[2] {
		t.Fatalf("key: exit %d\n%s", code, out)
	}
	apiKey, hash := m[1], m[2]

	dir := t.TempDir()
	secret := filepath.Join(dir, "jwt.key")
	os.WriteFile(secret, []byte(testHMACKey+"\n"), 0o600)
	code, out, errOut := run(t, nil, "token", "--sub", "alice", "--iss", testIssuer, "--aud", testAud, "--secret-file", secret,
		"--claim", `mqttbridge={"publish":["extra/%u"]}`)
	if code != 0 {
		t.Fatalf("token: exit %d %s", code, errOut)
	}
	tok := strings.TrimSpace(out)
	if code, _, _ := run(t, nil, "token", "--sub", "alice"); code != 2 {
		t.Errorf("token without a secret: exit %d, want 2", code)
	}

	in := startLogged(t, func(c *config.Config) {
		withAuth(c)
		c.Auth.APIKeys = []config.APIKey{{Name: "backend", SHA256: hash, Rules: config.Rules{Publish: []string{"b/#"}}}}
		c.Auth.JWT.RulesClaim = "mqttbridge"
	}, nil)
	in.waitReady(t)
	if resp, body := in.do(t, "POST", "/v1/topics/b/x", []byte("v"), "Authorization", "Bearer "+apiKey); resp.StatusCode != http.StatusOK {
		t.Errorf("the new key: %d %s", resp.StatusCode, body)
	}
	for topic, want := range map[string]int{"users/alice/x": 200, "extra/alice": 200, "extra/bob": 403} {
		if resp, body := in.doBad(t, "POST", "/v1/topics/"+topic, []byte("v"), bearer(tok)...); resp.StatusCode != want {
			t.Errorf("the token on %s: %d %s, want %d", topic, resp.StatusCode, body, want)
		}
	}
}

// `mqttbridge help` lists every command with a line each, and the entry
// `mqttbridge key` prints is a configuration that loads, with rules that
// allow something (an empty list would silently allow nothing).
func TestHelpAndKeyEntry(t *testing.T) {
	code, out, _ := run(t, nil, "help")
	for _, cmd := range []string{"config check", "key ", "token ", "help "} {
		if code != 0 || !strings.Contains(out, "\n  "+cmd) {
			t.Errorf("help: exit %d, no line for %q:\n%s", code, cmd, out)
		}
	}
	if out != config.Usage() {
		t.Error("`mqttbridge help` and --help differ")
	}

	code, out, _ = run(t, nil, "key", "--name", "backend")
	entry := out[strings.Index(out, "auth:"):]
	if code != 0 || !strings.Contains(entry, "# ") {
		t.Fatalf("key: exit %d, no comment in the entry:\n%s", code, out)
	}
	path := filepath.Join(t.TempDir(), "auth.yaml")
	os.WriteFile(path, []byte(entry), 0o600)
	cfg, err := config.Load([]string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("the printed entry does not load: %v\n%s", err, entry)
	}
	if k := cfg.Auth.APIKeys; len(k) != 1 || len(k[0].Rules.Publish) == 0 || len(k[0].Rules.Subscribe) == 0 {
		t.Errorf("the printed entry allows nothing: %+v", k)
	}
}

// A port that is taken names the flag that moves it.
func TestPortInUseNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for flag, args := range map[string][]string{
		"--http-addr":          {"--http-addr", ln.Addr().String(), "--embedded-mqtt-addr", "127.0.0.1:0"},
		"--embedded-mqtt-addr": {"--http-addr", "127.0.0.1:0", "--embedded-mqtt-addr", ln.Addr().String()},
	} {
		cfg, err := config.Load(args, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := NewMain(cfg)
		m.Logger = slog.New(slog.DiscardHandler)
		err = m.Run(context.Background())
		_ = m.Close(context.Background())
		if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s taken: %v, want a hint naming %s", flag, err, flag)
		}
	}
}
