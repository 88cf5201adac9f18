package web_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The browser and client.js tests run the real bridge binary (a package
// cannot import package main) and drive it with the Node scripts in e2e/:
// client.test.mjs and live.test.mjs under `node --test`, console.test.mjs
// with playwright-core and Debian's Chromium. `make web-deps` installs what
// they need; without it they skip and say why.

const chromium = "/usr/bin/chromium"

var (
	buildOnce sync.Once
	binary    string // the built bridge
	modRoot   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// goTool is the go command of this toolchain: go test puts its GOROOT/bin
// first on PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// buildBridge builds ./cmd/mqttbridge once per test binary.
func buildBridge(t *testing.T) (bin, root string) {
	t.Helper()
	testenv.Long(t, "building the bridge for Node and the browser")
	buildOnce.Do(func() {
		out, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			buildErr = fmt.Errorf("go list -m: %v", err)
			return
		}
		modRoot = strings.TrimSpace(string(out))
		buildDir, err = os.MkdirTemp("", "mqttbridge-web-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(buildDir, "mqttbridge")
		cmd := exec.Command(goTool(), "build", "-o", binary, "./cmd/mqttbridge")
		cmd.Dir = modRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/mqttbridge: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary, modRoot
}

// needNode skips the test, saying what is missing and how to get it, when
// node or the npm packages of e2e/ are not there.
func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testenv.SkipMissing(t, "node is not installed, so client.js and the console are not tested. Install Node.js 20+ and run `make web-deps`.")
	}
	for _, pkg := range []string{"playwright-core", "ws"} {
		if _, err := os.Stat(filepath.Join("e2e", "node_modules", pkg, "package.json")); err != nil {
			testenv.SkipMissing(t, "the npm package %s is not installed in web/e2e, so client.js and the console are not tested. Run `make web-deps`.", pkg)
		}
	}
}

// bridge is one running mqttbridge process.
type bridge struct {
	base     string // http://127.0.0.1:port
	mqttPort int    // its embedded broker
}

// startBridge runs the bridge with its embedded broker and the in-memory
// store on free ports, and more flags if given, waits for /readyz, and
// stops it at cleanup.
func startBridge(t *testing.T, args ...string) bridge {
	t.Helper()
	bin, _ := buildBridge(t)
	httpPort, mqttPort := testenv.FreePort(t), testenv.FreePort(t)
	cmd := exec.Command(bin, append([]string{
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--embedded-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", mqttPort),
		"--log-level", "warn"}, args...)...)
	// Only the flags configure it, whatever MQTTBRIDGE_* the caller has.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MQTTBRIDGE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the bridge: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the bridge did not stop within 10 s of SIGINT")
		}
		if t.Failed() {
			t.Logf("bridge output:\n%s", out.String())
		}
	})

	b := bridge{base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), mqttPort: mqttPort}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the bridge exited at start: %v\n%s", err, out.String())
		default:
		}
		resp, err := client.Get(b.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge was not ready within 20 s (last: %v %v)\n%s", resp, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runNode runs node with args in the module root, bounded by timeout, and
// fails the test with its output when it fails.
func runNode(t *testing.T, root string, timeout time.Duration, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node %s did not finish within %v:\n%s", strings.Join(args, " "), timeout, out)
	case err != nil:
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	default:
		t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	}
}

// TestClientJS runs client.js's own tests: the pure ones, those against the
// fake server (drops, lost sessions, duplicates, silence) and those against
// the real bridge (live.test.mjs, which needs MQTTBRIDGE_URL).
func TestClientJS(t *testing.T) {
	needNode(t)
	b := startBridge(t)
	_, root := buildBridge(t)
	runNode(t, root, 90*time.Second, []string{
		"MQTTBRIDGE_URL=" + b.base,
		fmt.Sprintf("MQTTBRIDGE_MQTT_PORT=%d", b.mqttPort),
	}, "--test", "--test-reporter=spec",
		filepath.Join("web", "e2e", "client.test.mjs"),
		filepath.Join("web", "e2e", "live.test.mjs"))
}

// TestCredentialsInBrowser runs auth.test.mjs against a bridge with
// authentication on: client.js given an API key, a JWT or a credentials
// callback gets a ticket before every (re)connection, and in Chromium
// (skipped without it) the console opens on a sign-in page, signs in with
// an API key or a JWT, refuses a wrong one clearly, and forgets it on
// sign-out.
func TestCredentialsInBrowser(t *testing.T) {
	needNode(t)
	const apiKey = "mbk_web-e2e-key-0123456789abcdef"
	hmacKey := "an HMAC secret of at least 32 bytes, for the web tests"
	conf := filepath.Join(t.TempDir(), "auth.yaml")
	yaml := fmt.Sprintf(`auth:
  api_keys:
    - {name: web, sha256: %s, rules: {publish: ['auth/#'], subscribe: ['auth/#']}}
  jwt:
    algorithms: [HS256]
    hmac_keys: [%q]
    rules: {publish: ['auth/%%u/#'], subscribe: ['auth/%%u/#']}
`, auth.HashKey(apiKey), hmacKey)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	jwtToken, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "jwtuser", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(hmacKey))
	if err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, "--config", conf)
	_, root := buildBridge(t)
	runNode(t, root, 120*time.Second, []string{
		"MQTTBRIDGE_URL=" + b.base,
		"MQTTBRIDGE_API_KEY=" + apiKey,
		"MQTTBRIDGE_JWT=" + jwtToken,
		fmt.Sprintf("MQTTBRIDGE_MQTT_PORT=%d", b.mqttPort),
	}, "--test", "--test-reporter=spec", filepath.Join("web", "e2e", "auth.test.mjs"))
}

// TestConsoleInBrowser opens the console in Chromium: the State view's
// current values updated in place, the message log in id order, the
// granted QoS, receiving what mosquitto_pub sends, publishing (QoS 2) to a
// mosquitto_sub, and a screenshot of the State view (also
// docs/img/console-state.png when MQTTBRIDGE_SCREENSHOT is set).
func TestConsoleInBrowser(t *testing.T) {
	needNode(t)
	if _, err := os.Stat(chromium); err != nil {
		testenv.SkipMissing(t, "%s is missing, so the console is not tested in a browser. Run `make web-deps` as root (apt-get install chromium).", chromium)
	}
	b := startBridge(t)
	_, root := buildBridge(t)
	shot := filepath.Join(t.TempDir(), "console.png")
	runNode(t, root, 100*time.Second, nil, "--test-reporter=spec",
		filepath.Join("web", "e2e", "console.test.mjs"), b.base, fmt.Sprint(b.mqttPort), shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Errorf("the screenshot is not a plausible PNG (%d bytes)", len(png))
	}
}

// TestMQTTJSInBrowser runs MQTT.js (its browser bundle from npm) inside
// Chromium against /mqtt of the real bridge and its embedded broker.
func TestMQTTJSInBrowser(t *testing.T) {
	needNode(t)
	if _, err := os.Stat(chromium); err != nil {
		testenv.SkipMissing(t, "%s is missing, so MQTT.js is not tested in a browser. Run `make web-deps` as root (apt-get install chromium).", chromium)
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "mqtt", "dist", "mqtt.min.js")); err != nil {
		testenv.SkipMissing(t, "the npm package mqtt is not installed in web/e2e, so MQTT.js is not tested in a browser. Run `make web-deps`.")
	}
	b := startBridge(t)
	_, root := buildBridge(t)
	runNode(t, root, 75*time.Second, nil, "--test-reporter=spec",
		filepath.Join("web", "e2e", "mqttjs-browser.test.mjs"), b.base, fmt.Sprint(b.mqttPort))
}
