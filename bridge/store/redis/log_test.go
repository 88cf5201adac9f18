package redisstore

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// go-redis lines that differ only in their digits are logged once per
// window, in the service's format at warn level; the next one logged after
// the window counts those left out. Other lines are logged at once.
func TestLoggerDeduplicates(t *testing.T) {
	var out testenv.SyncBuffer
	l := newLogger(slog.New(slog.NewJSONHandler(&out, nil)).With("component", "redis"), time.Second)
	ctx := context.Background()
	for i := range 50 {
		l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: dial tcp 127.0.0.1:%d: connect: connection refused", 1+i%2, 1000+i)
	}
	l.Printf(ctx, "sentinel: new master=%q addr=%q", "m", "10.0.0.1:6379")
	time.Sleep(1100 * time.Millisecond)
	l.Printf(ctx, "redis: connection pool: failed to dial after %d attempts: dial tcp 127.0.0.1:%d: connect: connection refused", 1, 1)

	type line struct {
		Level, Msg, Component string
		Repeated              int
	}
	var lines []line
	for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("not a JSON log line: %q", s)
		}
		lines = append(lines, l)
	}
	want := []line{
		{"WARN", "redis: connection pool: failed to dial after 1 attempts: dial tcp 127.0.0.1:1000: connect: connection refused", "redis", 0},
		{"WARN", `sentinel: new master="m" addr="10.0.0.1:6379"`, "redis", 0},
		{"WARN", "redis: connection pool: failed to dial after 1 attempts: dial tcp 127.0.0.1:1: connect: connection refused", "redis", 49},
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, lines[i], want[i])
		}
	}
}

// The lines a logger remembers are bounded: past maxLines distinct lines
// it forgets, and goes on logging.
func TestLoggerBounded(t *testing.T) {
	var out testenv.SyncBuffer
	l := newLogger(slog.New(slog.NewTextHandler(&out, nil)), time.Hour)
	for i := range 3 * maxLines {
		l.Printf(context.Background(), "line %s", strings.Repeat("x", i))
	}
	if n := strings.Count(out.String(), "\n"); n != 3*maxLines {
		t.Errorf("%d lines logged, want %d", n, 3*maxLines)
	}
	if len(l.seen) > maxLines {
		t.Errorf("%d lines remembered, more than %d", len(l.seen), maxLines)
	}
}
