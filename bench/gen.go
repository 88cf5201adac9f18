package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits that keep every run bounded.
const (
	maxDuration    = 60 * time.Second
	maxWarmup      = 10 * time.Second
	maxConns       = 4096
	defMaxRequests = 20_000_000
)

// genConfig configures one generator run.
type genConfig struct {
	URL         string
	Method      string
	Conns       int
	Duration    time.Duration
	Warmup      time.Duration
	BodySize    int
	Body        []byte // overrides BodySize when set
	Headers     [][2]string
	Client      string // "raw" or "std"
	Rate        float64
	MaxRequests int64
	Timeout     time.Duration
	Pids        []int // processes whose CPU use is sampled over the window
}

// genResult is what a run measured, over the measurement window only.
type genResult struct {
	URL      string  `json:"url"`
	Method   string  `json:"method"`
	Client   string  `json:"client"`
	Conns    int     `json:"conns"`
	BodySize int     `json:"body_size"`
	Rate     float64 `json:"offered_rate,omitempty"`

	Seconds     float64          `json:"seconds"`
	Requests    int64            `json:"requests"`
	RPS         float64          `json:"rps"`
	Status      map[string]int64 `json:"status"`
	Errors      int64            `json:"errors"`
	ErrorSample string           `json:"error_sample,omitempty"`
	P50ms       float64          `json:"p50_ms"`
	P90ms       float64          `json:"p90_ms"`
	P99ms       float64          `json:"p99_ms"`
	Maxms       float64          `json:"max_ms"`

	GenCPUPct  float64            `json:"gen_cpu_pct"`            // this process, % of one core
	PidCPUPct  map[string]float64 `json:"pid_cpu_pct,omitempty"`  // sampled pids, % of one core
	CPUBusyPct map[string]float64 `json:"cpu_busy_pct,omitempty"` // per CPU, whole machine
	LoadAvg    float64            `json:"loadavg_1m"`
	Capped     bool               `json:"capped,omitempty"` // stopped by the request cap
	verdict
}

// worker is one connection's closed loop.
type worker struct {
	cfg     *genConfig
	do      func() (int, error)
	closeFn func()
	hist    hist
	status  [600]int64
	errs    int64
	errMsg  string
	n       int64
}

// phase of the run, shared by all workers.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

func parseHeaders(list []string) ([][2]string, error) {
	var out [][2]string
	for _, h := range list {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("-header %q: want Name:value", h)
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out, nil
}

func (c *genConfig) check() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", c.URL)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("-url %q: want an explicit port", c.URL)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("-url %q: loopback only", c.URL)
	}
	c.Method = strings.ToUpper(c.Method)
	switch c.Method {
	case "GET", "POST", "HEAD", "PUT", "DELETE":
	default:
		return fmt.Errorf("-method %q: want GET or POST", c.Method)
	}
	if c.Conns < 1 || c.Conns > maxConns {
		return fmt.Errorf("-conns %d: want 1..%d", c.Conns, maxConns)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return fmt.Errorf("-duration %v: want > 0 and <= %v", c.Duration, maxDuration)
	}
	if c.Warmup < 0 || c.Warmup > maxWarmup {
		return fmt.Errorf("-warmup %v: want 0..%v", c.Warmup, maxWarmup)
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = defMaxRequests
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Client != "raw" && c.Client != "std" {
		return fmt.Errorf("-client %q: want raw or std", c.Client)
	}
	if c.Rate < 0 {
		return fmt.Errorf("-rate must be >= 0")
	}
	// -body-size fills the body of methods that carry one; a GET sends
	// none unless -body says otherwise.
	if c.Body == nil && c.BodySize > 0 && (c.Method == "POST" || c.Method == "PUT") {
		c.Body = bytes.Repeat([]byte("x"), c.BodySize)
	}
	c.BodySize = len(c.Body)
	return nil
}

// runGen runs the generator: connect every connection, warm up, measure for
// Duration, stop. It is bounded by Duration, Warmup, MaxRequests and the
// per-request Timeout.
func runGen(ctx context.Context, cfg genConfig) (*genResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	workers := make([]*worker, cfg.Conns)
	var std *http.Client
	if cfg.Client == "std" {
		std = &http.Client{
			Timeout: cfg.Timeout,
			Transport: &http.Transport{
				MaxIdleConns:        cfg.Conns,
				MaxIdleConnsPerHost: cfg.Conns,
				MaxConnsPerHost:     cfg.Conns,
				DisableCompression:  true,
				IdleConnTimeout:     time.Minute,
			},
		}
		defer std.CloseIdleConnections()
	}
	reqBytes := buildRequest(cfg.Method, u, cfg.Headers, cfg.Body)
	for i := range workers {
		w := &worker{cfg: &cfg}
		switch cfg.Client {
		case "raw":
			rc := &rawConn{addr: u.Host, req: reqBytes, head: cfg.Method == "HEAD", timeout: cfg.Timeout}
			w.do, w.closeFn = rc.do, rc.close
		case "std":
			w.do, w.closeFn = stdDo(std, &cfg), func() {}
		}
		workers[i] = w
	}

	// Connect in parallel (one request each, not counted) so that a slow
	// accept loop does not stretch the start.
	var wg sync.WaitGroup
	var connectErr atomic.Value
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.do(); err != nil {
				connectErr.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := connectErr.Load().(error); err != nil {
		for _, w := range workers {
			w.closeFn()
		}
		return nil, fmt.Errorf("first request: %w", err)
	}

	var phase atomic.Int32
	perWorkerCap := (cfg.MaxRequests + int64(cfg.Conns) - 1) / int64(cfg.Conns)
	start := time.Now()
	var capped atomic.Bool
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.closeFn()
			w.loop(&phase, i, start, perWorkerCap, &capped)
		}()
	}

	var (
		t0, t1     time.Time
		cpu0, cpu1 time.Duration
		pc0, pc1   []time.Duration
		sys0, sys1 map[string]cpuTimes
	)
	sample := func() (time.Time, time.Duration, []time.Duration, map[string]cpuTimes) {
		pcs := make([]time.Duration, len(cfg.Pids))
		for i, pid := range cfg.Pids {
			pcs[i], _ = pidCPU(pid)
		}
		return time.Now(), selfCPU(), pcs, readCPUTimes()
	}
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	aborted := false
	if cfg.Warmup > 0 && !sleep(cfg.Warmup) {
		aborted = true
	}
	t0, cpu0, pc0, sys0 = sample()
	phase.Store(phaseMeasure)
	if !aborted {
		// Poll so that hitting the request cap ends the window early.
		deadline := t0.Add(cfg.Duration)
		for !aborted && time.Now().Before(deadline) && !capped.Load() {
			left := time.Until(deadline)
			if left > 50*time.Millisecond {
				left = 50 * time.Millisecond
			}
			if !sleep(left) {
				aborted = true
			}
		}
	}
	phase.Store(phaseStop)
	t1, cpu1, pc1, sys1 = sample()
	wg.Wait()
	if aborted {
		return nil, ctx.Err()
	}

	res := &genResult{
		URL: cfg.URL, Method: cfg.Method, Client: cfg.Client, Conns: cfg.Conns,
		BodySize: cfg.BodySize, Rate: cfg.Rate, Status: map[string]int64{},
		Capped: capped.Load(), LoadAvg: loadAvg(),
	}
	var h hist
	for _, w := range workers {
		h.merge(&w.hist)
		res.Requests += w.n
		res.Errors += w.errs
		if res.ErrorSample == "" {
			res.ErrorSample = w.errMsg
		}
		for code, n := range w.status {
			if n > 0 {
				res.Status[strconv.Itoa(code)] += n
			}
		}
	}
	wall := t1.Sub(t0)
	res.Seconds = wall.Seconds()
	res.RPS = float64(res.Requests) / wall.Seconds()
	res.P50ms, res.P90ms, res.P99ms, res.Maxms = h.millis()
	res.GenCPUPct = 100 * float64(cpu1-cpu0) / float64(wall)
	res.PidCPUPct = pidCPUPct(cfg.Pids, pc0, pc1, wall)
	res.CPUBusyPct = cpuBusyPct(sys0, sys1)
	res.validate()
	return res, nil
}

func (r *genResult) validate() {
	var bad []string
	for code, n := range r.Status {
		if code[0] != '2' {
			bad = append(bad, fmt.Sprintf("%d responses with status %s", n, code))
		}
	}
	sort.Strings(bad)
	if r.Errors > 0 {
		bad = append(bad, fmt.Sprintf("%d transport errors (%s)", r.Errors, r.ErrorSample))
	}
	if r.Requests == 0 {
		bad = append(bad, "no requests completed")
	}
	r.Valid = len(bad) == 0
	r.Invalid = strings.Join(bad, "; ")
}

// loop runs requests until the phase is stop or the cap is reached. With a
// rate, each connection sends on its own schedule and latency is measured
// from the scheduled time (so a slow server is not hidden by the generator
// waiting for it).
func (w *worker) loop(phase *atomic.Int32, idx int, start time.Time, limit int64, capped *atomic.Bool) {
	var interval time.Duration
	var next time.Time
	if w.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(w.cfg.Conns) / w.cfg.Rate)
		next = start.Add(interval * time.Duration(idx) / time.Duration(w.cfg.Conns))
	}
	for {
		ph := phase.Load()
		if ph == phaseStop {
			return
		}
		var t0 time.Time
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
				if phase.Load() == phaseStop {
					return
				}
				ph = phase.Load()
			}
			t0 = next
			next = next.Add(interval)
		} else {
			t0 = time.Now()
		}
		status, err := w.do()
		end := time.Now()
		if ph != phaseMeasure || phase.Load() != phaseMeasure {
			if err != nil {
				backoffOnError(err)
			}
			continue
		}
		w.n++
		if err != nil {
			w.errs++
			if w.errMsg == "" {
				w.errMsg = err.Error()
			}
			backoffOnError(err)
		} else {
			if status >= 0 && status < len(w.status) {
				w.status[status]++
			}
			w.hist.record(end.Sub(t0))
		}
		if w.n >= limit {
			capped.Store(true)
			return
		}
	}
}

// backoffOnError keeps a refused connection from spinning the CPU.
func backoffOnError(err error) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		time.Sleep(10 * time.Millisecond)
	}
}

func stdDo(client *http.Client, cfg *genConfig) func() (int, error) {
	return func() (int, error) {
		var body io.Reader
		if len(cfg.Body) > 0 {
			body = bytes.NewReader(cfg.Body)
		}
		req, err := http.NewRequest(cfg.Method, cfg.URL, body)
		if err != nil {
			return 0, err
		}
		for _, h := range cfg.Headers {
			req.Header.Add(h[0], h[1])
		}
		req.Header.Set("User-Agent", "mqttbench")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}
}

// headerList is a repeatable -header flag.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func cmdHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	var cfg genConfig
	var headers headerList
	var body, pids string
	var asJSON bool
	fs.StringVar(&cfg.URL, "url", "", "target URL (http://127.0.0.1:port/path; loopback only)")
	fs.StringVar(&cfg.Method, "method", "POST", "GET or POST")
	fs.IntVar(&cfg.Conns, "conns", 64, "keep-alive connections, one closed loop each")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window (max 60s)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before the window (max 10s)")
	fs.IntVar(&cfg.BodySize, "body-size", 64, "request body of this many bytes ('x'), for POST and PUT")
	fs.StringVar(&body, "body", "", "request body (overrides -body-size)")
	fs.Var(&headers, "header", "extra request header Name:value (repeatable)")
	fs.StringVar(&cfg.Client, "client", "raw", "raw (minimal HTTP/1.1 client) or std (net/http)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "fixed offered rate in requests/s over all connections (0: as fast as possible)")
	fs.Int64Var(&cfg.MaxRequests, "max-requests", defMaxRequests, "stop after this many measured requests")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.StringVar(&pids, "pids", "", "comma-separated process ids whose CPU use to report over the window")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if body != "" {
		cfg.Body = []byte(body)
	}
	var err error
	if cfg.Headers, err = parseHeaders(headers); err != nil {
		return err
	}
	if cfg.Pids, err = parsePids(pids); err != nil {
		return err
	}
	return report(asJSON, func(ctx context.Context) (*genResult, error) { return runGen(ctx, cfg) }, printResult)
}

func printResult(w io.Writer, r *genResult) {
	fmt.Fprintf(w, "%s %s  conns=%d body=%dB client=%s", r.Method, r.URL, r.Conns, r.BodySize, r.Client)
	if r.Rate > 0 {
		fmt.Fprintf(w, " offered=%.0f/s", r.Rate)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  requests  %d in %.2fs = %.0f req/s%s\n", r.Requests, r.Seconds, r.RPS, map[bool]string{true: " (request cap reached)"}[r.Capped])
	codes := make([]string, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	fmt.Fprint(w, "  status   ")
	for _, c := range codes {
		fmt.Fprintf(w, " %s:%d", c, r.Status[c])
	}
	fmt.Fprintf(w, "  errors:%d\n", r.Errors)
	fmt.Fprintf(w, "  latency   p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", r.P50ms, r.P90ms, r.P99ms, r.Maxms)
	fmt.Fprintf(w, "  generator CPU %.1f%% of one core", r.GenCPUPct)
	if r.GenCPUPct > 90 {
		fmt.Fprint(w, "  (above 90%: the generator may be the bottleneck)")
	}
	fmt.Fprintln(w)
	for pid, v := range r.PidCPUPct {
		fmt.Fprintf(w, "  pid %s CPU %.1f%% of one core\n", pid, v)
	}
	if len(r.CPUBusyPct) > 0 {
		keys := make([]string, 0, len(r.CPUBusyPct))
		for k := range r.CPUBusyPct {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "  machine  ")
		for _, k := range keys {
			fmt.Fprintf(w, " %s busy %.0f%%", k, r.CPUBusyPct[k])
		}
		fmt.Fprintf(w, "  load %.2f\n", r.LoadAvg)
	}
	if r.Valid {
		fmt.Fprintln(w, "  valid")
	} else {
		fmt.Fprintf(w, "  INVALID: %s\n", r.Invalid)
	}
}
