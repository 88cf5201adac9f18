package testenv

import (
	"runtime"
	"testing"
)

// recordTB records how a helper ended a test.
type recordTB struct {
	testing.TB
	how string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.how = "fatal"
	runtime.Goexit()
}
func (r *recordTB) Skip(args ...any) {
	r.how = "skip"
	runtime.Goexit()
}

// A missing tool skips the test, except in CI, where it fails it.
func TestSkipMissing(t *testing.T) {
	for ci, want := range map[string]string{"": "skip", "false": "skip", "true": "fatal"} {
		t.Setenv("CI", ci)
		r := &recordTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			SkipMissing(r, "node is %s", "missing")
		}()
		<-done
		if r.how != want {
			t.Errorf("CI=%q: %s, want %s", ci, r.how, want)
		}
	}
}
