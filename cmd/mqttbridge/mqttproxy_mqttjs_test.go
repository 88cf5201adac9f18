package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// TestMQTTJS runs web/e2e/mqttproxy.test.mjs: the real MQTT.js, from npm,
// through /mqtt of a real bridge to a private Mosquitto, in MQTT 3.1.1 and
// 5 (connect, subscribe, publish QoS 0/1/2, retained, will, keep alive,
// refused filters and publishes, client ids per identity, and a broker
// restart, which this test performs when the script asks). It skips, and
// says why, without node or `make web-deps`.
func TestMQTTJS(t *testing.T) {
	testenv.Long(t, "MQTT.js in Node through /mqtt")
	if _, err := exec.LookPath("node"); err != nil {
		testenv.SkipMissing(t, "node is not installed, so MQTT.js is not tested through /mqtt. Install Node.js 20+ and run `make web-deps`.")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "web", "e2e", "node_modules", "mqtt", "package.json")); err != nil {
		testenv.SkipMissing(t, "the npm package mqtt is not installed in web/e2e, so MQTT.js is not tested through /mqtt. Run `make web-deps`.")
	}
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	const aliceKey, bobKey = "mbk_alice-0123456789", "mbk_bob-0123456789"
	rules := config.Rules{
		Publish:   []string{"users/%u/#", "public/#", "status/%c"},
		Subscribe: []string{"users/%u/#", "public/#"},
	}
	in := startWith(t, func(c *config.Config) {
		c.Auth.APIKeys = []config.APIKey{
			{Name: "alice", SHA256: auth.HashKey(aliceKey), Rules: rules},
			{Name: "bob", SHA256: auth.HashKey(bobKey), Rules: rules},
		}
		c.MQTT.ReconnectMax = config.Duration(500 * time.Millisecond)
	}, "--mqtt-url", m.URL)
	in.waitReady(t)

	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/restart" {
			http.NotFound(w, r)
			return
		}
		m.Stop()
		time.Sleep(300 * time.Millisecond)
		m.Start()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(control.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", filepath.Join("web", "e2e", "mqttproxy.test.mjs"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"MQTTBRIDGE_PROXY_URL="+in.mqttURL(),
		"MQTTBRIDGE_BROKER_URL="+m.URL,
		"MQTTBRIDGE_ALICE_KEY="+aliceKey,
		"MQTTBRIDGE_BOB_KEY="+bobKey,
		"MQTTBRIDGE_CONTROL_URL="+control.URL,
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node did not finish within 3 minutes:\n%s", out)
	case err != nil:
		t.Fatalf("node --test web/e2e/mqttproxy.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	// Every test ran: none was skipped for a missing variable.
	if s := string(out); !strings.Contains(s, "pass 16") || !strings.Contains(s, "skipped 0") {
		t.Errorf("expected 16 passing MQTT.js tests and none skipped")
	}
	// The broker saw every client id behind its identity's key (API keys:
	// "key:<name>", see docs/security.md).
	for _, who := range []string{"key:alice", "key:bob"} {
		if !strings.Contains(m.Log(), " as "+who+"/") {
			t.Errorf("Mosquitto's log has no client id starting with %s/", who)
		}
	}
}
