package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// LogEvery is how often SetLogger lets the same go-redis line through.
const LogEvery = 10 * time.Second

// SetLogger sends go-redis's own log lines (a pool that cannot dial, a
// Sentinel failover, ...), which it otherwise prints to stderr, to log at
// warn level. While Redis is down go-redis logs a line for every failed
// dial, many a second, so lines that differ only in their digits (ports,
// counters, connection ids) count as one: each is logged at most once per
// LogEvery, and the next one that is logged carries the number left out
// since ("repeated").
//
// go-redis has one logger per process (redis.SetLogger): the last call
// wins. unset gives the lines back to go-redis's default logger unless a
// later SetLogger took them; call it once log is no longer to be used.
func SetLogger(log *slog.Logger) (unset func()) {
	l := newLogger(log, LogEvery)
	logMu.Lock()
	defer logMu.Unlock()
	logSet = l
	redis.SetLogger(l)
	return func() {
		logMu.Lock()
		defer logMu.Unlock()
		if logSet == l {
			logSet = nil
			logging.Enable()
		}
	}
}

var (
	logMu  sync.Mutex
	logSet *logger // the logger SetLogger set last, until unset
)

// maxLines bounds the distinct lines a logger remembers.
const maxLines = 100

// logger is the redis.SetLogger logger of SetLogger.
type logger struct {
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	seen map[string]*seenLine // by the line without its digits
}

type seenLine struct {
	at      time.Time // when it was last logged
	dropped int       // how many times it was left out since
}

func newLogger(log *slog.Logger, every time.Duration) *logger {
	return &logger{log: log, every: every, seen: map[string]*seenLine{}}
}

// Printf implements go-redis's internal.Logging.
func (l *logger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	key := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, msg)
	now := time.Now()
	l.mu.Lock()
	s, ok := l.seen[key]
	if ok && now.Sub(s.at) < l.every {
		s.dropped++
		l.mu.Unlock()
		return
	}
	dropped := 0
	if ok {
		dropped, s.at, s.dropped = s.dropped, now, 0
	} else {
		if len(l.seen) >= maxLines {
			for k, s := range l.seen {
				if now.Sub(s.at) >= l.every {
					delete(l.seen, k)
				}
			}
			if len(l.seen) >= maxLines {
				clear(l.seen)
			}
		}
		l.seen[key] = &seenLine{at: now}
	}
	l.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	if dropped > 0 {
		l.log.WarnContext(ctx, msg, "repeated", dropped)
		return
	}
	l.log.WarnContext(ctx, msg)
}
