package bridge_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends what it started: feeds, subscriptions and replays leave
// no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
