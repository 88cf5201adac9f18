package logbuf

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// Info lines wait (at most Delay), a warning takes them out at once, in
// order, and Flush writes the rest.
func TestInfoWaitsWarningFlushes(t *testing.T) {
	var out testenv.SyncBuffer
	w := New(&out)
	log := slog.New(Handler(slog.NewTextHandler(w, nil), w)).With("component", "x")
	log.Info("one")
	if out.String() != "" {
		t.Fatalf("an info line was written at once: %q", out.String())
	}
	log.Warn("two")
	got := out.String()
	if i, j := strings.Index(got, "msg=one"), strings.Index(got, "msg=two"); i < 0 || j < i || !strings.Contains(got, "component=x") {
		t.Fatalf("after a warning: %q", got)
	}
	log.Info("three")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "msg=three") {
		if time.Now().After(deadline) {
			t.Fatalf("an info line never came out: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Info("four")
	if err := w.Flush(); err != nil || !strings.Contains(out.String(), "msg=four") {
		t.Fatalf("after Flush (%v): %q", err, out.String())
	}
}

// A line longer than the buffer goes out whole, after what waited.
func TestLongLine(t *testing.T) {
	var out testenv.SyncBuffer
	w := New(&out)
	_, _ = w.Write([]byte("a\n"))
	long := strings.Repeat("b", Size+1) + "\n"
	if _, err := w.Write([]byte(long)); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\n"+long {
		t.Fatalf("got %d bytes", len(out.String()))
	}
}
