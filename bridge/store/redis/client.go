package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client defaults that NewClient applies when the URL does not set them.
const (
	defaultDialTimeout = 2 * time.Second
	defaultIOTimeout   = 2 * time.Second
)

// NewClient returns a client for a redis:// or rediss:// (TLS) URL, for
// example redis://user:password@host:6379/0 (the query may set go-redis
// options such as dial_timeout=1s; see redis.ParseURL). It sets a 2 s dial
// and read timeout unless the URL sets them (the write timeout follows the
// read timeout), dials once per attempt instead of five times, and enables
// ContextTimeoutEnabled so that a context deadline bounds every call. It
// does not connect; the first command does.
//
// The caller owns the client and closes it after the stores that use it.
// The error never contains the URL's password.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) { // url.Error quotes the whole URL
			err = uerr.Err
		}
		return nil, fmt.Errorf("redisstore: invalid Redis URL: %w", err)
	}
	if opt.DialTimeout == 0 {
		opt.DialTimeout = defaultDialTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = defaultIOTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = opt.ReadTimeout // as go-redis does
	}
	if opt.DialerRetries == 0 {
		// Fail fast while Redis is down (go-redis would try 5 times, 100 ms
		// apart, on every dial); commands are still retried (MaxRetries).
		opt.DialerRetries = 1
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}
