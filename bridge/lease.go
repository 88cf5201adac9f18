package bridge

import (
	"context"
	"errors"
	"time"
)

// errLeaseLost: another holder has the lease.
var errLeaseLost = errors.New("the lease was lost")

// keepLease renews the lease name every third of ttl until ctx ends (it
// returns nil), the lease is lost (errLeaseLost), or renewals failed for
// two thirds of ttl (the last error): it gives up before the lease can
// expire, so that no two holders overlap.
func keepLease(ctx context.Context, leases Leases, name, token string, ttl time.Duration) error {
	renewed := time.Now()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		ok, err := leases.Renew(ctx, name, token, ttl)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && ok:
			renewed = time.Now()
		case err == nil:
			return errLeaseLost
		case time.Since(renewed) > ttl*2/3:
			return err
		}
	}
}

// Leases hands out named, expiring leases, one holder at a time: the
// instance that holds a broker's ingest lease is the only one that
// subscribes to it and writes its messages. The Redis implementation serves
// a fleet; the memory one, one process.
type Leases interface {
	// Acquire takes the lease name for ttl when no one holds it, and returns
	// its fencing token; ok is false when another holder has it.
	Acquire(ctx context.Context, name string, ttl time.Duration) (token string, ok bool, err error)
	// Renew extends the lease for ttl if token still holds it; false when
	// it was lost.
	Renew(ctx context.Context, name, token string, ttl time.Duration) (bool, error)
	// Release gives the lease up if token holds it.
	Release(ctx context.Context, name, token string) error
}

// FencedStore is a Store shared by several instances: PutFenced records a
// message only while token holds the lease name, in the same atomic step,
// so that an instance that lost its lease (and does not know it yet)
// cannot write. It returns ErrFenced otherwise.
type FencedStore interface {
	PutFenced(ctx context.Context, msg Message, lease, token string) (Message, error)
}

// Tailer is a Store whose history several instances share: Tail calls fn
// with every message recorded after the id after, in order, as they are
// recorded, until ctx ends. It survives a lost connection by resuming from
// the last id it delivered. Each instance tails the history to deliver to
// its own clients what the ingest owner recorded.
//
// When messages after the last id delivered left the history window before
// the tail read them (the tail was paused, overloaded or cut off from the
// store for longer than the window lasts), Tail calls gap, in order between
// the last message delivered before the hole and the first one after it,
// and continues from the oldest message still in the window.
type Tailer interface {
	Tail(ctx context.Context, after string, fn func([]Message), gap func(Gap)) error
}

// Backlogger is a Tailer that can tell how far a reader is behind: the
// number of messages recorded after the id after (counting stops at
// limit) and the received_at of the oldest of them (zero when none).
type Backlogger interface {
	Backlog(ctx context.Context, after string, limit int) (n int, oldest time.Time, err error)
}
