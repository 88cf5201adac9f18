package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The orchestrator: each system under test is started pinned to one CPU,
// the generator runs pinned to the other, every measurement starts a fresh
// server process, and the systems are interleaved round by round so that
// slow drift in the machine's background load hits all of them alike.

// Listen addresses of the systems under test; flags of `run` can move them
// when another process holds one.
var (
	bridgeHTTPAddr = "127.0.0.1:18080"
	bridgeMQTTAddr = "127.0.0.1:18883"
	noopAddr       = "127.0.0.1:18090"
	centrifugoAddr = "127.0.0.1:18000"
)

const (
	p1Topic         = "bench/p1"
	r1Topic         = "bench/r1"
	defaultRedisURL = "redis://127.0.0.1:6379/15"
	defaultMQTTURL  = "mqtt://127.0.0.1:1883"
	redisKeyPrefix  = "bench:"
)

type runConfig struct {
	Scenarios   []string
	Runs        int
	Duration    time.Duration
	Warmup      time.Duration
	Conns       int
	BodySize    int
	Client      string
	Bridge      string
	Centrifugo  string
	RedisURL    string
	MQTTURL     string
	ServerCPU   string
	GenCPU      string
	Max         bool
	Latency     bool
	LatencyRate float64
	LatencyDur  time.Duration
	LogDir      string
	Out         string
	Markdown    string
	Self        string
}

// server is how to start one system under test.
type server struct {
	name  string
	argv  []string
	addrs []string                        // listen addresses that must be free
	ready func(ctx context.Context) error // returns once it serves
}

// system is one row of a scenario: a server and the request sent to it.
type system struct {
	name    string
	peer    bool
	srv     server
	method  string
	url     string
	body    []byte
	headers [][2]string
	seed    func(ctx context.Context) error
	cleanup func()       // once after the scenario, whatever happened
	pids    func() []int // more processes to sample (e.g. Redis)
}

// measurement is one generator run against one system.
type measurement struct {
	System string     `json:"system"`
	Round  int        `json:"round"`
	Kind   string     `json:"kind"` // "max" or "fixed-rate"
	Result *genResult `json:"result"`
	Server string     `json:"server_pid"`
	Err    string     `json:"error,omitempty"`
}

type scenarioResult struct {
	Name         string         `json:"scenario"`
	Measurements []*measurement `json:"measurements"`
	Systems      []string       `json:"systems"`
	LatencyRate  float64        `json:"latency_rate,omitempty"`
	LatencyPeer  string         `json:"latency_peer,omitempty"`
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg runConfig
	var scen string
	fs.StringVar(&scen, "scenario", "all", "P1, R1, F1, M1, S1, or a comma-separated list; all = P1,R1; ws = F1,M1")
	fs.IntVar(&cfg.Runs, "runs", 3, "rounds; every system is measured once per round")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window per run (max 60s)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warm-up per run (max 10s)")
	fs.IntVar(&cfg.Conns, "conns", 64, "keep-alive connections")
	fs.IntVar(&cfg.BodySize, "body-size", 64, "payload bytes")
	fs.StringVar(&cfg.Client, "client", "raw", "generator client: raw or std")
	fs.StringVar(&cfg.Bridge, "bridge", "/tmp/mqttbridge", "bridge binary (go build -o /tmp/mqttbridge ./cmd/mqttbridge)")
	fs.StringVar(&cfg.Centrifugo, "centrifugo", "/tmp/mqttbench-gobin/centrifugo", "Centrifugo v6 binary for P1 (skipped when absent)")
	fs.StringVar(&cfg.RedisURL, "redis-url", defaultRedisURL, "Redis for the R1 Redis store")
	fs.StringVar(&cfg.MQTTURL, "mqtt-url", defaultMQTTURL, "shared broker for the R1 Redis run")
	fs.StringVar(&cfg.ServerCPU, "server-cpu", "0", "CPU list for the system under test (taskset -c)")
	fs.StringVar(&cfg.GenCPU, "gen-cpu", "1", "CPU list for the generator (taskset -c)")
	fs.BoolVar(&cfg.Max, "max", true, "measure the maximum rate (closed loop)")
	fs.BoolVar(&cfg.Latency, "latency", true, "also measure latency at a fixed rate of half the peer's median maximum")
	fs.Float64Var(&cfg.LatencyRate, "latency-rate", 0, "fixed rate for the latency runs instead of half the peer's maximum")
	fs.DurationVar(&cfg.LatencyDur, "latency-duration", 5*time.Second, "window of each fixed-rate run")
	fs.StringVar(&cfg.LogDir, "logdir", "/tmp/mqttbench-logs", "server logs and Centrifugo config")
	fs.StringVar(&cfg.Out, "out", "/tmp/mqttbench-results.json", "all measurements as JSON")
	fs.StringVar(&cfg.Markdown, "md", "", "also write the tables to this file")
	fs.StringVar(&bridgeHTTPAddr, "bridge-http-addr", bridgeHTTPAddr, "bridge HTTP listen address")
	fs.StringVar(&bridgeMQTTAddr, "bridge-mqtt-addr", bridgeMQTTAddr, "bridge embedded MQTT listen address")
	fs.StringVar(&noopAddr, "noop-addr", noopAddr, "noop peer listen address")
	fs.StringVar(&centrifugoAddr, "centrifugo-addr", centrifugoAddr, "Centrifugo listen address")
	fs.StringVar(&wsBridgeHTTPAddr, "ws-bridge-http-addr", wsBridgeHTTPAddr, "bridge HTTP listen address in F1 and M1")
	fs.StringVar(&wsBridgeMQTTAddr, "ws-bridge-mqtt-addr", wsBridgeMQTTAddr, "bridge embedded MQTT listen address in F1 and M1")
	fs.StringVar(&wsCentrifugoAddr, "ws-centrifugo-addr", wsCentrifugoAddr, "Centrifugo listen address in F1 and M1")
	fs.StringVar(&mosquittoWSAddr, "mosquitto-ws-addr", mosquittoWSAddr, "Mosquitto WebSocket listen address (F1, M1)")
	fs.StringVar(&mosquittoMQTTAddr, "mosquitto-mqtt-addr", mosquittoMQTTAddr, "Mosquitto MQTT listen address (F1 publisher)")
	fs.StringVar(&wsCfg.Mosquitto, "mosquitto", wsCfg.Mosquitto, "Mosquitto 2.0 binary for F1 and M1 (skipped when absent)")
	fs.Var(intList{&wsCfg.Subs}, "subs", "F1: numbers of WebSocket clients, comma-separated")
	fs.Var(intList{&wsCfg.Windows}, "windows", "F1: messages in flight at the maximum rate; each is run, the best counts")
	fs.IntVar(&wsCfg.IdleConns, "idle-conns", wsCfg.IdleConns, "M1: idle connections")
	fs.IntVar(&wsCfg.IdleParallel, "idle-parallel", wsCfg.IdleParallel, "M1: connections opened at once")
	fs.DurationVar(&wsCfg.IdleSettle, "idle-settle", wsCfg.IdleSettle, "M1: wait after the last connection before reading VmRSS")
	fs.StringVar(&wsCfg.Out, "ws-out", wsCfg.Out, "F1 and M1 measurements as JSON")
	s1Flags(fs)
	report := fs.String("report", "", "render the tables from this -out (or -ws-out) file of an earlier run instead of running (give the same -runs, -duration, ... as that run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var wsScenarios []string
	s1 := false
	for _, sc := range strings.Split(strings.ToUpper(scen), ",") {
		switch sc = strings.TrimSpace(sc); sc {
		case "ALL":
			cfg.Scenarios = append(cfg.Scenarios, "P1", "R1")
		case "WS":
			wsScenarios = append(wsScenarios, "F1", "M1")
		case "P1", "R1":
			cfg.Scenarios = append(cfg.Scenarios, sc)
		case "F1", "M1":
			wsScenarios = append(wsScenarios, sc)
		case "S1":
			s1 = true
		default:
			return fmt.Errorf("-scenario %q: want P1, R1, F1, M1, S1, all or ws", scen)
		}
	}
	if cfg.Runs < 1 || cfg.Runs > 10 {
		return fmt.Errorf("-runs %d: want 1..10", cfg.Runs)
	}
	if cfg.Duration <= 0 || cfg.Duration > maxDuration || cfg.LatencyDur <= 0 || cfg.LatencyDur > maxDuration {
		return fmt.Errorf("durations must be > 0 and <= %v", maxDuration)
	}
	if *report != "" {
		return renderReport(&cfg, *report)
	}
	for _, a := range []string{bridgeHTTPAddr, bridgeMQTTAddr, noopAddr, centrifugoAddr,
		wsBridgeHTTPAddr, wsBridgeMQTTAddr, wsCentrifugoAddr, mosquittoWSAddr, mosquittoMQTTAddr} {
		if err := checkBenchAddr(a); err != nil {
			return err
		}
	}
	for _, u := range []string{cfg.RedisURL, cfg.MQTTURL} {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			return fmt.Errorf("%q: not a URL", u)
		}
		if ip := net.ParseIP(pu.Hostname()); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%q: loopback only", u)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Self = self
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset not found (util-linux)")
	}
	if _, err := os.Stat(cfg.Bridge); err != nil {
		return fmt.Errorf("bridge binary: %w (go build -o %s ./cmd/mqttbridge)", err, cfg.Bridge)
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()

	var all []*scenarioResult
	var md bytes.Buffer
	fmt.Fprintf(&md, "%s\n", machineLine())
	for _, sc := range cfg.Scenarios {
		systems, err := scenarioSystems(sc, &cfg)
		if err != nil {
			return err
		}
		res, err := runScenario(ctx, &cfg, sc, systems)
		if res != nil {
			all = append(all, res)
			writeTables(&md, &cfg, res)
		}
		if err != nil {
			_ = saveResults(cfg.Out, all)
			return err
		}
	}
	if len(cfg.Scenarios) > 0 {
		if err := saveResults(cfg.Out, all); err != nil {
			return err
		}
	}
	if len(wsScenarios) > 0 {
		if err := runWSScenarios(ctx, &cfg, wsScenarios, &md); err != nil {
			fmt.Print("\n" + md.String())
			return err
		}
	}
	if s1 {
		if err := runS1(ctx, &cfg, &md); err != nil {
			fmt.Print("\n" + md.String())
			return err
		}
	}
	fmt.Print("\n" + md.String())
	if cfg.Markdown != "" {
		return os.WriteFile(cfg.Markdown, md.Bytes(), 0o644)
	}
	return nil
}

// saveResults writes a run's results as JSON to path.
func saveResults(path string, all any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeJSON(f, all)
}

func machineLine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, model, _ = strings.Cut(l, ":")
				model = strings.TrimSpace(model)
				break
			}
		}
	}
	return fmt.Sprintf("machine: %d CPUs (%s), %s, %s; load average at the end %.2f", runtime.NumCPU(), model, runtime.Version(), time.Now().UTC().Format(time.RFC3339), loadAvg())
}

func bridgeServer(cfg *runConfig, name string, extra ...string) server {
	argv := append([]string{cfg.Bridge, "--http-addr", bridgeHTTPAddr}, extra...)
	addrs := []string{bridgeHTTPAddr}
	if len(extra) == 0 {
		argv = append(argv, "--embedded-mqtt-addr", bridgeMQTTAddr)
		addrs = append(addrs, bridgeMQTTAddr)
	}
	return server{
		name:  name,
		argv:  argv,
		addrs: addrs,
		ready: func(ctx context.Context) error {
			return pollHTTP(ctx, "GET", "http://"+bridgeHTTPAddr+"/readyz", nil, nil, func(code int, _ []byte) bool { return code == 200 })
		},
	}
}

func noopServer(cfg *runConfig) server {
	return server{
		name:  "noop",
		argv:  []string{cfg.Self, "noop", "-addr", noopAddr},
		addrs: []string{noopAddr},
		ready: func(ctx context.Context) error {
			return pollHTTP(ctx, "GET", "http://"+noopAddr+"/healthz", nil, nil, func(code int, _ []byte) bool { return code == 204 })
		},
	}
}

// centrifugoBody is a publish of a data object whose JSON encoding is
// exactly n bytes (n >= 9), so the payload matches the bridge's.
func centrifugoBody(n int) []byte {
	if n < 9 {
		n = 9
	}
	data := `{"p":"` + strings.Repeat("x", n-8) + `"}`
	return []byte(`{"channel":"bench","data":` + data + `}`)
}

func centrifugoServer(cfg *runConfig, body []byte) (server, error) {
	conf := filepath.Join(cfg.LogDir, "centrifugo.json")
	_, port, _ := net.SplitHostPort(centrifugoAddr)
	host, _, _ := net.SplitHostPort(centrifugoAddr)
	c := map[string]any{
		"client":      map[string]any{"insecure": true},
		"http_api":    map[string]any{"insecure": true},
		"engine":      map[string]any{"type": "memory"},
		"http_server": map[string]any{"address": host, "port": mustAtoi(port)},
		"log":         map[string]any{"level": "error"},
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		return server{}, err
	}
	return server{
		name:  "centrifugo",
		argv:  []string{cfg.Centrifugo, "--config", conf},
		addrs: []string{centrifugoAddr},
		ready: func(ctx context.Context) error {
			// Centrifugo's API answers errors with 200 and an "error"
			// member, so the body is checked here, once.
			return pollHTTP(ctx, "POST", "http://"+centrifugoAddr+"/api/publish", body, [][2]string{{"Content-Type", "application/json"}},
				func(code int, resp []byte) bool { return code == 200 && !bytes.Contains(resp, []byte(`"error"`)) })
		},
	}, nil
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

func scenarioSystems(sc string, cfg *runConfig) ([]*system, error) {
	payload := bytes.Repeat([]byte("x"), cfg.BodySize)
	bridgeURL := func(topic, query string) string {
		u := "http://" + bridgeHTTPAddr + "/v1/topics/" + topic
		if query != "" {
			u += "?" + query
		}
		return u
	}
	switch sc {
	case "P1":
		noop := &system{name: "noop 204", peer: true, srv: noopServer(cfg), method: "POST",
			url: "http://" + noopAddr + "/v1/topics/" + p1Topic + "?qos=0", body: payload}
		mem := bridgeServer(cfg, "bridge (embedded broker, memory store)")
		systems := []*system{
			noop,
			{name: "bridge QoS 0", srv: mem, method: "POST", url: bridgeURL(p1Topic, "qos=0"), body: payload},
			{name: "bridge QoS 1", srv: mem, method: "POST", url: bridgeURL(p1Topic, "qos=1"), body: payload},
		}
		if _, err := os.Stat(cfg.Centrifugo); err == nil {
			body := centrifugoBody(cfg.BodySize)
			srv, err := centrifugoServer(cfg, body)
			if err != nil {
				return nil, err
			}
			systems = append(systems, &system{name: "Centrifugo publish", peer: true, srv: srv, method: "POST",
				url: "http://" + centrifugoAddr + "/api/publish", body: body, headers: [][2]string{{"Content-Type", "application/json"}}})
		} else {
			fmt.Fprintf(os.Stderr, "P1: no Centrifugo binary at %s; running without it\n", cfg.Centrifugo)
		}
		return systems, nil
	case "R1":
		seed := func(ctx context.Context) error {
			return seedRetained(ctx, bridgeURL(r1Topic, ""), payload)
		}
		redis := bridgeServer(cfg, "bridge (shared Mosquitto, Redis store)",
			"--mqtt-url", cfg.MQTTURL, "--topics", "bench/#", "--redis-url", cfg.RedisURL, "--redis-key-prefix", redisKeyPrefix)
		return []*system{
			{name: "noop 204", peer: true, srv: noopServer(cfg), method: "GET", url: "http://" + noopAddr + "/v1/topics/" + r1Topic},
			{name: "bridge memory", srv: bridgeServer(cfg, "bridge (embedded broker, memory store)"), method: "GET", url: bridgeURL(r1Topic, ""), seed: seed},
			{name: "bridge Redis", srv: redis, method: "GET", url: bridgeURL(r1Topic, ""), seed: seed,
				pids: func() []int { return findPids("redis-server", "6379") },
				cleanup: func() {
					// Leave nothing behind on the shared broker and Redis.
					if err := mqttClearRetained(cfg.MQTTURL, r1Topic); err != nil {
						fmt.Fprintf(os.Stderr, "R1 cleanup: clearing the retained %s on %s: %v\n", r1Topic, cfg.MQTTURL, err)
					}
					cleanRedis(cfg.RedisURL)
				}},
		}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", sc)
}

// seedRetained publishes a retained value and waits until GET returns it.
func seedRetained(ctx context.Context, u string, payload []byte) error {
	code, body, err := httpDo(ctx, "POST", u+"?qos=1&retain=true", payload, nil)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if code != 200 {
		return fmt.Errorf("seed: POST answered %d: %s", code, body)
	}
	return pollHTTP(ctx, "GET", u, nil, nil, func(code int, b []byte) bool { return code == 200 && bytes.Equal(b, payload) })
}

// cleanRedis removes the keys the R1 bridge wrote in the benchmark
// database, best effort, with redis-cli. The Redis store puts its prefix in
// a hash tag: its keys are "{bench:}...".
func cleanRedis(redisURL string) {
	db := "15"
	if i := strings.LastIndexByte(redisURL, '/'); i > len("redis://") {
		db = redisURL[i+1:]
	}
	var keys []string
	for _, pattern := range []string{"{" + redisKeyPrefix + "}*", redisKeyPrefix + "*"} {
		out, err := exec.Command("redis-cli", "-n", db, "--scan", "--pattern", pattern).Output()
		if err != nil {
			return
		}
		keys = append(keys, strings.Fields(string(out))...)
	}
	for len(keys) > 0 {
		n := min(len(keys), 100)
		_ = exec.Command("redis-cli", append([]string{"-n", db, "DEL"}, keys[:n]...)...).Run()
		keys = keys[n:]
	}
}

// findPids lists processes named comm whose command line contains arg.
func findPids(comm, arg string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cl), arg) {
			out = append(out, pid)
		}
	}
	return out
}

func httpDo(ctx context.Context, method, u string, body []byte, headers [][2]string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// pollHTTP repeats a request until ok accepts the answer, for up to 20 s.
func pollHTTP(ctx context.Context, method, u string, body []byte, headers [][2]string, ok func(int, []byte) bool) error {
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, b, err := httpDo(ctx, method, u, body, headers)
		if err == nil && ok(code, b) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d: %.200s", code, b)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s %s not ready after 20s: %s", method, u, last)
}

// running is a started server process.
type running struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startServer(ctx context.Context, cfg *runConfig, s server, tag string) (*running, error) {
	for _, a := range s.addrs {
		if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %s is already in use; is another benchmark running?", s.name, a)
		}
	}
	logf, err := os.Create(filepath.Join(cfg.LogDir, tag+".log"))
	if err != nil {
		return nil, err
	}
	argv := append([]string{"-c", cfg.ServerCPU}, s.argv...)
	cmd := exec.Command("taskset", argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches us, we stop it
	fmt.Fprintf(os.Stderr, "  start: taskset %s\n", strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	r := &running{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(r.done) }()
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	err = s.ready(rctx)
	cancel()
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("%s: %w (log: %s)", s.name, err, logf.Name())
	}
	return r, nil
}

// stop sends SIGTERM, then SIGKILL after 10 s, and waits.
func (r *running) stop() {
	defer r.log.Close()
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// generate runs the generator pinned to the generator CPU as a child
// process (so that its CPU use is its own) and returns its result.
func generate(ctx context.Context, cfg *runConfig, s *system, rate float64, dur time.Duration, pids []int) (*genResult, error) {
	args := []string{"-c", cfg.GenCPU, cfg.Self, "http", "-json",
		"-url", s.url, "-method", s.method, "-conns", strconv.Itoa(cfg.Conns),
		"-duration", dur.String(), "-warmup", cfg.Warmup.String(), "-client", cfg.Client}
	if s.body != nil {
		args = append(args, "-body", string(s.body))
	} else {
		args = append(args, "-body-size", "0")
	}
	for _, h := range s.headers {
		args = append(args, "-header", h[0]+":"+h[1])
	}
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	if len(pids) > 0 {
		ps := make([]string, len(pids))
		for i, p := range pids {
			ps[i] = strconv.Itoa(p)
		}
		args = append(args, "-pids", strings.Join(ps, ","))
	}
	var res genResult
	if err := runChild(ctx, args, dur+cfg.Warmup+30*time.Second, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" {
			a = "''"
		} else if strings.ContainsAny(a, " \"'{}&?*") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// measure starts the system's server, seeds it, runs the generator, and
// stops the server.
func measure(ctx context.Context, cfg *runConfig, s *system, round int, kind string, rate float64, dur time.Duration) *measurement {
	m := &measurement{System: s.name, Round: round, Kind: kind}
	tag := fmt.Sprintf("%s-%s-%d", strings.NewReplacer(" ", "_", "(", "", ")", "", ",", "").Replace(s.name), kind, round)
	r, err := startServer(ctx, cfg, s.srv, tag)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer r.stop()
	m.Server = strconv.Itoa(r.cmd.Process.Pid)
	if s.seed != nil {
		if err := s.seed(ctx); err != nil {
			m.Err = err.Error()
			return m
		}
	}
	pids := []int{r.cmd.Process.Pid}
	if s.pids != nil {
		pids = append(pids, s.pids()...)
	}
	res, err := generate(ctx, cfg, s, rate, dur, pids)
	if err != nil {
		m.Err = err.Error()
	}
	m.Result = res
	if res != nil {
		fmt.Fprintf(os.Stderr, "  => %s round %d: %.0f req/s, p50 %.2f ms, p99 %.2f ms, gen CPU %.0f%%, server CPU %.0f%%, valid=%v %s\n",
			s.name, round, res.RPS, res.P50ms, res.P99ms, res.GenCPUPct, res.PidCPUPct[m.Server], res.Valid, res.Invalid)
	}
	return m
}

func runScenario(ctx context.Context, cfg *runConfig, sc string, systems []*system) (*scenarioResult, error) {
	res := &scenarioResult{Name: sc}
	for _, s := range systems {
		res.Systems = append(res.Systems, s.name)
		if s.cleanup != nil {
			defer s.cleanup()
		}
	}
	if cfg.Max {
		fmt.Fprintf(os.Stderr, "== %s: %d rounds of %v at maximum rate\n", sc, cfg.Runs, cfg.Duration)
	}
	for round := 1; cfg.Max && round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)] // rotate the order each round
			m := measure(ctx, cfg, s, round, "max", 0, cfg.Duration)
			res.Measurements = append(res.Measurements, m)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	if !cfg.Latency {
		return res, nil
	}
	// Latency at a fixed offered rate of half the peer's maximum: the peer
	// is Centrifugo in P1 when present (the slower peer), else the noop.
	peer := systems[0]
	for _, s := range systems {
		if s.peer && strings.HasPrefix(s.name, "Centrifugo") {
			peer = s
		}
	}
	if cfg.LatencyRate > 0 {
		res.LatencyRate = cfg.LatencyRate
	} else {
		med := medianOf(res.Measurements, peer.name, "max", func(r *genResult) float64 { return r.RPS })
		if med <= 0 {
			return res, nil
		}
		res.LatencyRate = math.Round(med / 2)
		res.LatencyPeer = peer.name
	}
	fmt.Fprintf(os.Stderr, "== %s: %d rounds of %v at a fixed %0.f req/s\n", sc, cfg.Runs, cfg.LatencyDur, res.LatencyRate)
	for round := 1; round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)]
			m := measure(ctx, cfg, s, round, "fixed-rate", res.LatencyRate, cfg.LatencyDur)
			res.Measurements = append(res.Measurements, m)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	return res, nil
}

func results(ms []*measurement, system, kind string) []*genResult {
	var out []*genResult
	for _, m := range ms {
		if m.System == system && m.Kind == kind && m.Result != nil {
			out = append(out, m.Result)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOf(ms []*measurement, system, kind string, f func(*genResult) float64) float64 {
	var v []float64
	for _, r := range results(ms, system, kind) {
		v = append(v, f(r))
	}
	return median(v)
}

// targets are the BENCHMARKS.md targets: system -> peer -> minimum ratio.
var targets = map[string]map[string]map[string]float64{
	"P1": {
		"bridge QoS 0": {"noop 204": 0.6, "Centrifugo publish": 1.0},
		"bridge QoS 1": {"noop 204": 0.4, "Centrifugo publish": 1.0},
	},
	"R1": {
		"bridge memory": {"noop 204": 0.8},
		"bridge Redis":  {"noop 204": 0.5},
	},
}

func serverCPU(m *measurement) float64 {
	if m.Result == nil {
		return 0
	}
	return m.Result.PidCPUPct[m.Server]
}

func writeTables(w io.Writer, cfg *runConfig, res *scenarioResult) {
	if cfg.Max {
		writeMaxTables(w, cfg, res)
	}
	writeLatencyTable(w, cfg, res)
}

func writeMaxTables(w io.Writer, cfg *runConfig, res *scenarioResult) {
	fmt.Fprintf(w, "\n### %s: maximum rate, %d connections, %d B bodies, medians of %d runs of %v\n\n", res.Name, cfg.Conns, cfg.BodySize, cfg.Runs, cfg.Duration)
	fmt.Fprintln(w, "| system | req/s | generator CPU | server CPU | req/s per server core | p50 / p99 ms (queueing) | runs (req/s) | valid |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---|")
	for _, name := range res.Systems {
		var runs []string
		var srv, eff []float64
		valid := "yes"
		nRes := 0
		for _, m := range res.Measurements {
			if m.System != name || m.Kind != "max" {
				continue
			}
			if m.Result == nil {
				runs = append(runs, "error")
				valid = "no: " + m.Err
				continue
			}
			nRes++
			runs = append(runs, fmt.Sprintf("%.0f", m.Result.RPS))
			srv = append(srv, serverCPU(m))
			eff = append(eff, efficiency(m))
			if !m.Result.Valid {
				valid = "no: " + m.Result.Invalid
			} else if m.Err != "" {
				valid = "no: " + m.Err
			}
		}
		if nRes == 0 {
			fmt.Fprintf(w, "| %s | – | – | – | – | – | %s | %s |\n", name, strings.Join(runs, ", "), valid)
			continue
		}
		ms := res.Measurements
		rr := func(f func(*genResult) float64) float64 { return medianOf(ms, name, "max", f) }
		extra := ""
		if name == "bridge Redis" {
			extra = fmt.Sprintf(" (+ Redis %.0f%%)", rr(func(r *genResult) float64 { return redisCPU(r, ms, name) }))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %.0f%%%s | %.0f | %.2f / %.2f | %s | %s |\n", name,
			rr(func(r *genResult) float64 { return r.RPS }),
			rr(func(r *genResult) float64 { return r.GenCPUPct }),
			median(srv), extra, median(eff),
			rr(func(r *genResult) float64 { return r.P50ms }),
			rr(func(r *genResult) float64 { return r.P99ms }),
			strings.Join(runs, ", "), valid)
	}
	// Ratios and targets.
	fmt.Fprintf(w, "\n| ratio | req/s (median / median) | per round | per server core | target | met |\n|---|---:|---|---:|---:|---|\n")
	names := make([]string, 0)
	for sys := range targets[res.Name] {
		names = append(names, sys)
	}
	sort.Strings(names)
	for _, sys := range names {
		peers := make([]string, 0)
		for p := range targets[res.Name][sys] {
			peers = append(peers, p)
		}
		sort.Strings(peers)
		for _, p := range peers {
			a := medianOf(res.Measurements, sys, "max", func(r *genResult) float64 { return r.RPS })
			b := medianOf(res.Measurements, p, "max", func(r *genResult) float64 { return r.RPS })
			if a == 0 || b == 0 {
				fmt.Fprintf(w, "| %s / %s | – | | – | ≥ %.1f× | not measured |\n", sys, p, targets[res.Name][sys][p])
				continue
			}
			var per []string
			for round := 1; round <= cfg.Runs; round++ {
				x, y := roundRPS(res.Measurements, sys, round), roundRPS(res.Measurements, p, round)
				if x > 0 && y > 0 {
					per = append(per, fmt.Sprintf("%.2f", x/y))
				}
			}
			t := targets[res.Name][sys][p]
			met := "yes"
			if a/b < t {
				met = "**no**"
			}
			ea, eb := medianEff(res.Measurements, sys), medianEff(res.Measurements, p)
			effRatio := "–"
			if ea > 0 && eb > 0 {
				effRatio = fmt.Sprintf("%.2f×", ea/eb)
			}
			fmt.Fprintf(w, "| %s / %s | %.2f× | %s | %s | ≥ %.1f× | %s |\n", sys, p, a/b, strings.Join(per, ", "), effRatio, t, met)
		}
	}
	// Machine load during the maximum-rate runs.
	var c0, c1, la []float64
	for _, m := range res.Measurements {
		if m.Kind == "max" && m.Result != nil {
			c0 = append(c0, m.Result.CPUBusyPct["cpu0"])
			c1 = append(c1, m.Result.CPUBusyPct["cpu1"])
			la = append(la, m.Result.LoadAvg)
		}
	}
	sort.Float64s(la)
	if len(la) > 0 {
		fmt.Fprintf(w, "\nMachine during the %s maximum-rate runs: CPU 0 busy median %.0f%%, CPU 1 busy median %.0f%% (whole machine, all processes); 1-minute load average %.2f–%.2f.\n",
			res.Name, median(c0), median(c1), la[0], la[len(la)-1])
	}
}

func writeLatencyTable(w io.Writer, cfg *runConfig, res *scenarioResult) {
	if res.LatencyRate > 0 {
		why := "chosen with -latency-rate"
		if res.LatencyPeer != "" {
			why = "half of " + res.LatencyPeer + "'s median maximum"
		}
		fmt.Fprintf(w, "\n### %s: latency at a fixed %.0f req/s (%s), medians of the runs of %v\n\n", res.Name, res.LatencyRate, why, cfg.LatencyDur)
		fmt.Fprintln(w, "| system | achieved req/s | p50 ms | p99 ms | generator CPU | server CPU | runs | valid |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
		for _, name := range res.Systems {
			rs := results(res.Measurements, name, "fixed-rate")
			if len(rs) == 0 {
				fmt.Fprintf(w, "| %s | – | – | – | – | – | 0 | not measured |\n", name)
				continue
			}
			var srv []float64
			valid := "yes"
			for _, m := range res.Measurements {
				if m.System == name && m.Kind == "fixed-rate" && m.Result != nil {
					srv = append(srv, serverCPU(m))
					if !m.Result.Valid {
						valid = "no: " + m.Result.Invalid
					}
				}
			}
			rr := func(f func(*genResult) float64) float64 { return medianOf(res.Measurements, name, "fixed-rate", f) }
			ach := rr(func(r *genResult) float64 { return r.RPS })
			note := ""
			if mx := medianOf(res.Measurements, name, "max", func(r *genResult) float64 { return r.RPS }); mx > 0 && mx < res.LatencyRate {
				note = fmt.Sprintf(" (above its maximum of %.0f: queueing)", mx)
			} else if ach < 0.95*res.LatencyRate {
				note = " (rate not sustained)"
			}
			fmt.Fprintf(w, "| %s | %.0f%s | %.2f | %.2f | %.0f%% | %.0f%% | %d | %s |\n", name, ach, note,
				rr(func(r *genResult) float64 { return r.P50ms }), rr(func(r *genResult) float64 { return r.P99ms }),
				rr(func(r *genResult) float64 { return r.GenCPUPct }), median(srv), len(rs), valid)
		}
	}
}

// redisCPU is the CPU use of the other sampled processes (Redis) in r.
func redisCPU(r *genResult, ms []*measurement, system string) float64 {
	var server string
	for _, m := range ms {
		if m.Result == r {
			server = m.Server
		}
	}
	sum := 0.0
	for pid, v := range r.PidCPUPct {
		if pid != server {
			sum += v
		}
	}
	return sum
}

func roundRPS(ms []*measurement, system string, round int) float64 {
	for _, m := range ms {
		if m.System == system && m.Round == round && m.Kind == "max" && m.Result != nil {
			return m.Result.RPS
		}
	}
	return 0
}

// efficiency is requests per second per core the system under test used:
// the bridge (or peer) process, plus Redis for the Redis store.
func efficiency(m *measurement) float64 {
	if m.Result == nil {
		return 0
	}
	cpu := 0.0
	for _, v := range m.Result.PidCPUPct {
		cpu += v
	}
	if cpu <= 0 {
		return 0
	}
	return m.Result.RPS / (cpu / 100)
}

func medianEff(ms []*measurement, system string) float64 {
	var v []float64
	for _, m := range ms {
		if m.System == system && m.Kind == "max" && m.Result != nil {
			v = append(v, efficiency(m))
		}
	}
	return median(v)
}

// renderReport prints the tables of an earlier run from its -out file.
func renderReport(cfg *runConfig, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return renderWSReport(cfg, b) // an F1/M1 file
	}
	var all []*scenarioResult
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var md bytes.Buffer
	for _, res := range all {
		writeTables(&md, cfg, res)
	}
	fmt.Print(md.String())
	if cfg.Markdown != "" {
		return os.WriteFile(cfg.Markdown, md.Bytes(), 0o644)
	}
	return nil
}

// checkBenchAddr accepts loopback addresses with a port below 32768 (above
// it lie the ephemeral ports the generator's own connections use).
func checkBenchAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q: %v", a, err)
	}
	ip := net.ParseIP(host)
	n, err := strconv.Atoi(port)
	if ip == nil || !ip.IsLoopback() || err != nil || n <= 0 || n >= 32768 {
		return fmt.Errorf("address %q: want a loopback IP and a port below 32768", a)
	}
	return nil
}

// mqttClearRetained removes the retained message on topic from the broker at
// brokerURL (mqtt://host:port) with a minimal MQTT 3.1.1 session: CONNECT,
// an empty retained QoS 0 PUBLISH, DISCONNECT. The broker handles a
// connection's packets in order, so the PUBLISH is done before DISCONNECT.
func mqttClearRetained(brokerURL, topic string) error {
	u, err := url.Parse(brokerURL)
	if err != nil || u.Scheme != "mqtt" {
		return fmt.Errorf("want mqtt://host:port, not %q", brokerURL)
	}
	c, err := net.DialTimeout("tcp", u.Host, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	clientID := fmt.Sprintf("mqttbench-cleanup-%d", os.Getpid())
	connect := append(str("MQTT"), 4, 0x02, 0, 10) // level 4, clean session, keep-alive 10 s
	connect = append(connect, str(clientID)...)
	publish := str(topic) // QoS 0: no packet id; empty payload
	var pkt []byte
	pkt = append(pkt, 0x10, byte(len(connect)))
	pkt = append(pkt, connect...)
	pkt = append(pkt, 0x31, byte(len(publish))) // PUBLISH, retain
	pkt = append(pkt, publish...)
	if len(connect) > 127 || len(publish) > 127 {
		return errors.New("topic or client id too long for this minimal client")
	}
	connack := make([]byte, 4)
	if _, err := c.Write(pkt[:2+len(connect)]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, connack); err != nil {
		return fmt.Errorf("CONNACK: %w", err)
	}
	if connack[0] != 0x20 || connack[3] != 0 {
		return fmt.Errorf("CONNACK refused: % x", connack)
	}
	if _, err := c.Write(append(pkt[2+len(connect):], 0xe0, 0)); err != nil { // + DISCONNECT
		return err
	}
	_, _ = io.Copy(io.Discard, c) // the broker closes after DISCONNECT
	return nil
}
