package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge"
	"github.com/mqttbridge/mqttbridge/internal/apitest"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/frametest"
)

func TestMain(m *testing.M) {
	// The exit-code tests run this test binary as the real command.
	if os.Getenv("MQTTBRIDGE_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// instance is one running Main with an HTTP client that validates every
// request and response against openapi.yaml.
type instance struct {
	*Main
	base   string
	api    *apitest.Validator
	frames *frametest.Validator
	client *http.Client
}

// start runs Main with args (flags, as on the command line) on a free port.
func start(tb testing.TB, args ...string) *instance {
	tb.Helper()
	return startWith(tb, nil, args...)
}

// startWith is start with a change to the loaded configuration.
func startWith(tb testing.TB, change func(*config.Config), args ...string) *instance {
	tb.Helper()
	cfg, err := config.Load(append([]string{"--http-addr", "127.0.0.1:0"}, args...), func(string) string { return "" })
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	if change != nil {
		change(&cfg)
	}
	return runInstance(tb, cfg, slog.New(slog.NewTextHandler(newTBWriter(tb), &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// runInstance runs Main with cfg, logging to logger, and closes it when
// the test ends.
func runInstance(tb testing.TB, cfg config.Config, logger *slog.Logger) *instance {
	tb.Helper()
	m := NewMain(cfg)
	m.Logger = logger
	// Run returns once the HTTP API listens, whatever is down.
	ran := make(chan error, 1)
	go func() { ran <- m.Run(context.Background()) }()
	select {
	case err := <-ran:
		if err != nil {
			_ = m.Close(context.Background())
			tb.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("run: Run did not return within 30 s")
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	scheme := "http://"
	if cfg.HTTP.TLS.Enabled() {
		scheme = "https://"
	}
	return &instance{
		Main:   m,
		base:   scheme + m.HTTPAddr.String(),
		api:    apitest.New(tb, mqttbridge.OpenAPI),
		frames: frametest.New(tb, mqttbridge.AsyncAPI),
		client: &http.Client{Timeout: 15 * time.Second},
	}
}

// tbWriter logs to the test until it ends: a hijacked connection's
// handler may log its request line after Main.Close has returned, and
// testing panics on a log after the test.
type tbWriter struct {
	tb   testing.TB
	mu   *sync.Mutex
	done *bool
}

// newTBWriter must be made before the instance whose logs it takes, so that
// it stops after the instance's Close (cleanups run last first).
func newTBWriter(tb testing.TB) tbWriter {
	w := tbWriter{tb: tb, mu: new(sync.Mutex), done: new(bool)}
	tb.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// do sends a request validated against the spec and returns status, header
// and body.
func (in *instance) do(tb testing.TB, method, path string, body []byte, header ...string) (*http.Response, []byte) {
	tb.Helper()
	return in.api.Do(tb, in.client, in.request(tb, method, path, body, header...))
}

// doBad sends a request that is wrong on purpose; only the response is
// checked against the spec.
func (in *instance) doBad(tb testing.TB, method, path string, body []byte, header ...string) (*http.Response, []byte) {
	tb.Helper()
	return in.api.DoUnchecked(tb, in.client, in.request(tb, method, path, body, header...))
}

func (in *instance) request(tb testing.TB, method, path string, body []byte, header ...string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, in.base+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// waitReady polls /readyz until it answers 200.
func (in *instance) waitReady(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := in.client.Get(in.base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				tb.Fatalf("not ready after 20s: %d %s", resp.StatusCode, body)
			}
		} else if time.Now().After(deadline) {
			tb.Fatalf("not ready after 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventually retries check until it returns "" or 10 s pass.
func eventually(tb testing.TB, what string, check func() string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func decode[T any](tb testing.TB, body []byte) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		tb.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

// mosquittoPub runs the real mosquitto_pub client.
func mosquittoPub(tb testing.TB, port int, args ...string) {
	tb.Helper()
	out, err := exec.Command("mosquitto_pub", append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", "mqttv5", "-q", "1"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
	}
}
