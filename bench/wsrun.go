package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The orchestrator of the WebSocket scenarios F1 (fan-out) and M1 (idle
// memory), in the manner of P1 and R1: every system under test is started
// fresh for each measurement, pinned to the server CPU; the generator
// (`mqttbench fanout` or `mqttbench idle`) runs pinned to the other; the
// systems are interleaved round by round; medians, ratios and the targets
// of BENCHMARKS.md.

// Listen addresses of F1 and M1 (flags of `run` can move them), apart from
// the other scenarios' so that runs of different scenarios on one machine
// do not collide.
var (
	wsBridgeHTTPAddr  = "127.0.0.1:18180"
	wsBridgeMQTTAddr  = "127.0.0.1:18983"
	wsCentrifugoAddr  = "127.0.0.1:18100"
	mosquittoWSAddr   = "127.0.0.1:18181"
	mosquittoMQTTAddr = "127.0.0.1:18984"
)

const (
	f1Topic   = "bench/f1"
	f1Channel = "bench" // Centrifugo
	m1Topic   = "bench/m1/%d"
	m1Channel = "m1_%d" // Centrifugo; ':' would name a namespace
)

// wsConfig holds the flags of `run` that only F1 and M1 use.
type wsConfig struct {
	Subs         []int
	Windows      []int
	Mosquitto    string
	IdleConns    int
	IdleParallel int
	IdleSettle   time.Duration
	Out          string
}

var wsCfg = wsConfig{
	Subs:         []int{100, 1000},
	Windows:      []int{8, 64, 512},
	Mosquitto:    "/usr/sbin/mosquitto",
	IdleConns:    10000,
	IdleParallel: 100,
	IdleSettle:   5 * time.Second,
	Out:          "/tmp/mqttbench-ws-results.json",
}

// intList is a comma-separated list flag.
type intList struct{ p *[]int }

func (l intList) String() string {
	if l.p == nil {
		return ""
	}
	s := make([]string, len(*l.p))
	for i, v := range *l.p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q: want positive integers separated by commas", v)
		}
		out = append(out, n)
	}
	*l.p = out
	return nil
}

// wsSystem is one system of F1 and M1.
type wsSystem struct {
	name   string
	kind   string
	peer   bool
	srv    server
	subURL string // F1 subscribers
	pubURL string // F1 publisher
	topic  string // F1 topic or channel
	idle   string // M1 topic pattern
}

func wsSystems(cfg *runConfig) ([]*wsSystem, error) {
	bridge := &wsSystem{name: "bridge", kind: kindBridge, srv: wsBridgeServer(cfg),
		subURL: "ws://" + wsBridgeHTTPAddr + "/v1/ws", pubURL: "mqtt://" + wsBridgeMQTTAddr, topic: f1Topic, idle: m1Topic}
	systems := []*wsSystem{bridge}
	if _, err := os.Stat(wsCfg.Mosquitto); err == nil {
		srv, err := wsMosquittoServer(cfg)
		if err != nil {
			return nil, err
		}
		systems = append(systems, &wsSystem{name: "Mosquitto WS", kind: kindMosquitto, peer: true, srv: srv,
			subURL: "ws://" + mosquittoWSAddr + "/mqtt", pubURL: "mqtt://" + mosquittoMQTTAddr, topic: f1Topic, idle: m1Topic})
	} else {
		fmt.Fprintf(os.Stderr, "F1/M1: no Mosquitto at %s; running without it\n", wsCfg.Mosquitto)
	}
	if _, err := os.Stat(cfg.Centrifugo); err == nil {
		srv, err := wsCentrifugoServer(cfg)
		if err != nil {
			return nil, err
		}
		systems = append(systems, &wsSystem{name: "Centrifugo", kind: kindCentrifugo, peer: true, srv: srv,
			subURL: "ws://" + wsCentrifugoAddr + "/connection/websocket", pubURL: "http://" + wsCentrifugoAddr + "/api/publish",
			topic: f1Channel, idle: m1Channel})
	} else {
		fmt.Fprintf(os.Stderr, "F1/M1: no Centrifugo binary at %s; running without it\n", cfg.Centrifugo)
	}
	return systems, nil
}

// wsBridgeServer runs the bridge with its defaults: the embedded broker
// (whose MQTT listener the F1 publisher uses) and the memory store.
func wsBridgeServer(cfg *runConfig) server {
	return server{
		name:  "bridge (embedded broker, memory store)",
		argv:  []string{cfg.Bridge, "--http-addr", wsBridgeHTTPAddr, "--embedded-mqtt-addr", wsBridgeMQTTAddr},
		addrs: []string{wsBridgeHTTPAddr, wsBridgeMQTTAddr},
		ready: func(ctx context.Context) error {
			return pollHTTP(ctx, "GET", "http://"+wsBridgeHTTPAddr+"/readyz", nil, nil, func(code int, _ []byte) bool { return code == 200 })
		},
	}
}

// wsCentrifugoServer runs Centrifugo as in P1 (insecure client and API
// modes, memory engine), on the F1/M1 address.
func wsCentrifugoServer(cfg *runConfig) (server, error) {
	conf := filepath.Join(cfg.LogDir, "ws-centrifugo.json")
	host, port, _ := net.SplitHostPort(wsCentrifugoAddr)
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
	body := centrifugoBody(cfg.BodySize)
	return server{
		name:  "centrifugo",
		argv:  []string{cfg.Centrifugo, "--config", conf},
		addrs: []string{wsCentrifugoAddr},
		ready: func(ctx context.Context) error {
			// Errors come as 200 with an "error" member: check the body.
			return pollHTTP(ctx, "POST", "http://"+wsCentrifugoAddr+"/api/publish", body, [][2]string{{"Content-Type", "application/json"}},
				func(code int, resp []byte) bool { return code == 200 && !bytes.Contains(resp, []byte(`"error"`)) })
		},
	}, nil
}

// wsMosquittoServer runs Mosquitto with an MQTT listener (for the publisher)
// and a WebSocket listener (for the subscribers), both on loopback, no
// persistence, anonymous. Its open-files limit is raised to the hard limit
// with prlimit: Mosquitto does not raise its own, and libwebsockets sizes
// its tables from it at start-up.
func wsMosquittoServer(cfg *runConfig) (server, error) {
	conf := filepath.Join(cfg.LogDir, "mosquitto.conf")
	wsHost, wsPort, _ := net.SplitHostPort(mosquittoWSAddr)
	mqHost, mqPort, _ := net.SplitHostPort(mosquittoMQTTAddr)
	text := strings.Join([]string{
		"# written by mqttbench run (F1, M1)",
		"per_listener_settings false",
		"allow_anonymous true",
		"persistence false",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"connection_messages false",
		"listener " + mqPort + " " + mqHost,
		"listener " + wsPort + " " + wsHost,
		"protocol websockets",
		"",
	}, "\n")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return server{}, err
	}
	argv := []string{wsCfg.Mosquitto, "-c", conf}
	var rl syscall.Rlimit
	if _, err := exec.LookPath("prlimit"); err == nil && syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		argv = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", rl.Max, rl.Max)}, argv...)
	}
	return server{
		name:  "mosquitto",
		argv:  argv,
		addrs: []string{mosquittoWSAddr, mosquittoMQTTAddr},
		ready: func(ctx context.Context) error {
			deadline := time.Now().Add(20 * time.Second)
			for {
				ok := true
				for _, a := range []string{mosquittoWSAddr, mosquittoMQTTAddr} {
					c, err := net.DialTimeout("tcp", a, time.Second)
					if err != nil {
						ok = false
						break
					}
					c.Close()
				}
				if ok {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("not listening on %s and %s after 20s", mosquittoWSAddr, mosquittoMQTTAddr)
				}
				if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
					return err
				}
			}
		},
	}, nil
}

// --- results ----------------------------------------------------------------

type fanMeasurement struct {
	System string     `json:"system"`
	Round  int        `json:"round"`
	Kind   string     `json:"kind"` // "max" or "fixed-rate"
	Window int        `json:"window,omitempty"`
	Result *fanResult `json:"result"`
	Server string     `json:"server_pid"`
	Err    string     `json:"error,omitempty"`
}

type f1Result struct {
	Subs         int               `json:"subs"`
	Systems      []string          `json:"systems"`
	Windows      []int             `json:"windows"`
	Seconds      float64           `json:"seconds"`
	LatencySecs  float64           `json:"latency_seconds"`
	Measurements []*fanMeasurement `json:"measurements"`
	LatencyRate  float64           `json:"latency_rate,omitempty"`
	LatencyPeer  string            `json:"latency_peer,omitempty"`
}

type idleMeasurement struct {
	System string      `json:"system"`
	Round  int         `json:"round"`
	Result *idleResult `json:"result"`
	Server string      `json:"server_pid"`
	Err    string      `json:"error,omitempty"`
}

type m1Result struct {
	Conns        int                `json:"conns"`
	Systems      []string           `json:"systems"`
	Measurements []*idleMeasurement `json:"measurements"`
}

type wsResults struct {
	Machine string      `json:"machine"`
	Runs    int         `json:"runs"`
	F1      []*f1Result `json:"f1,omitempty"`
	M1      *m1Result   `json:"m1,omitempty"`
}

// --- running ----------------------------------------------------------------

// runWSScenarios runs F1 and/or M1 and writes their tables to md.
func runWSScenarios(ctx context.Context, cfg *runConfig, scenarios []string, md io.Writer) error {
	systems, err := wsSystems(cfg)
	if err != nil {
		return err
	}
	all := &wsResults{Runs: cfg.Runs}
	save := func() error {
		all.Machine = machineLine()
		f, err := os.Create(wsCfg.Out)
		if err != nil {
			return err
		}
		defer f.Close()
		return writeJSON(f, all)
	}
	for _, sc := range scenarios {
		switch sc {
		case "F1":
			for _, n := range wsCfg.Subs {
				res, err := runF1(ctx, cfg, systems, n)
				if res != nil {
					all.F1 = append(all.F1, res)
					writeF1Tables(md, cfg, res)
				}
				if err != nil {
					_ = save()
					return err
				}
			}
		case "M1":
			res, err := runM1(ctx, cfg, systems)
			if res != nil {
				all.M1 = res
				writeM1Table(md, cfg, res)
			}
			if err != nil {
				_ = save()
				return err
			}
		}
	}
	return save()
}

func runF1(ctx context.Context, cfg *runConfig, systems []*wsSystem, n int) (*f1Result, error) {
	res := &f1Result{Subs: n, Windows: wsCfg.Windows, Seconds: cfg.Duration.Seconds(), LatencySecs: cfg.LatencyDur.Seconds()}
	for _, s := range systems {
		res.Systems = append(res.Systems, s.name)
	}
	if cfg.Max {
		fmt.Fprintf(os.Stderr, "== F1, %d subscribers: %d rounds of %v at the maximum rate, windows %v\n", n, cfg.Runs, cfg.Duration, wsCfg.Windows)
	}
	for round := 1; cfg.Max && round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)]
			for _, w := range wsCfg.Windows {
				m := measureFan(ctx, cfg, s, n, round, "max", w, 0, cfg.Duration)
				res.Measurements = append(res.Measurements, m)
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
			}
		}
	}
	if !cfg.Latency {
		return res, nil
	}
	if cfg.LatencyRate > 0 {
		res.LatencyRate = cfg.LatencyRate
	} else {
		// Half the slower peer's maximum, so that every system should keep up.
		best := math.Inf(1)
		for _, s := range systems {
			if !s.peer {
				continue
			}
			if v := median(bestPerRound(res.Measurements, s.name, cfg.Runs, func(r *fanResult) float64 { return r.DPS })); v > 0 && v < best {
				best, res.LatencyPeer = v, s.name
			}
		}
		if math.IsInf(best, 1) {
			return res, nil
		}
		res.LatencyRate = math.Round(best / 2)
	}
	fmt.Fprintf(os.Stderr, "== F1, %d subscribers: %d rounds of %v at a fixed %.0f deliveries/s\n", n, cfg.Runs, cfg.LatencyDur, res.LatencyRate)
	for round := 1; round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)]
			m := measureFan(ctx, cfg, s, n, round, "fixed-rate", 0, res.LatencyRate, cfg.LatencyDur)
			res.Measurements = append(res.Measurements, m)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	return res, nil
}

// measureFan starts the system, runs one fan-out generator against it, and
// stops it.
func measureFan(ctx context.Context, cfg *runConfig, s *wsSystem, n, round int, kind string, window int, rate float64, dur time.Duration) *fanMeasurement {
	m := &fanMeasurement{System: s.name, Round: round, Kind: kind, Window: window}
	tag := fmt.Sprintf("F1-%d-%s-%s-w%d-%d", n, strings.ReplaceAll(s.name, " ", "_"), kind, window, round)
	r, err := startServer(ctx, cfg, s.srv, tag)
	if err != nil {
		m.Err = err.Error()
		fmt.Fprintf(os.Stderr, "  => %s: %v\n", s.name, err)
		return m
	}
	defer r.stop()
	pid := r.cmd.Process.Pid
	m.Server = strconv.Itoa(pid)
	args := []string{"-c", cfg.GenCPU, cfg.Self, "fanout", "-json",
		"-system", s.kind, "-sub-url", s.subURL, "-pub-url", s.pubURL, "-topic", s.topic,
		"-subs", strconv.Itoa(n), "-payload-size", strconv.Itoa(cfg.BodySize),
		"-duration", dur.String(), "-warmup", cfg.Warmup.String(), "-pids", m.Server}
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(rate, 'f', 0, 64))
	} else {
		args = append(args, "-window", strconv.Itoa(window))
	}
	var res fanResult
	if err := runChild(ctx, args, dur+cfg.Warmup+2*time.Minute, &res); err != nil {
		m.Err = err.Error()
		fmt.Fprintf(os.Stderr, "  => %s: %v\n", s.name, err)
		return m
	}
	m.Result = &res
	fmt.Fprintf(os.Stderr, "  => %s N=%d %s round %d window %d: %.0f deliveries/s, p50 %.2f ms, p99 %.2f ms, gen CPU %.0f%%, server CPU %.0f%%, valid=%v %s\n",
		s.name, n, kind, round, window, res.DPS, res.P50ms, res.P99ms, res.GenCPUPct, res.PidCPUPct[m.Server], res.Valid, res.Invalid)
	return m
}

// runChild runs a generator subcommand under taskset and decodes its JSON.
func runChild(ctx context.Context, args []string, limit time.Duration, out any) error {
	gctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(gctx, "taskset", args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	fmt.Fprintf(os.Stderr, "  gen:   taskset %s\n", shellJoin(args))
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("generator: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("generator output: %v", err)
	}
	return nil
}

func runM1(ctx context.Context, cfg *runConfig, systems []*wsSystem) (*m1Result, error) {
	res := &m1Result{Conns: wsCfg.IdleConns}
	for _, s := range systems {
		res.Systems = append(res.Systems, s.name)
	}
	fmt.Fprintf(os.Stderr, "== M1: %d rounds of %d idle connections\n", cfg.Runs, wsCfg.IdleConns)
	for round := 1; round <= cfg.Runs; round++ {
		for i := range systems {
			s := systems[(i+round-1)%len(systems)]
			res.Measurements = append(res.Measurements, measureIdle(ctx, cfg, s, round))
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
	}
	return res, nil
}

func measureIdle(ctx context.Context, cfg *runConfig, s *wsSystem, round int) *idleMeasurement {
	m := &idleMeasurement{System: s.name, Round: round}
	r, err := startServer(ctx, cfg, s.srv, fmt.Sprintf("M1-%s-%d", strings.ReplaceAll(s.name, " ", "_"), round))
	if err != nil {
		m.Err = err.Error()
		fmt.Fprintf(os.Stderr, "  => %s: %v\n", s.name, err)
		return m
	}
	defer r.stop()
	m.Server = strconv.Itoa(r.cmd.Process.Pid)
	// Let the server finish starting (a Go server's heap settles after
	// its first requests) before the baseline is read.
	if err := sleepCtx(ctx, time.Second); err != nil {
		m.Err = err.Error()
		return m
	}
	args := []string{"-c", cfg.GenCPU, cfg.Self, "idle", "-json",
		"-system", s.kind, "-url", s.subURL, "-topic", s.idle,
		"-conns", strconv.Itoa(wsCfg.IdleConns), "-parallel", strconv.Itoa(wsCfg.IdleParallel),
		"-settle", wsCfg.IdleSettle.String(), "-pid", m.Server}
	var res idleResult
	if err := runChild(ctx, args, wsCfg.IdleSettle+5*time.Minute, &res); err != nil {
		m.Err = err.Error()
		fmt.Fprintf(os.Stderr, "  => %s: %v\n", s.name, err)
		return m
	}
	m.Result = &res
	fmt.Fprintf(os.Stderr, "  => %s M1 round %d: %d connections in %.1fs, VmRSS %d -> %d KiB: %.2f KiB per connection, valid=%v %s\n",
		s.name, round, res.Opened, res.OpenSeconds, res.RSSBefore, res.RSSAfter, res.KiBPerConn, res.Valid, res.Invalid)
	return m
}

// --- tables -----------------------------------------------------------------

// f1Targets: the bridge's deliveries/s against each peer's.
var f1Targets = map[string]float64{"Mosquitto WS": 1.5, "Centrifugo": 1.0}

// m1Target is the most KiB per idle connection.
const m1Target = 8.0

// bestOfRound is a system's valid maximum-rate run with the most
// deliveries/s in a round (the best window), or nil.
func bestOfRound(ms []*fanMeasurement, system string, round int) *fanMeasurement {
	var best *fanMeasurement
	for _, m := range ms {
		if m.System == system && m.Round == round && m.Kind == "max" && m.Result != nil && m.Result.Valid {
			if best == nil || m.Result.DPS > best.Result.DPS {
				best = m
			}
		}
	}
	return best
}

func bestPerRound(ms []*fanMeasurement, system string, runs int, f func(*fanResult) float64) []float64 {
	var v []float64
	for round := 1; round <= runs; round++ {
		if b := bestOfRound(ms, system, round); b != nil {
			v = append(v, f(b.Result))
		}
	}
	return v
}

func fanServerCPU(m *fanMeasurement) float64 {
	if m.Result == nil {
		return 0
	}
	return m.Result.PidCPUPct[m.Server]
}

// othersOnServerCPU is how much of the server's CPU (in percent) other
// processes of the machine used during the window: the CPU's busy share
// less the server's own.
func othersOnServerCPU(m *fanMeasurement) float64 {
	if m.Result == nil {
		return 0
	}
	return max(0, m.Result.CPUBusyPct["cpu0"]-fanServerCPU(m))
}

// fanEfficiency is deliveries/s per core the server used.
func fanEfficiency(m *fanMeasurement) float64 {
	if c := fanServerCPU(m); c > 0 {
		return m.Result.DPS / (c / 100)
	}
	return 0
}

func writeF1Tables(w io.Writer, cfg *runConfig, res *f1Result) {
	ms := res.Measurements
	if cfg.Max {
		fmt.Fprintf(w, "\n### F1: fan-out to %d WebSocket clients on one topic, %d B payload, maximum rate\n\n", res.Subs, cfg.BodySize)
		fmt.Fprintf(w, "Each round, each system runs once per window (%s messages in flight to the slowest client) for %v, a fresh server each time; its best valid run is the round's figure. Medians of %d rounds.\n\n",
			intList{&res.Windows}.String(), time.Duration(res.Seconds*float64(time.Second)), cfg.Runs)
		fmt.Fprintln(w, "| system | deliveries/s | generator CPU | server CPU | CPU 0 used by others | deliveries/s per server core | p50 / p99 ms (queueing) | rounds: deliveries/s (window) | every run (window: deliveries/s) |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---|")
		for _, name := range res.Systems {
			var rounds []string
			var best []*fanMeasurement
			for round := 1; round <= cfg.Runs; round++ {
				if b := bestOfRound(ms, name, round); b != nil {
					best = append(best, b)
					rounds = append(rounds, fmt.Sprintf("%.0f (%d)", b.Result.DPS, b.Window))
				} else {
					rounds = append(rounds, "none valid")
				}
			}
			var every []string
			for _, m := range ms {
				if m.System != name || m.Kind != "max" {
					continue
				}
				switch {
				case m.Result == nil:
					every = append(every, fmt.Sprintf("%d: error", m.Window))
				case !m.Result.Valid:
					every = append(every, fmt.Sprintf("%d: invalid (%s)", m.Window, shortReason(m.Result.Invalid)))
				default:
					every = append(every, fmt.Sprintf("%d: %.0f", m.Window, m.Result.DPS))
				}
			}
			if len(best) == 0 {
				fmt.Fprintf(w, "| %s | – | – | – | – | – | – | %s | %s |\n", name, strings.Join(rounds, ", "), strings.Join(every, ", "))
				continue
			}
			med := func(f func(*fanMeasurement) float64) float64 {
				v := make([]float64, len(best))
				for i, b := range best {
					v[i] = f(b)
				}
				return median(v)
			}
			fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %.0f%% | %.0f%% | %.0f | %.1f / %.1f | %s | %s |\n", name,
				med(func(m *fanMeasurement) float64 { return m.Result.DPS }),
				med(func(m *fanMeasurement) float64 { return m.Result.GenCPUPct }),
				med(fanServerCPU), med(othersOnServerCPU), med(fanEfficiency),
				med(func(m *fanMeasurement) float64 { return m.Result.P50ms }),
				med(func(m *fanMeasurement) float64 { return m.Result.P99ms }),
				strings.Join(rounds, ", "), strings.Join(every, ", "))
		}
		fmt.Fprintf(w, "\n| ratio | deliveries/s (median / median) | per round | per server core | target | met | met per server core |\n|---|---:|---|---:|---:|---|---|\n")
		for _, p := range res.Systems {
			t, ok := f1Targets[p]
			if !ok {
				continue
			}
			a := median(bestPerRound(ms, "bridge", cfg.Runs, func(r *fanResult) float64 { return r.DPS }))
			b := median(bestPerRound(ms, p, cfg.Runs, func(r *fanResult) float64 { return r.DPS }))
			if a == 0 || b == 0 {
				fmt.Fprintf(w, "| bridge / %s | – | | – | ≥ %.1f× | not measured | |\n", p, t)
				continue
			}
			var per []string
			for round := 1; round <= cfg.Runs; round++ {
				x, y := bestOfRound(ms, "bridge", round), bestOfRound(ms, p, round)
				if x != nil && y != nil {
					per = append(per, fmt.Sprintf("%.2f", x.Result.DPS/y.Result.DPS))
				}
			}
			effOf := func(name string) float64 {
				var v []float64
				for round := 1; round <= cfg.Runs; round++ {
					if b := bestOfRound(ms, name, round); b != nil {
						v = append(v, fanEfficiency(b))
					}
				}
				return median(v)
			}
			eff, effMet := "–", "–"
			if ea, eb := effOf("bridge"), effOf(p); ea > 0 && eb > 0 {
				eff, effMet = fmt.Sprintf("%.2f×", ea/eb), "yes"
				if ea/eb < t {
					effMet = "**no**"
				}
			}
			met := "yes"
			if a/b < t {
				met = "**no**"
			}
			fmt.Fprintf(w, "| bridge / %s | %.2f× | %s | %s | ≥ %.1f× | %s | %s |\n", p, a/b, strings.Join(per, ", "), eff, t, met, effMet)
		}
		var c0, c1, la []float64
		for _, m := range ms {
			if m.Kind == "max" && m.Result != nil {
				c0 = append(c0, m.Result.CPUBusyPct["cpu0"])
				c1 = append(c1, m.Result.CPUBusyPct["cpu1"])
				la = append(la, m.Result.LoadAvg)
			}
		}
		sort.Float64s(la)
		if len(la) > 0 {
			fmt.Fprintf(w, "\nMachine during these runs: CPU 0 busy median %.0f%%, CPU 1 busy median %.0f%% (whole machine, all processes); 1-minute load average %.2f–%.2f.\n",
				median(c0), median(c1), la[0], la[len(la)-1])
		}
	}
	if res.LatencyRate <= 0 {
		return
	}
	why := "chosen with -latency-rate"
	if res.LatencyPeer != "" {
		why = "half of " + res.LatencyPeer + "'s median maximum, the slower peer"
	}
	fmt.Fprintf(w, "\n### F1: %d clients, latency at a fixed %.0f deliveries/s (%.0f messages/s; %s), medians of runs of %v\n\n",
		res.Subs, res.LatencyRate, res.LatencyRate/float64(res.Subs), why, time.Duration(res.LatencySecs*float64(time.Second)))
	fmt.Fprintln(w, "| system | achieved deliveries/s | p50 ms | p99 ms | generator CPU | server CPU | runs: p99 ms | valid |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---|")
	p99 := map[string]float64{}
	for _, name := range res.Systems {
		var rs []*fanMeasurement
		valid := "yes"
		var runs []string
		for _, m := range ms {
			if m.System != name || m.Kind != "fixed-rate" {
				continue
			}
			if m.Result == nil {
				valid = "no: " + m.Err
				runs = append(runs, "error")
				continue
			}
			rs = append(rs, m)
			runs = append(runs, fmt.Sprintf("%.1f", m.Result.P99ms))
			if !m.Result.Valid {
				valid = "no: " + m.Result.Invalid
			}
		}
		if len(rs) == 0 {
			fmt.Fprintf(w, "| %s | – | – | – | – | – | %s | not measured |\n", name, strings.Join(runs, ", "))
			continue
		}
		med := func(f func(*fanMeasurement) float64) float64 {
			v := make([]float64, len(rs))
			for i, m := range rs {
				v[i] = f(m)
			}
			return median(v)
		}
		ach := med(func(m *fanMeasurement) float64 { return m.Result.DPS })
		note := ""
		if ach < 0.95*res.LatencyRate {
			note = " (rate not sustained)"
		}
		p99[name] = med(func(m *fanMeasurement) float64 { return m.Result.P99ms })
		fmt.Fprintf(w, "| %s | %.0f%s | %.2f | %.2f | %.0f%% | %.0f%% | %s | %s |\n", name, ach, note,
			med(func(m *fanMeasurement) float64 { return m.Result.P50ms }), p99[name],
			med(func(m *fanMeasurement) float64 { return m.Result.GenCPUPct }), med(fanServerCPU),
			strings.Join(runs, ", "), valid)
	}
	if b, ok := p99["bridge"]; ok {
		fmt.Fprintf(w, "\n| p99 at the fixed rate | bridge | peer | target | met |\n|---|---:|---:|---|---|\n")
		for _, p := range res.Systems {
			if v, ok := p99[p]; ok && p != "bridge" {
				met := "yes"
				if b > v {
					met = "**no**"
				}
				fmt.Fprintf(w, "| bridge vs %s | %.2f ms | %.2f ms | no worse | %s |\n", p, b, v, met)
			}
		}
	}
}

func shortReason(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func writeM1Table(w io.Writer, cfg *runConfig, res *m1Result) {
	fmt.Fprintf(w, "\n### M1: %d idle WebSocket connections, each subscribed to its own topic, medians of %d rounds\n\n", res.Conns, cfg.Runs)
	fmt.Fprintln(w, "| system | KiB per connection | rounds (KiB per connection) | VmRSS before → after (MiB, median) | opening took | generator CPU while opening | valid |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---|")
	kib := map[string]float64{}
	for _, name := range res.Systems {
		var per, before, after, open, gen []float64
		var runs []string
		valid := "yes"
		for _, m := range res.Measurements {
			if m.System != name {
				continue
			}
			if m.Result == nil {
				runs = append(runs, "error")
				valid = "no: " + m.Err
				continue
			}
			r := m.Result
			if !r.Valid {
				runs = append(runs, "invalid")
				valid = "no: " + r.Invalid
				continue
			}
			per = append(per, r.KiBPerConn)
			before = append(before, float64(r.RSSBefore)/1024)
			after = append(after, float64(r.RSSAfter)/1024)
			open = append(open, r.OpenSeconds)
			gen = append(gen, r.GenCPUPct)
			runs = append(runs, fmt.Sprintf("%.2f", r.KiBPerConn))
		}
		if len(per) == 0 {
			fmt.Fprintf(w, "| %s | – | %s | – | – | – | %s |\n", name, strings.Join(runs, ", "), valid)
			continue
		}
		kib[name] = median(per)
		fmt.Fprintf(w, "| %s | %.2f | %s | %.1f → %.1f | %.1f s | %.0f%% | %s |\n", name, kib[name], strings.Join(runs, ", "),
			median(before), median(after), median(open), median(gen), valid)
	}
	if b, ok := kib["bridge"]; ok {
		met := "yes"
		if b > m1Target {
			met = "**no**"
		}
		fmt.Fprintf(w, "\n| M1 | bridge | target | met |\n|---|---:|---:|---|\n| KiB per idle connection | %.2f | ≤ %.0f | %s |\n", b, m1Target, met)
		for _, p := range res.Systems {
			if v, ok := kib[p]; ok && p != "bridge" && v > 0 {
				fmt.Fprintf(w, "| bridge / %s | %.2f× | (information) | |\n", p, b/v)
			}
		}
	}
}

// renderWSReport re-renders the tables of a saved F1/M1 run.
func renderWSReport(cfg *runConfig, b []byte) error {
	var all wsResults
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	if all.Runs > 0 {
		cfg.Runs = all.Runs
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "%s\n", all.Machine)
	for _, r := range all.F1 {
		writeF1Tables(&md, cfg, r)
	}
	if all.M1 != nil {
		writeM1Table(&md, cfg, all.M1)
	}
	fmt.Print(md.String())
	if cfg.Markdown != "" {
		return os.WriteFile(cfg.Markdown, md.Bytes(), 0o644)
	}
	return nil
}
