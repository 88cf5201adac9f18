package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The S1 orchestrator: the stream store's throughput against Redis's own
// XADD rate. Each measurement starts a fresh Redis pinned to the server
// CPU; for the bridge rows also a fresh Mosquitto and a fresh bridge on
// that CPU, so the whole system under test shares one core. The generator
// (`mqttbench stream`, or redis-benchmark for the peer) runs on the other
// CPU.

// Listen addresses of S1 (flags of `run` can move them); apart from the
// other scenarios' so that they do not collide.
var (
	s1BridgeAddr = "127.0.0.1:18280"
	s1MQTTAddr   = "127.0.0.1:18894"
	s1RedisAddr  = "127.0.0.1:16389"
)

const (
	s1Topic     = "bench/s1"
	s1KeyPrefix = "bench:"
)

// s1Settings are the S1 flags of `run`.
type s1Settings struct {
	Window    int
	Pipelines []int // redis-benchmark -P of the peer rows
	Clients   int   // redis-benchmark -c
	Subs      []string
	Redis     string // redis-server
	Bench     string // redis-benchmark
	Mosquitto string
	Out       string
}

var s1Cfg = s1Settings{
	Window:    500,
	Pipelines: []int{1, 16},
	Clients:   50,
	Subs:      []string{"ws", "redis"},
	Redis:     "redis-server",
	Bench:     "redis-benchmark",
	Mosquitto: "/usr/sbin/mosquitto",
	Out:       "/tmp/mqttbench-s1.json",
}

// s1Flags registers the S1 flags on the flag set of `run`.
func s1Flags(fs *flag.FlagSet) {
	fs.StringVar(&s1BridgeAddr, "s1-bridge-addr", s1BridgeAddr, "S1: bridge HTTP listen address")
	fs.StringVar(&s1MQTTAddr, "s1-mqtt-addr", s1MQTTAddr, "S1: Mosquitto listen address")
	fs.StringVar(&s1RedisAddr, "s1-redis-addr", s1RedisAddr, "S1: Redis listen address")
	fs.IntVar(&s1Cfg.Window, "s1-window", s1Cfg.Window, "S1: messages between publisher and subscriber")
	fs.Var(intList{&s1Cfg.Pipelines}, "s1-pipelines", "S1: redis-benchmark -P of the peer rows, comma-separated")
	fs.IntVar(&s1Cfg.Clients, "s1-clients", s1Cfg.Clients, "S1: redis-benchmark -c")
	fs.StringVar(&s1Cfg.Out, "s1-out", s1Cfg.Out, "S1 measurements as JSON")
}

// s1Measurement is one S1 run of one system.
type s1Measurement struct {
	System string `json:"system"`
	Round  int    `json:"round"`
	// MPS is messages (bridge) or XADDs (peer) per second.
	MPS       float64            `json:"msgs_per_s"`
	Seconds   float64            `json:"seconds"` // the measured window (the peer: its whole run)
	GenCPUPct float64            `json:"gen_cpu_pct"`
	CPUPct    map[string]float64 `json:"cpu_pct"` // bridge, mosquitto, redis: % of one core
	Busy      map[string]float64 `json:"cpu_busy_pct,omitempty"`
	Stream    *s1Result          `json:"stream,omitempty"`
	// RedisUsec is Redis's time per delivered message in each command
	// (INFO commandstats over the whole generator run), for the bridge rows.
	RedisUsec map[string]float64 `json:"redis_usec_per_msg,omitempty"`
	Command   []string           `json:"generator_command"`
	Valid     bool               `json:"valid"`
	Err       string             `json:"error,omitempty"`
}

func (m *s1Measurement) serverCPU() float64 {
	sum := 0.0
	for _, v := range m.CPUPct {
		sum += v
	}
	return sum
}

// s1System is one row of S1.
type s1System struct {
	name     string
	peer     bool
	pipeline int    // peer: redis-benchmark -P
	sub      string // bridge: ws or redis
}

func s1Systems() []s1System {
	var out []s1System
	for _, p := range s1Cfg.Pipelines {
		out = append(out, s1System{name: fmt.Sprintf("Redis XADD (redis-benchmark -c %d -P %d)", s1Cfg.Clients, p), peer: true, pipeline: p})
	}
	for _, sub := range s1Cfg.Subs {
		name := "bridge → WebSocket client"
		if sub == "redis" {
			name = "bridge → Redis tail (XREAD)"
		}
		out = append(out, s1System{name: name, sub: sub})
	}
	return out
}

// runS1 runs every S1 system once per round, rotating the order, and
// writes the tables.
func runS1(ctx context.Context, cfg *runConfig, md *bytes.Buffer) error {
	for _, a := range []string{s1BridgeAddr, s1MQTTAddr, s1RedisAddr} {
		if err := checkBenchAddr(a); err != nil {
			return err
		}
	}
	for _, bin := range []string{s1Cfg.Redis, s1Cfg.Bench, s1Cfg.Mosquitto} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("S1 needs %s: %w", bin, err)
		}
	}
	if s1Cfg.Window < 1 || s1Cfg.Clients < 1 {
		return errors.New("-s1-window and -s1-clients must be positive")
	}
	systems := s1Systems()
	var all []*s1Measurement
	defer func() { _ = saveResults(s1Cfg.Out, all) }()
	fmt.Fprintf(os.Stderr, "== S1: %d rounds of %v\n", cfg.Runs, cfg.Duration)
	for round := 1; round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)]
			m := measureS1(ctx, cfg, s, round)
			all = append(all, m)
			if m.Err != "" {
				fmt.Fprintf(os.Stderr, "  => %s round %d: %s\n", s.name, round, m.Err)
			} else {
				fmt.Fprintf(os.Stderr, "  => %s round %d: %.0f msg/s, generator CPU %.0f%%, server CPU %.0f%% %v, valid=%v\n",
					s.name, round, m.MPS, m.GenCPUPct, m.serverCPU(), m.CPUPct, m.Valid)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	writeS1Tables(md, cfg, systems, all)
	return nil
}

func s1RedisServer(cfg *runConfig) server {
	_, port, _ := strings.Cut(s1RedisAddr, ":")
	return server{
		name: "redis-server",
		argv: []string{s1Cfg.Redis, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--loglevel", "warning", "--dir", cfg.LogDir},
		addrs: []string{s1RedisAddr},
		ready: func(ctx context.Context) error {
			c := redis.NewClient(&redis.Options{Addr: s1RedisAddr, DialTimeout: time.Second, ContextTimeoutEnabled: true})
			defer c.Close()
			deadline := time.Now().Add(20 * time.Second)
			for {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				err := c.Ping(pctx).Err()
				cancel()
				if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
		},
	}
}

func s1MosquittoServer(cfg *runConfig) (server, error) {
	host, port, _ := strings.Cut(s1MQTTAddr, ":")
	conf := filepath.Join(cfg.LogDir, "s1-mosquitto.conf")
	// Debian's defaults but for the listener and persistence (off, like
	// Redis's): max_inflight_messages 20, max_queued_messages 1000.
	text := fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n", port, host)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return server{}, err
	}
	return server{
		name:  "mosquitto",
		argv:  []string{s1Cfg.Mosquitto, "-c", conf},
		addrs: []string{s1MQTTAddr},
		ready: func(ctx context.Context) error { return s1WaitTCP(ctx, s1MQTTAddr) },
	}, nil
}

func s1WaitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func s1BridgeServer(cfg *runConfig) server {
	return server{
		name: "bridge (Mosquitto, Redis store)",
		argv: []string{cfg.Bridge, "--http-addr", s1BridgeAddr, "--mqtt-url", "mqtt://" + s1MQTTAddr, "--topics", "bench/#",
			"--redis-url", "redis://" + s1RedisAddr + "/0", "--redis-key-prefix", s1KeyPrefix, "--instance-id", "s1bench", "--log-level", "warn"},
		addrs: []string{s1BridgeAddr},
		ready: func(ctx context.Context) error {
			return pollHTTP(ctx, "GET", "http://"+s1BridgeAddr+"/readyz", nil, nil, func(code int, _ []byte) bool { return code == 200 })
		},
	}
}

// measureS1 starts what system s needs, measures once and stops it all.
func measureS1(ctx context.Context, cfg *runConfig, s s1System, round int) *s1Measurement {
	m := &s1Measurement{System: s.name, Round: round, CPUPct: map[string]float64{}}
	tag := fmt.Sprintf("s1-%d-%s", round, strings.NewReplacer(" ", "_", "(", "", ")", "", "→", "to", "-", "").Replace(s.name))
	rds, err := startServer(ctx, cfg, s1RedisServer(cfg), tag+"-redis")
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer rds.stop()
	if s.peer {
		s1RedisBenchmark(ctx, cfg, s, m, rds.cmd.Process.Pid)
		return m
	}
	ms, err := s1MosquittoServer(cfg)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	mosq, err := startServer(ctx, cfg, ms, tag+"-mosquitto")
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer mosq.stop()
	br, err := startServer(ctx, cfg, s1BridgeServer(cfg), tag+"-bridge")
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer br.stop()
	pids := []int{br.cmd.Process.Pid, mosq.cmd.Process.Pid, rds.cmd.Process.Pid}
	args := []string{"-c", cfg.GenCPU, cfg.Self, "stream", "-json", "-sub", s.sub,
		"-mqtt", s1MQTTAddr, "-topic", s1Topic, "-size", strconv.Itoa(cfg.BodySize), "-window", strconv.Itoa(s1Cfg.Window),
		"-ws-url", "ws://" + s1BridgeAddr + "/v1/ws?filter=" + strings.ReplaceAll(s1Topic, "/", "%2F"),
		"-redis-url", "redis://" + s1RedisAddr + "/0", "-stream", "{" + s1KeyPrefix + "}history",
		"-duration", cfg.Duration.String(), "-warmup", cfg.Warmup.String(),
		"-pids", fmt.Sprintf("%d,%d,%d", pids[0], pids[1], pids[2])}
	m.Command = append([]string{"taskset"}, args...)
	rc := redis.NewClient(&redis.Options{Addr: s1RedisAddr, ContextTimeoutEnabled: true})
	defer rc.Close()
	if err := rc.ConfigResetStat(ctx).Err(); err != nil {
		m.Err = err.Error()
		return m
	}
	var res s1Result
	if err := runChild(ctx, args, cfg.Duration+cfg.Warmup+60*time.Second, &res); err != nil {
		m.Err = err.Error()
		return m
	}
	m.Stream = &res
	m.MPS, m.Seconds, m.GenCPUPct, m.Busy, m.Valid = res.MPS, res.Seconds, res.GenCPUPct, res.CPUBusyPct, res.Valid
	for i, name := range []string{"bridge", "mosquitto", "redis"} {
		m.CPUPct[name] = res.PidCPUPct[strconv.Itoa(pids[i])]
	}
	if !res.Valid {
		m.Err = "invalid: " + res.Invalid
	}
	if info, err := rc.Info(ctx, "commandstats").Result(); err == nil && res.Delivered+res.Probes > 0 {
		m.RedisUsec = s1CommandUsec(info, float64(res.Delivered+res.Probes))
	}
	return m
}

// s1CommandUsec is each command's Redis time (µs) divided by n, from INFO
// commandstats.
func s1CommandUsec(info string, n float64) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if k, v, _ := strings.Cut(kv, "="); k == "usec" {
				u, _ := strconv.ParseFloat(v, 64)
				out[name] = u / n
			}
		}
	}
	return out
}

// s1PeerCommand is the XADD the peer rows run: the entry the bridge
// writes (the same six fields, a 64-byte payload by default), trimmed to
// about the bridge's default history size.
func s1PeerCommand(size int) []string {
	return []string{"XADD", "{" + s1KeyPrefix + "}s1", "MAXLEN", "~", "10000", "*",
		"topic", s1Topic, "payload", strings.Repeat("x", size), "qos", "1", "retain", "0", "props", "", "received_at", "1764160000000"}
}

// s1RedisBenchmark measures the peer: a short calibration run (also the
// warm-up), then a run sized to last about cfg.Duration.
func s1RedisBenchmark(ctx context.Context, cfg *runConfig, s s1System, m *s1Measurement, redisPid int) {
	host, port, _ := strings.Cut(s1RedisAddr, ":")
	run := func(n int64) (float64, time.Duration, time.Duration, error) {
		args := append([]string{"-c", cfg.GenCPU, s1Cfg.Bench, "-h", host, "-p", port, "-c", strconv.Itoa(s1Cfg.Clients),
			"-n", strconv.FormatInt(n, 10), "-P", strconv.Itoa(s.pipeline), "--csv"}, s1PeerCommand(cfg.BodySize)...)
		m.Command = append([]string{"taskset"}, args...)
		rctx, cancel := context.WithTimeout(ctx, 3*maxDuration)
		defer cancel()
		cmd := exec.CommandContext(rctx, "taskset", args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		fmt.Fprintf(os.Stderr, "  gen:   taskset %s\n", shellJoin(args))
		start := time.Now()
		out, err := cmd.Output()
		wall := time.Since(start)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("redis-benchmark: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		var cpu time.Duration
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		rps, err := s1ParseBenchCSV(out)
		return rps, wall, cpu, err
	}
	// Two calibration runs: a short one, then one of about 2 s whose rate
	// sizes the measured run.
	rps, _, _, err := run(max(int64(s1Cfg.Clients)*1000, 100000))
	if err == nil {
		rps, _, _, err = run(min(max(int64(rps*2), 100000), defMaxRequests))
	}
	if err != nil {
		m.Err = err.Error()
		return
	}
	n := min(max(int64(rps*cfg.Duration.Seconds()), 100000), defMaxRequests)
	client := redis.NewClient(&redis.Options{Addr: s1RedisAddr, ContextTimeoutEnabled: true})
	defer client.Close()
	if err := client.ConfigResetStat(ctx).Err(); err != nil {
		m.Err = err.Error()
		return
	}
	cpu0, _ := pidCPU(redisPid)
	sys0 := readCPUTimes()
	rps, wall, genCPU, err := run(n)
	cpu1, _ := pidCPU(redisPid)
	if err != nil {
		m.Err = err.Error()
		return
	}
	m.MPS, m.Seconds = rps, wall.Seconds()
	m.GenCPUPct = 100 * float64(genCPU) / float64(wall)
	m.CPUPct["redis"] = 100 * float64(cpu1-cpu0) / float64(wall)
	m.Busy = cpuBusyPct(sys0, readCPUTimes())
	// Every XADD must have succeeded.
	info, err := client.Info(ctx, "commandstats").Result()
	if err != nil {
		m.Err = err.Error()
		return
	}
	calls, failed := s1CommandStat(info, "xadd")
	if calls < n || failed != 0 {
		m.Err = fmt.Sprintf("Redis counted %d XADD calls (%d failed), want %d", calls, failed, n)
		return
	}
	m.Valid = true
}

// s1ParseBenchCSV reads the rps of the one test in redis-benchmark
// --csv output.
func s1ParseBenchCSV(out []byte) (float64, error) {
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark output: %v", err)
	}
	if len(recs) != 2 || len(recs[0]) < 2 || recs[0][1] != "rps" || len(recs[1]) < 2 {
		return 0, fmt.Errorf("redis-benchmark output: unexpected %q", out)
	}
	rps, err := strconv.ParseFloat(recs[1][1], 64)
	if err != nil || rps <= 0 {
		return 0, fmt.Errorf("redis-benchmark output: rps %q", recs[1][1])
	}
	return rps, nil
}

// s1CommandStat reads calls and failed_calls of a command from INFO
// commandstats.
func s1CommandStat(info, cmd string) (calls, failed int64) {
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls = n
			case "failed_calls":
				failed = n
			}
		}
	}
	return calls, failed
}

func writeS1Tables(w io.Writer, cfg *runConfig, systems []s1System, all []*s1Measurement) {
	fmt.Fprintf(w, "\n### S1: stream store throughput, %d B payloads, medians of %d runs of %v\n\n", cfg.BodySize, cfg.Runs, cfg.Duration)
	fmt.Fprintln(w, "| system | msg/s | generator CPU | server CPU (bridge + Mosquitto + Redis) | msg/s per server core | runs (msg/s) | delivered / lost / duplicates | valid |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---|---|")
	med := map[string]float64{}
	for _, s := range systems {
		var mps, gen, srv, eff, br, mq, rd []float64
		var runs []string
		valid := "yes"
		var delivered, lost, dups int64
		for _, m := range all {
			if m.System != s.name {
				continue
			}
			if m.Err != "" || !m.Valid {
				runs = append(runs, "error")
				valid = "no: " + m.Err
				continue
			}
			runs = append(runs, fmt.Sprintf("%.0f", m.MPS))
			mps = append(mps, m.MPS)
			gen = append(gen, m.GenCPUPct)
			srv = append(srv, m.serverCPU())
			if c := m.serverCPU(); c > 0 {
				eff = append(eff, m.MPS/(c/100))
			}
			br, mq, rd = append(br, m.CPUPct["bridge"]), append(mq, m.CPUPct["mosquitto"]), append(rd, m.CPUPct["redis"])
			if m.Stream != nil {
				delivered += m.Stream.Delivered
				lost += m.Stream.Lost
				dups += m.Stream.Dups
			}
		}
		med[s.name] = median(mps)
		cpu := fmt.Sprintf("%.0f%% (Redis)", median(srv))
		counts := "–"
		if !s.peer {
			cpu = fmt.Sprintf("%.0f%% (%.0f + %.0f + %.0f)", median(srv), median(br), median(mq), median(rd))
			counts = fmt.Sprintf("%d / %d / %d", delivered, lost, dups)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %s | %.0f | %s | %s | %s |\n", s.name, median(mps), median(gen), cpu, median(eff),
			strings.Join(runs, ", "), counts, valid)
	}
	fmt.Fprintf(w, "\n| ratio | msg/s (median / median) | per round | target | met |\n|---|---:|---|---:|---|\n")
	for _, b := range systems {
		if b.peer {
			continue
		}
		for _, p := range systems {
			if !p.peer {
				continue
			}
			if med[b.name] == 0 || med[p.name] == 0 {
				fmt.Fprintf(w, "| %s / %s | – | | ≥ 0.5× | not measured |\n", b.name, p.name)
				continue
			}
			var per []string
			for round := 1; round <= cfg.Runs; round++ {
				x, y := s1RoundMPS(all, b.name, round), s1RoundMPS(all, p.name, round)
				if x > 0 && y > 0 {
					per = append(per, fmt.Sprintf("%.3f", x/y))
				}
			}
			r := med[b.name] / med[p.name]
			met := "yes"
			if r < 0.5 {
				met = "**no**"
			}
			fmt.Fprintf(w, "| %s / %s | %.3f× | %s | ≥ 0.5× | %s |\n", b.name, p.name, r, strings.Join(per, ", "), met)
		}
	}
	// Where Redis's time goes, per message, for the bridge rows.
	fmt.Fprintf(w, "\nRedis time per message (INFO commandstats, median of the runs; evalsha includes the commands its script calls):\n\n")
	for _, s := range systems {
		if s.peer {
			continue
		}
		per := map[string][]float64{}
		for _, m := range all {
			if m.System == s.name && m.Valid {
				for k, v := range m.RedisUsec {
					per[k] = append(per[k], v)
				}
			}
		}
		names := make([]string, 0, len(per))
		for k := range per {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool { return median(per[names[i]]) > median(per[names[j]]) })
		var parts []string
		for _, k := range names {
			if v := median(per[k]); v >= 0.1 {
				parts = append(parts, fmt.Sprintf("%s %.1f µs", k, v))
			}
		}
		fmt.Fprintf(w, "- %s: %s\n", s.name, strings.Join(parts, ", "))
	}
	var c0, c1 []float64
	for _, m := range all {
		if m.Busy != nil {
			c0, c1 = append(c0, m.Busy["cpu0"]), append(c1, m.Busy["cpu1"])
		}
	}
	if len(c0) > 0 {
		fmt.Fprintf(w, "\nMachine during the S1 runs: CPU 0 busy median %.0f%%, CPU 1 busy median %.0f%% (whole machine, all processes); load average at the end %.2f.\n",
			median(c0), median(c1), loadAvg())
	}
}

func s1RoundMPS(all []*s1Measurement, system string, round int) float64 {
	for _, m := range all {
		if m.System == system && m.Round == round && m.Valid {
			return m.MPS
		}
	}
	return 0
}
