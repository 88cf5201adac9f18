package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The M1 generator: open many idle WebSocket connections, each subscribed
// to a topic of its own, and read the server's resident memory before and
// after from /proc/<pid>/status.

type idleConfig struct {
	System   string
	URL      string // ws://127.0.0.1:port/path
	TopicFmt string // fmt pattern with one %d: the topic (channel) of connection i
	Conns    int
	Parallel int
	Settle   time.Duration // wait after the last connection before reading the RSS
	Pid      int
	Timeout  time.Duration
}

type idleResult struct {
	System      string  `json:"system"`
	URL         string  `json:"url"`
	Conns       int     `json:"conns"`
	Opened      int     `json:"opened"`
	OpenSeconds float64 `json:"open_seconds"`
	RSSBefore   int64   `json:"rss_before_kib"`
	RSSAfter    int64   `json:"rss_after_kib"`
	KiBPerConn  float64 `json:"kib_per_conn"`
	GenCPUPct   float64 `json:"gen_cpu_pct"`    // while opening, % of one core
	ServerCPU   float64 `json:"server_cpu_pct"` // while opening
	Errors      int64   `json:"errors"`
	ErrorSample string  `json:"error_sample,omitempty"`
	LoadAvg     float64 `json:"loadavg_1m"`
	verdict
}

func (c *idleConfig) check() error {
	if err := checkKind(c.System); err != nil {
		return err
	}
	fc := fanConfig{System: c.System, SubURL: c.URL, PubURL: "mqtt://127.0.0.1:1", Subs: 1, Duration: 1, PayloadSize: 64}
	if c.System == kindCentrifugo {
		fc.PubURL = "http://127.0.0.1:1"
	}
	if err := fc.check(); err != nil {
		return err
	}
	if c.Conns < 1 || c.Conns > maxSubs {
		return fmt.Errorf("-conns %d: want 1..%d", c.Conns, maxSubs)
	}
	if c.Parallel < 1 {
		c.Parallel = 100
	}
	if strings.Count(c.TopicFmt, "%d") != 1 {
		return fmt.Errorf("-topic %q: want one %%d", c.TopicFmt)
	}
	if c.Settle < 0 || c.Settle > maxDuration {
		return fmt.Errorf("-settle %v: want 0..%v", c.Settle, maxDuration)
	}
	if c.Pid <= 0 {
		return errors.New("-pid: the server's process id is required")
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	return nil
}

// vmRSS is a process's resident set size in KiB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func runIdle(ctx context.Context, cfg idleConfig) (*idleResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	res := &idleResult{System: cfg.System, URL: cfg.URL, Conns: cfg.Conns}
	before, err := vmRSS(cfg.Pid)
	if err != nil {
		return nil, err
	}
	res.RSSBefore = before
	var phase atomic.Int32
	sh := &subShared{phase: &phase}
	sh.base.Store(math.MaxInt64)
	t0, cpu0 := time.Now(), selfCPU()
	srv0, _ := pidCPU(cfg.Pid)
	subs, err := openSubs(ctx, cfg.System, cfg.URL, cfg.Conns, cfg.Parallel, cfg.Timeout,
		func(i int) string { return fmt.Sprintf(cfg.TopicFmt, i) }, sh, false, 1024)
	wall := time.Since(t0)
	srv1, _ := pidCPU(cfg.Pid)
	res.OpenSeconds = wall.Seconds()
	res.GenCPUPct = 100 * float64(selfCPU()-cpu0) / float64(wall)
	res.ServerCPU = 100 * float64(srv1-srv0) / float64(wall)
	defer func() {
		for _, s := range subs {
			if s != nil {
				s.close()
			}
		}
	}()
	for _, s := range subs {
		if s != nil {
			res.Opened++
		}
	}
	if err != nil {
		res.Errors = 1
		res.ErrorSample = err.Error()
	} else {
		if err := sleepCtx(ctx, cfg.Settle); err != nil {
			return nil, err
		}
		if err := subsFailed(subs); err != nil {
			res.Errors = 1
			res.ErrorSample = err.Error()
		}
		if res.RSSAfter, err = vmRSS(cfg.Pid); err != nil {
			return nil, err
		}
		res.KiBPerConn = float64(res.RSSAfter-res.RSSBefore) / float64(cfg.Conns)
	}
	res.LoadAvg = loadAvg()
	res.Valid = res.Errors == 0 && res.Opened == cfg.Conns
	if !res.Valid {
		res.Invalid = fmt.Sprintf("%d of %d connections subscribed; %s", res.Opened, cfg.Conns, res.ErrorSample)
	}
	return res, nil
}

func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	var cfg idleConfig
	var asJSON bool
	fs.StringVar(&cfg.System, "system", kindBridge, "bridge, mosquitto or centrifugo: the connections' protocol")
	fs.StringVar(&cfg.URL, "url", "", "WebSocket URL (ws://127.0.0.1:port/path; loopback only)")
	fs.StringVar(&cfg.TopicFmt, "topic", "bench/m1/%d", "topic (Centrifugo: channel) of connection i, with one %d")
	fs.IntVar(&cfg.Conns, "conns", 10000, "connections")
	fs.IntVar(&cfg.Parallel, "parallel", 100, "connections opened at once")
	fs.DurationVar(&cfg.Settle, "settle", 5*time.Second, "wait after the last connection before reading the RSS")
	fs.IntVar(&cfg.Pid, "pid", 0, "the server's process id")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "connect and subscribe timeout per connection")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return report(asJSON, func(ctx context.Context) (*idleResult, error) { return runIdle(ctx, cfg) }, printIdleResult)
}

func printIdleResult(w io.Writer, r *idleResult) {
	fmt.Fprintf(w, "%s: %d idle connections to %s\n", r.System, r.Conns, r.URL)
	fmt.Fprintf(w, "  opened %d in %.2fs (generator CPU %.0f%%, server CPU %.0f%%)\n", r.Opened, r.OpenSeconds, r.GenCPUPct, r.ServerCPU)
	fmt.Fprintf(w, "  server VmRSS %d KiB before, %d KiB after: %.2f KiB per connection\n", r.RSSBefore, r.RSSAfter, r.KiBPerConn)
	if r.Valid {
		fmt.Fprintln(w, "  valid")
	} else {
		fmt.Fprintf(w, "  INVALID: %s\n", r.Invalid)
	}
}
