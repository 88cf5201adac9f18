package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The tracker counts what S1 reports: duplicates, messages out of order,
// and nothing before the first one received.
func TestS1Tracker(t *testing.T) {
	tr := newS1Tracker()
	for _, seq := range []int64{-1, 5, 6, 6, 8, 7, 3, 200, 5} {
		tr.record(seq)
	}
	if tr.first != 5 || tr.delivered != 5 || tr.dups != 2 || tr.reordered != 1 || tr.count.Load() != 5 {
		t.Fatalf("first %d delivered %d dups %d reordered %d count %d; want 5 5 2 1 5",
			tr.first, tr.delivered, tr.dups, tr.reordered, tr.count.Load())
	}
}

func TestS1SeqFromFrame(t *testing.T) {
	for _, c := range []struct {
		frame string
		want  int64
	}{
		{`{"type":"message","id":"1-0","topic":"bench/s1","payload":"000000000042xxxx","qos":1}`, 42},
		{`{"type":"message","id":"1-0","topic":"bench/s1","payload_base64":"AAAA"}`, -1},
		{`{"type":"message","payload":"00000000004"}`, -1},
		{`{"type":"welcome","session":"s","last_id":"0-0"}`, -1},
		{`{"type":"ok","ref":"1","payload":"000000000001"}`, -1},
	} {
		if got := s1SeqFromFrame([]byte(c.frame)); got != c.want {
			t.Errorf("%s: %d, want %d", c.frame, got, c.want)
		}
	}
}

func TestS1ParseBenchCSV(t *testing.T) {
	out := "\"test\",\"rps\",\"avg_latency_ms\"\n\"XADD {bench:}s1 MAXLEN ~ 10000 * topic bench/s1 payload xx props  received_at 1\",\"104166.67\",\"0.311\"\n"
	if rps, err := s1ParseBenchCSV([]byte(out)); err != nil || rps != 104166.67 {
		t.Fatalf("rps %v, %v", rps, err)
	}
	if _, err := s1ParseBenchCSV([]byte("ERROR: NOAUTH\n")); err == nil {
		t.Fatal("garbage parsed")
	}
	info := "# Commandstats\r\ncmdstat_xadd:calls=1200,usec=3000,usec_per_call=2.50,rejected_calls=0,failed_calls=3\r\ncmdstat_ping:calls=1\r\n"
	if calls, failed := s1CommandStat(info, "xadd"); calls != 1200 || failed != 3 {
		t.Fatalf("calls %d failed %d", calls, failed)
	}
}

// A smoke run, not a benchmark: the S1 generator against the real bridge
// binary, a private Mosquitto and a private Redis, for about a second per
// subscriber. Every message published must come back once, in order. No
// timing is asserted.
func TestS1StreamSmoke(t *testing.T) {
	bin := buildBridge(t)
	mosq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	_, redisURL := testenv.StartRedis(t, false)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bridge := testenv.StartProcess(t, "mqttbridge", httpAddr, nil, bin, "--http-addr", httpAddr,
		"--mqtt-url", mosq.URL, "--topics", "bench/#", "--redis-url", redisURL, "--redis-key-prefix", "bench:")
	for _, sub := range []string{"ws", "redis"} {
		t.Run(sub, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			res, err := runS1Stream(ctx, s1Config{
				MQTTAddr: fmt.Sprintf("127.0.0.1:%d", mosq.Port), Topic: "bench/s1", QoS: 1, Size: 64, Window: 100,
				Sub: sub, WSURL: "ws://" + httpAddr + "/v1/ws?filter=bench%2Fs1", RedisURL: redisURL, Stream: "{bench:}history",
				Duration: time.Second, Warmup: 200 * time.Millisecond, ClientID: "mqttbench-s1-smoke-" + sub,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d received in the window, %d published, %d delivered, %d probes", sub, res.Received, res.Published, res.Delivered, res.Probes)
			if !res.Valid || res.Received == 0 || res.Lost != 0 || res.Dups != 0 || res.Reordered != 0 || res.Delivered != res.Published {
				t.Fatalf("invalid run (%s): %+v\nbridge log:\n%s", res.Invalid, res, bridge.Log())
			}
		})
	}
}

// buildBridge builds cmd/mqttbridge into a temporary directory.
func buildBridge(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "mqttbridge")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/mqttbridge")
	build.Dir = ".." // the product's module
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/mqttbridge: %v\n%s", err, out)
	}
	return bin
}
