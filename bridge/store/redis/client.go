package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client defaults that NewClient and NewUniversalClient apply when the URL
// does not set them.
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
	return NewUniversalClient(ClientConfig{URL: rawURL})
}

// ClientConfig says which Redis deployment NewUniversalClient reaches: a
// single Redis (URL alone), Redis Sentinel (MasterName and SentinelAddrs)
// or Redis Cluster (ClusterAddrs).
type ClientConfig struct {
	// URL is redis:// or rediss:// (TLS). Alone, it names the single Redis:
	// host, port, credentials, database and go-redis options in the query
	// (see redis.ParseURL). With Sentinel or Cluster it must have no host
	// (e.g. "rediss://:password@/2") and gives only what every node
	// shares: user, password, database (Sentinel only; Cluster has
	// database 0 alone), TLS and options. It may then be empty: plain TCP,
	// no password, database 0.
	URL string
	// Password, when set, is the Redis password in place of the URL's.
	Password string

	// MasterName and SentinelAddrs (host:port, at least one) select Redis
	// Sentinel: the client asks the sentinels for the current master of
	// MasterName and follows failovers. SentinelUsername and
	// SentinelPassword authenticate to the sentinels themselves (their
	// own requirepass or ACL user), not to the master.
	MasterName       string
	SentinelAddrs    []string
	SentinelUsername string
	SentinelPassword string

	// ClusterAddrs (host:port, at least one) select Redis Cluster: the
	// client learns the other nodes and the slot map from these.
	ClusterAddrs []string
}

// NewUniversalClient returns a client for the deployment cfg describes: a
// *redis.Client for a single Redis, a failover *redis.Client for Sentinel
// (through redis.NewUniversalClient), or a *redis.ClusterClient. Every
// kind gets the timeouts of NewClient: a 2 s dial and read timeout unless
// the URL sets them, the write timeout following the read timeout, one
// dial per attempt, and ContextTimeoutEnabled, so that a context deadline
// bounds every call (the sentinels' connections included). It does not
// connect; the first command does.
//
// The caller owns the client and closes it after the stores that use it.
// The error never contains a password.
func NewUniversalClient(cfg ClientConfig) (redis.UniversalClient, error) {
	sentinel := cfg.MasterName != "" || len(cfg.SentinelAddrs) > 0
	cluster := len(cfg.ClusterAddrs) > 0
	switch {
	case sentinel && cluster:
		return nil, errors.New("redisstore: both Sentinel and Cluster addresses given; choose one")
	case sentinel && cfg.MasterName == "":
		return nil, errors.New("redisstore: Sentinel needs the master's name")
	case sentinel && len(cfg.SentinelAddrs) == 0:
		return nil, errors.New("redisstore: Sentinel needs at least one sentinel address")
	case !sentinel && !cluster && cfg.URL == "":
		return nil, errors.New("redisstore: no Redis URL")
	}
	for _, list := range [][]string{cfg.SentinelAddrs, cfg.ClusterAddrs} {
		for _, a := range list {
			if err := checkAddr(a); err != nil {
				return nil, err
			}
		}
	}

	opt := &redis.Options{}
	if cfg.URL != "" {
		var err error
		if opt, err = parseURL(cfg.URL, sentinel || cluster); err != nil {
			return nil, err
		}
	}
	if cfg.Password != "" {
		opt.Password = cfg.Password
	}
	if cluster && opt.DB != 0 {
		return nil, fmt.Errorf("redisstore: Redis Cluster has only database 0, not %d", opt.DB)
	}
	applyDefaults(opt)

	if !sentinel && !cluster {
		return redis.NewClient(opt), nil
	}
	if opt.TLSConfig != nil {
		// ParseURL named the URL's (absent) host; each node's own address
		// is the name to verify instead.
		opt.TLSConfig.ServerName = ""
	}
	u := universalOptions(opt)
	if sentinel {
		u.MasterName = cfg.MasterName
		u.Addrs = append([]string(nil), cfg.SentinelAddrs...)
		u.SentinelUsername, u.SentinelPassword = cfg.SentinelUsername, cfg.SentinelPassword
	} else {
		u.Addrs = append([]string(nil), cfg.ClusterAddrs...)
		u.IsClusterMode = true // also with a single seed address
	}
	return redis.NewUniversalClient(u), nil
}

// parseURL parses a redis:// or rediss:// URL without ever quoting it; with
// noHost the URL must not name a host.
func parseURL(raw string, noHost bool) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) { // url.Error quotes the whole URL
			err = uerr.Err
		}
		return nil, fmt.Errorf("redisstore: invalid Redis URL: %w", err)
	}
	if noHost && u.Host != "" {
		return nil, fmt.Errorf("redisstore: with Sentinel or Cluster the Redis URL must have no host (like rediss://:password@/0), not %q", u.Host)
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("redisstore: invalid Redis URL: %w", err)
	}
	if noHost && opt.Network != "tcp" {
		return nil, fmt.Errorf("redisstore: with Sentinel or Cluster the Redis URL is redis:// or rediss://, not %s://", u.Scheme)
	}
	return opt, nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("redisstore: address %q: %w", a, err)
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("redisstore: address %q: want host:port", a)
	}
	return nil
}

// applyDefaults bounds every call: see NewClient.
func applyDefaults(opt *redis.Options) {
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
}

// universalOptions carries every option redis.ParseURL can set, and the
// defaults above, over to the Sentinel and Cluster clients.
func universalOptions(o *redis.Options) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		ClientName: o.ClientName,
		DB:         o.DB,
		Protocol:   o.Protocol,
		Username:   o.Username,
		Password:   o.Password,

		MaxRetries:      o.MaxRetries,
		MinRetryBackoff: o.MinRetryBackoff,
		MaxRetryBackoff: o.MaxRetryBackoff,

		DialTimeout:           o.DialTimeout,
		DialerRetries:         o.DialerRetries,
		DialerRetryTimeout:    o.DialerRetryTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: o.ContextTimeoutEnabled,

		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,

		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		MaxConcurrentDials:    o.MaxConcurrentDials,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		ConnMaxLifetimeJitter: o.ConnMaxLifetimeJitter,

		TLSConfig: o.TLSConfig,
	}
}
