package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestRequestAndWebhookRules(t *testing.T) {
	hook := func(extra string) string {
		return "webhooks:\n  - {name: erp, filters: [orders/#], url: 'https://erp.example.com/h'" + extra + "}\n"
	}
	tests := []struct {
		name, yaml, key string
		want            []string
	}{
		{"reply_prefix without slash", "request: {reply_prefix: replies}", "request.reply_prefix", []string{`"replies"`, "end with /"}},
		{"reply_prefix wildcard", "request: {reply_prefix: a/+/}", "request.reply_prefix", []string{"wildcard"}},
		{"reply_prefix empty", "request: {reply_prefix: ''}", "request.reply_prefix", []string{"empty"}},
		{"timeout over max", "request: {timeout: 2m}", "request.timeout", []string{"longer than request.max_timeout"}},
		{"max_timeout", "request: {max_timeout: 0s}", "request.max_timeout", []string{"positive"}},
		{"webhook name missing", "webhooks: [{filters: [a], url: 'http://x'}]", "webhooks[0].name", []string{"missing"}},
		{"webhook name charset", "webhooks: [{name: 'a b', filters: [a], url: 'http://x'}]", "webhooks[0].name", []string{"A-Z"}},
		{"webhook name twice", hook("") + "  - {name: erp, filters: [a], url: 'http://x'}\n", "webhooks[1].name", []string{"already the name of webhooks[0]"}},
		{"webhook no filters", "webhooks: [{name: a, url: 'http://x'}]", "webhooks[0].filters", []string{"at least one"}},
		{"webhook bad filter", "webhooks: [{name: a, filters: ['a/#/b'], url: 'http://x'}]", "webhooks[0].filters[0]", []string{"a/#/b"}},
		{"webhook filter not bridged", "mqtt: {topics: [plant/#]}\n" + hook(""), "webhooks[0].filters[0]", []string{"matches no bridged topic"}},
		{"webhook url", "webhooks: [{name: a, filters: [a], url: 'ftp://x'}]", "webhooks[0].url", []string{"http:// or https://"}},
		{"webhook url missing", "webhooks: [{name: a, filters: [a]}]", "webhooks[0].url", []string{"required"}},
		{"webhook body", hook(", body: xml"), "webhooks[0].body", []string{`"xml"`, "envelope, raw"}},
		{"webhook secret", hook(", secret: hunter2"), "webhooks[0].secret", []string{"whsec_"}},
		{"webhook secret short", hook(", secret: whsec_AAAA"), "webhooks[0].secret", []string{"24 to 64 bytes"}},
		{"webhook reserved header", hook(", headers: {webhook-signature: x}"), "webhooks[0].headers", []string{"set by the bridge"}},
		{"webhook header newline", hook(", headers: {X-A: \"a\\nb\"}"), "webhooks[0].headers", []string{"one line"}},
		{"webhook retries", hook(", retries: -1"), "webhooks[0].retries", []string{"between 0 and 100"}},
		{"webhook timeout", hook(", timeout: -1s"), "webhooks[0].timeout", []string{"negative"}},
		{"webhook claim_idle", hook(", timeout: 30s"), "webhooks[0].claim_idle", []string{"longer than the timeout 30s"}},
		{"webhook backoff", hook(", backoff_min: 10s, backoff_max: 1s"), "webhooks[0].backoff_max", []string{"less than backoff_min"}},
		{"webhook concurrency", hook(", concurrency: -2"), "webhooks[0].concurrency", []string{"between 1 and 1000"}},
		{"webhook secret and file", hook(", secret: " + testSecret + ", secret_file: /nonexistent"), "webhooks[0].secret_file", []string{"set together"}},
		{"webhook secret file missing", hook(", secret_file: /nonexistent/secret"), "webhooks[0].secret_file", []string{"cannot read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			requireProblem(t, err, tt.key, tt.want...)
		})
	}
}

// The commented-out webhooks of the example are valid once uncommented,
// and secret_file is read relative to the file.
func TestWebhookExample(t *testing.T) {
	data, err := os.ReadFile("../../mqttbridge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for line := range strings.SplitSeq(string(data), "\n") {
		if line == "# webhooks:" {
			in = true
		}
		if in && !strings.HasPrefix(line, "#") {
			break
		}
		if in {
			block = append(block, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		}
	}
	if len(block) < 10 {
		t.Fatalf("webhooks example not found: %q", block)
	}
	cfg, err := loadYAML(t, strings.Join(block, "\n")+"\n", nil, nil)
	if err != nil {
		t.Fatalf("the webhooks example is not valid:\n%v", err)
	}
	if len(cfg.Webhooks) != 1 || cfg.Webhooks[0].Secret != testSecret {
		t.Fatalf("webhooks %v", cfg.Webhooks)
	}
	w := cfg.Webhooks[0].WebhookConfig()
	if w.Attempts != 9 || w.Timeout != 10*time.Second || w.ClaimIdle != 30*time.Second || w.Body != "envelope" {
		t.Fatalf("webhook config %+v", w)
	}

	// secret_file instead, relative to the file; one trailing newline is
	// not part of it.
	dir := t.TempDir()
	writeFile(t, dir, "erp.secret", testSecret+"\n")
	yaml := strings.Replace(strings.Join(block, "\n"), "secret: "+testSecret, "secret_file: erp.secret", 1)
	cfg, err = Load([]string{"--config", writeFile(t, dir, "c.yaml", yaml+"\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Webhooks[0].Secret; got != testSecret {
		t.Fatalf("secret from the file: %q", got)
	}
}

func TestRetriesMapToAttempts(t *testing.T) {
	zero, three := 0, 3
	for _, c := range []struct {
		retries *int
		want    int
	}{{nil, 0}, {&zero, 1}, {&three, 4}} {
		if got := (Webhook{Retries: c.retries}).WebhookConfig().Attempts; got != c.want {
			t.Errorf("retries %v: attempts %d, want %d", c.retries, got, c.want)
		}
	}
}

// Webhook secrets and header values never show in the printed config.
func TestWebhookSecretsNeverShown(t *testing.T) {
	const token = "Bearer Zq9xTopSecretToken"
	cfg, err := loadYAML(t, fmt.Sprintf("webhooks: [{name: erp, filters: ['#'], url: 'https://x/', secret: %s, headers: {Authorization: %q}}]", testSecret, token), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg.Webhooks), fmt.Sprintf("%#v", cfg.Webhooks[0]), fmt.Sprint(cfg.Redacted().Webhooks)} {
		if strings.Contains(s, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") || strings.Contains(s, "Zq9xTopSecret") {
			t.Fatalf("a secret is shown:\n%s", s)
		}
	}
	if cfg.Webhooks[0].Secret != testSecret || cfg.Webhooks[0].Headers["Authorization"] != token {
		t.Fatal("Redacted changed the configuration")
	}
}

func TestReplyPrefix(t *testing.T) {
	cfg, err := Load([]string{"--instance-id", "bridge-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ReplyPrefix(); got != "mqttbridge/reply/bridge-1/" {
		t.Fatalf("ReplyPrefix = %q", got)
	}
}
