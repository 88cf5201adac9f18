package mqtt

import (
	"math/rand/v2"
	"time"
)

// newBackoff returns the delay before connection attempt n (n = 0 is the
// first attempt after start or after a lost connection, and is immediate):
// min, 2*min, 4*min, ... each plus up to 25% jitter, never more than max.
func newBackoff(minDelay, maxDelay time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		if attempt <= 0 {
			return 0
		}
		return backoffDelay(attempt-1, minDelay, maxDelay)
	}
}

// backoffDelay is the delay for retry n (n >= 0): minDelay doubled n times
// plus up to 25% jitter; once that passes maxDelay, a random delay between
// 75% and 100% of maxDelay (so that clients cut off together do not retry in
// lockstep).
func backoffDelay(n int, minDelay, maxDelay time.Duration) time.Duration {
	d := minDelay
	for i := 0; i < n && d < maxDelay; i++ {
		d *= 2
	}
	if d > 0 {
		d += rand.N(d/4 + 1)
	}
	if d > maxDelay {
		d = maxDelay - rand.N(maxDelay/4+1)
	}
	return d
}
