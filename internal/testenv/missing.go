package testenv

import (
	"fmt"
	"os"
	"testing"
)

// SkipMissing skips a test that needs a tool that is not installed (Node,
// an npm package, Chromium), saying what to install; in CI (CI=true) it
// fails the test instead, so that a CI image without the tool cannot pass
// by testing less.
func SkipMissing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true, and %s", msg)
	}
	tb.Skip("SKIPPED: " + msg)
}

// Long skips a test under go test -short (make check): the multi-process
// fleets, Redis Sentinel and Cluster, browsers, rolling restarts and chaos
// runs are make test's alone.
func Long(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: " + what + " runs in make test")
	}
}
