package httpapi

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends what it started: streams and long polls leave no
// goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
