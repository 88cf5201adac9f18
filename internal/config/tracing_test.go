package config

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTracingConfig(t *testing.T) {
	cfg, err := Default(), error(nil)
	if cfg.Tracing.Enabled() {
		t.Fatal("tracing is on by default")
	}
	dir := t.TempDir()
	writeFile(t, dir, "otlp.headers", "# from the vendor\nX-Api-Key: k1\n\nX-Team:  ops \n")
	cfgPath := writeFile(t, dir, "mqttbridge.yaml", "tracing:\n  otlp_endpoint: http://collector:4318\n  headers_file: otlp.headers\n"+
		"  sample_ratio: 0.25\n  service_name: bridge-eu\n  batch_timeout: 200ms\n")
	cfg, err = Load([]string{"--config", cfgPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Tracing
	if !tr.Enabled() || tr.SampleRatio != 0.25 || tr.ServiceName != "bridge-eu" || tr.BatchTimeout != Duration(200*time.Millisecond) ||
		tr.HeadersFile != filepath.Join(dir, "otlp.headers") || len(tr.Headers) != 2 || tr.Headers["X-Api-Key"] != "k1" || tr.Headers["X-Team"] != "ops" {
		t.Fatalf("tracing = %#v, headers %d", tr, len(tr.Headers))
	}
	for endpoint, want := range map[string]string{
		"http://collector:4318":          "http://collector:4318/v1/traces",
		"https://collector:4318/":        "https://collector:4318/v1/traces",
		"https://otlp.example.com/otlp1": "https://otlp.example.com/otlp1",
		"http://c:4318/v1/traces":        "http://c:4318/v1/traces",
	} {
		if got := (Tracing{OTLPEndpoint: endpoint}).ExportURL(); got != want {
			t.Errorf("ExportURL(%s) = %s, want %s", endpoint, got, want)
		}
	}

	// Flags over the environment over the file.
	environ := map[string]string{
		"MQTTBRIDGE_TRACING_OTLP_ENDPOINT": "http://env:4318",
		"MQTTBRIDGE_TRACING_SAMPLE_RATIO":  "0.5",
		"MQTTBRIDGE_TRACING_SERVICE_NAME":  "from-env",
		"MQTTBRIDGE_TRACING_HEADERS":       "Authorization=Basic%20dXNlcjpwdw==, X-Org = acme",
	}
	cfg, err = loadYAML(t, "tracing:\n  otlp_endpoint: http://file:4318\n  sample_ratio: 0.1\n", []string{"--tracing-otlp-endpoint", "https://flag:4318"}, environ)
	if err != nil {
		t.Fatal(err)
	}
	tr = cfg.Tracing
	if tr.OTLPEndpoint != "https://flag:4318" || tr.SampleRatio != 0.5 || tr.ServiceName != "from-env" ||
		tr.Headers["Authorization"] != "Basic dXNlcjpwdw==" || tr.Headers["X-Org"] != "acme" || len(tr.Headers) != 2 {
		t.Fatalf("tracing = %#v, headers %d", tr, len(tr.Headers))
	}
	// sample_ratio 0 is a value, not "unset".
	cfg, err = loadYAML(t, "tracing:\n  otlp_endpoint: http://c:4318\n  sample_ratio: 0\n", nil, nil)
	if err != nil || cfg.Tracing.SampleRatio != 0 {
		t.Fatalf("sample_ratio 0: %v %v", cfg.Tracing.SampleRatio, err)
	}
}

func TestTracingProblems(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	comments := writeFile(t, dir, "comments", "# nothing\n")
	bad := writeFile(t, dir, "bad", "X-Ok: 1\nsecret-without-colon\n")
	on := "tracing:\n  otlp_endpoint: http://c:4318\n"
	for _, c := range []struct {
		yaml    string
		environ map[string]string
		key     string
		want    []string
	}{
		{"tracing:\n  otlp_endpoint: grpc://c:4317\n", nil, "tracing.otlp_endpoint", []string{`unsupported scheme "grpc"`}},
		{"tracing:\n  otlp_endpoint: c:4318\n", nil, "tracing.otlp_endpoint", []string{"not a URL with a host"}},
		{"tracing:\n  otlp_endpoint: http:///v1/traces\n", nil, "tracing.otlp_endpoint", []string{"has no host"}},
		{"tracing:\n  otlp_endpoint: http://c:99999\n", nil, "tracing.otlp_endpoint", []string{"port"}},
		{"tracing:\n  otlp_endpoint: http://c:4318/?key=1\n", nil, "tracing.otlp_endpoint", []string{"no query"}},
		{"tracing:\n  otlp_endpoint: http://u:pw@c:4318\n", nil, "tracing.otlp_endpoint", []string{"credentials in the URL", "tracing.headers"}},
		{on + "  sample_ratio: 1.5\n", nil, "tracing.sample_ratio", []string{"from 0 to 1"}},
		{on + "  sample_ratio: -0.1\n", nil, "tracing.sample_ratio", []string{"from 0 to 1"}},
		{on, map[string]string{"MQTTBRIDGE_TRACING_SAMPLE_RATIO": "most"}, "tracing.sample_ratio", []string{"want a number", "(from MQTTBRIDGE_TRACING_SAMPLE_RATIO)"}},
		{on + "  service_name: ' '\n", nil, "tracing.service_name", []string{"empty"}},
		{on + "  batch_timeout: 0s\n", nil, "tracing.batch_timeout", []string{"positive"}},
		{on + "  headers: {'Bad Name': x}\n", nil, "tracing.headers", []string{`"Bad Name" is not valid`}},
		{on + "  headers: {content-type: text/plain}\n", nil, "tracing.headers", []string{"set by the exporter"}},
		{on + "  headers: {X-Key: \"a\\nb\"}\n", nil, "tracing.headers", []string{"one line"}},
		{"tracing:\n  headers: {X-Key: a}\n", nil, "tracing.headers", []string{"only used with tracing.otlp_endpoint"}},
		{on + "  headers: {X-Key: a}\n  headers_file: " + bad + "\n", nil, "tracing.headers_file", []string{"set together with tracing.headers"}},
		{on + "  headers_file: " + filepath.Join(dir, "missing") + "\n", nil, "tracing.headers_file", []string{"cannot read"}},
		{on + "  headers_file: " + empty + "\n", nil, "tracing.headers_file", []string{"is empty"}},
		{on + "  headers_file: " + comments + "\n", nil, "tracing.headers_file", []string{"no \"Name: value\" line"}},
		{on + "  headers_file: " + bad + "\n", nil, "tracing.headers_file", []string{"line 2", `want "Name: value"`}},
		{on, map[string]string{"MQTTBRIDGE_TRACING_HEADERS": "X-Ok=1,nothing"}, "tracing.headers", []string{"item 2: want Name=value"}},
		{on, map[string]string{"MQTTBRIDGE_TRACING_HEADERS": "X-Key=%zz"}, "tracing.headers", []string{"item 1 (X-Key)", "percent-encoded"}},
	} {
		_, err := loadYAML(t, c.yaml, nil, c.environ)
		ve := requireProblem(t, err, c.key, c.want...)
		for _, secret := range []string{"pw@", "secret-without-colon", "%zz", "a\nb"} {
			if strings.Contains(ve.Error(), secret) {
				t.Errorf("the problem %q shows a secret", ve)
			}
		}
	}
}

// Header values and an endpoint's password never show in the printed or
// logged configuration.
func TestTracingSecretsNeverShown(t *testing.T) {
	const token = "Bearer Zq9xTopSecretToken"
	cfg, err := loadYAML(t, fmt.Sprintf("tracing:\n  otlp_endpoint: http://c:4318\n  headers: {Authorization: %q}\n", token), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg.Tracing), fmt.Sprintf("%#v", cfg.Tracing),
		fmt.Sprint(cfg.Redacted().Tracing), logged.String()} {
		if strings.Contains(s, "Zq9xTopSecret") {
			t.Fatalf("a secret is shown:\n%s", s)
		}
		if !strings.Contains(s, "Authorization") {
			t.Fatalf("the header's name is missing:\n%s", s)
		}
	}
	if cfg.Tracing.Headers["Authorization"] != token {
		t.Fatal("Redacted changed the configuration")
	}
	if got := (Tracing{OTLPEndpoint: "http://u:pw@c:4318"}).String(); strings.Contains(got, "pw") {
		t.Fatalf("the endpoint's password is shown: %s", got)
	}
}
