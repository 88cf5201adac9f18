package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// The F1 generator: one publisher, N WebSocket subscribers on one topic,
// all in this process (pinned to the generator CPU by the orchestrator).
//
// At the maximum rate the publisher keeps at most -window messages in
// flight: it publishes message k only once every subscriber has received
// message k-window. That keeps every server busy without overrunning the
// per-connection queues (the bridge closes a client whose queue holds 1024
// messages), so the figure is the rate each server sustains. At a fixed
// rate the publisher sends on a schedule and stamps each message with its
// scheduled time, so a stalled server or publisher is not hidden.

const (
	maxSubs          = 100_000
	defMaxDeliveries = 500_000_000
	primeTimeout     = 20 * time.Second
	drainTimeout     = 5 * time.Second
)

type fanConfig struct {
	System      string // bridge, mosquitto or centrifugo
	SubURL      string // ws://127.0.0.1:port/path
	PubURL      string // mqtt://127.0.0.1:port, or http://127.0.0.1:port/api/publish for Centrifugo
	Topic       string // MQTT topic, or Centrifugo channel
	Subs        int
	Duration    time.Duration
	Warmup      time.Duration
	Rate        float64 // fixed offered rate in deliveries/s (0: maximum)
	Window      int     // messages in flight at the maximum rate
	PayloadSize int
	PubConns    int // HTTP publish connections (Centrifugo)
	Parallel    int // subscriber connections opened at once
	MaxDeliv    int64
	Timeout     time.Duration
	Pids        []int
	Burst       int           // B1: publish this many messages open loop at once, then drain
	BurstDrain  time.Duration // how long the burst may take to drain
}

type fanResult struct {
	System      string  `json:"system"`
	SubURL      string  `json:"sub_url"`
	PubURL      string  `json:"pub_url"`
	Subs        int     `json:"subs"`
	PayloadSize int     `json:"payload_size"`
	Rate        float64 `json:"offered_rate,omitempty"` // deliveries/s
	Window      int     `json:"window,omitempty"`

	ConnectSeconds float64 `json:"connect_seconds"`
	Seconds        float64 `json:"seconds"`
	Published      int64   `json:"published"`  // messages published in the window
	Deliveries     int64   `json:"deliveries"` // deliveries received in the window
	DPS            float64 `json:"deliveries_per_s"`
	MPS            float64 `json:"messages_per_s"`
	P50ms          float64 `json:"p50_ms"`
	P90ms          float64 `json:"p90_ms"`
	P99ms          float64 `json:"p99_ms"`
	Maxms          float64 `json:"max_ms"`
	Lost           int64   `json:"lost"` // after the drain, over the whole run
	Bad            int64   `json:"bad_frames"`
	Errors         int64   `json:"errors"`
	ErrorSample    string  `json:"error_sample,omitempty"`

	GenCPUPct  float64            `json:"gen_cpu_pct"`
	PidCPUPct  map[string]float64 `json:"pid_cpu_pct,omitempty"`
	CPUBusyPct map[string]float64 `json:"cpu_busy_pct,omitempty"`
	LoadAvg    float64            `json:"loadavg_1m"`
	Capped     bool               `json:"capped,omitempty"`
	Burst      *burstResult       `json:"burst,omitempty"`
	verdict
}

func (c *fanConfig) check() error {
	if err := checkKind(c.System); err != nil {
		return err
	}
	for _, u := range []string{c.SubURL, c.PubURL} {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return fmt.Errorf("%q: not a URL", u)
		}
		if ip := net.ParseIP(pu.Hostname()); (ip == nil || !ip.IsLoopback()) && pu.Hostname() != "localhost" {
			return fmt.Errorf("%q: loopback only", u)
		}
	}
	wantPub := "mqtt"
	if c.System == kindCentrifugo {
		wantPub = "http"
	}
	if pu, _ := url.Parse(c.PubURL); pu.Scheme != wantPub {
		return fmt.Errorf("-pub-url %q: %s publishes over %s://", c.PubURL, c.System, wantPub)
	}
	if c.Subs < 1 || c.Subs > maxSubs {
		return fmt.Errorf("-subs %d: want 1..%d", c.Subs, maxSubs)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return fmt.Errorf("-duration %v: want > 0 and <= %v", c.Duration, maxDuration)
	}
	if c.Warmup < 0 || c.Warmup > maxWarmup {
		return fmt.Errorf("-warmup %v: want 0..%v", c.Warmup, maxWarmup)
	}
	if c.Rate < 0 {
		return errors.New("-rate must be >= 0")
	}
	minSize := stampLen
	if c.System == kindCentrifugo {
		minSize += len(`{"p":""}`)
	}
	if c.PayloadSize < minSize {
		return fmt.Errorf("-payload-size %d: want at least %d", c.PayloadSize, minSize)
	}
	if c.Window < 1 {
		c.Window = 64
	}
	if c.PubConns < 1 {
		c.PubConns = 4
	}
	if c.Parallel < 1 {
		c.Parallel = 64
	}
	if c.MaxDeliv <= 0 {
		c.MaxDeliv = defMaxDeliveries
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return nil
}

// --- publishers ------------------------------------------------------------

// publisher sends stamped messages; one goroutine uses each.
type publisher interface {
	// send publishes one message; flush says nothing more follows at once.
	send(ts, seq int64, flush bool) error
	close()
}

// mqttPub is a minimal MQTT v5 QoS 0 publisher over TCP.
type mqttPub struct {
	conn    net.Conn
	bw      *bufio.Writer
	pkt     []byte
	stampAt int
}

func dialMQTTPub(addr, clientID, topic string, payloadSize int, timeout time.Duration) (*mqttPub, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(mqttpacket.Connect5(clientID, 0)); err != nil {
		c.Close()
		return nil, err
	}
	if err := readConnack(bufio.NewReader(c)); err != nil {
		c.Close()
		return nil, fmt.Errorf("MQTT connect to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	pkt, at := mqttpacket.Publish5(topic, 0, 0, newPayload(payloadSize))
	p := &mqttPub{conn: c, bw: bufio.NewWriterSize(c, 64<<10), pkt: pkt, stampAt: at}
	// Nothing is expected from the broker; read so that a DISCONNECT or a
	// closed connection shows up as a write error soon after.
	go func() { _, _ = io.Copy(io.Discard, c) }()
	return p, nil
}

// readConnack reads a CONNACK and its properties; a refusal is an error.
func readConnack(br *bufio.Reader) error {
	p, err := mqttpacket.ReadPacket(br, 1<<16)
	if err != nil {
		return err
	}
	if rc, err := mqttpacket.ReasonCode(p); p.Kind() != packets.CONNACK || err != nil || rc != 0 {
		return fmt.Errorf("CONNACK refused: % x", p.Bytes())
	}
	return nil
}

func (p *mqttPub) send(ts, seq int64, flush bool) error {
	writeStamp(p.pkt[p.stampAt:], ts, seq)
	if _, err := p.bw.Write(p.pkt); err != nil {
		return err
	}
	if flush {
		return p.bw.Flush()
	}
	return nil
}

func (p *mqttPub) close() {
	_ = p.bw.Flush()
	_, _ = p.conn.Write([]byte{0xe0, 0}) // DISCONNECT
	_ = p.conn.Close()
}

// httpPub publishes to Centrifugo's HTTP API over one keep-alive
// connection, with the raw client of the HTTP scenarios: the request is
// built once and only the stamp inside it changes.
type httpPub struct {
	rc      *rawConn
	stampAt int
}

// centrifugoPublishBody is {"channel":C,"data":{"p":"<stamp>xxx"}}, whose
// data is size bytes of JSON, like centrifugoBody.
func centrifugoPublishBody(channel string, size int) ([]byte, int) {
	head := `{"channel":` + strconv.Quote(channel) + `,"data":{"p":"`
	b := []byte(head)
	b = append(b, newPayload(size-len(`{"p":""}`))...)
	b = append(b, `"}}`...)
	return b, len(head)
}

func newHTTPPub(pubURL, channel string, size int, timeout time.Duration) (*httpPub, error) {
	u, err := url.Parse(pubURL)
	if err != nil {
		return nil, err
	}
	body, at := centrifugoPublishBody(channel, size)
	req := buildRequest("POST", u, [][2]string{{"Content-Type", "application/json"}}, body)
	return &httpPub{rc: &rawConn{addr: u.Host, req: req, timeout: timeout}, stampAt: len(req) - len(body) + at}, nil
}

func (p *httpPub) send(ts, seq int64, _ bool) error {
	writeStamp(p.rc.req[p.stampAt:], ts, seq)
	status, err := p.rc.do()
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("publish: HTTP %d", status)
	}
	return nil
}

func (p *httpPub) close() { p.rc.close() }

// --- the window ------------------------------------------------------------

// gate hands out sequence numbers so that at most window messages are in
// flight to the slowest subscriber.
type gate struct {
	subs   []*subscriber
	window int64
	limit  int64        // most messages to publish after the base
	next   atomic.Int64 // messages handed out after the base
	sent   atomic.Int64 // of which sent
	low    atomic.Int64 // the slowest subscriber's count, last seen
	mu     sync.Mutex   // one rescan at a time
}

// slowest rescans every subscriber.
func (g *gate) slowest() int64 {
	m := int64(math.MaxInt64)
	for _, s := range g.subs {
		if v := s.got.Load(); v < m {
			m = v
		}
	}
	return m
}

// take reserves up to want messages; it returns the first index and how
// many (0: the window is full, or the limit is reached).
func (g *gate) take(want int64) (int64, int64) {
	for {
		n := g.next.Load()
		room := g.window - (n - g.low.Load())
		if room <= 0 {
			g.mu.Lock()
			g.low.Store(g.slowest())
			g.mu.Unlock()
			room = g.window - (n - g.low.Load())
			if room <= 0 {
				return 0, 0
			}
		}
		room = min(room, want, g.limit-n)
		if room <= 0 {
			return 0, 0
		}
		if g.next.CompareAndSwap(n, n+room) {
			return n, room
		}
	}
}

// --- the run ---------------------------------------------------------------

func runFanout(ctx context.Context, cfg fanConfig) (*fanResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var phase atomic.Int32
	sh := &subShared{phase: &phase}
	sh.base.Store(math.MaxInt64)
	res := &fanResult{System: cfg.System, SubURL: cfg.SubURL, PubURL: cfg.PubURL, Subs: cfg.Subs,
		PayloadSize: cfg.PayloadSize, Rate: cfg.Rate}
	if cfg.Rate == 0 {
		res.Window = cfg.Window
	}

	// Open the subscribers, -parallel at a time.
	t0 := time.Now()
	subs, err := openSubs(ctx, cfg.System, cfg.SubURL, cfg.Subs, cfg.Parallel, cfg.Timeout,
		func(int) string { return cfg.Topic }, sh, true, 4096, 1)
	defer func() {
		for _, s := range subs {
			if s != nil {
				s.close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	res.ConnectSeconds = time.Since(t0).Seconds()

	// The publishers.
	pubs := make([]publisher, 1)
	if cfg.System == kindCentrifugo {
		pubs = make([]publisher, cfg.PubConns)
	}
	pu, _ := url.Parse(cfg.PubURL)
	for i := range pubs {
		var p publisher
		var err error
		if cfg.System == kindCentrifugo {
			p, err = newHTTPPub(cfg.PubURL, cfg.Topic, cfg.PayloadSize, cfg.Timeout)
		} else {
			p, err = dialMQTTPub(pu.Host, fmt.Sprintf("mqttbench-pub-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, i), cfg.Topic, cfg.PayloadSize, cfg.Timeout)
		}
		if err != nil {
			return nil, err
		}
		pubs[i] = p
		defer p.close()
	}

	// Prime: publish until every subscriber has received something, so
	// that every subscription is known to be active.
	var seq int64
	deadline := time.Now().Add(primeTimeout)
	for {
		if err := pubs[0].send(time.Now().UnixNano(), seq, true); err != nil {
			return nil, fmt.Errorf("priming: %w", err)
		}
		seq++
		if allReceived(subs) {
			break
		}
		if time.Now().After(deadline) {
			n := 0
			for _, s := range subs {
				if s.total.Load() > 0 {
					n++
				}
			}
			return nil, fmt.Errorf("priming: after %v only %d of %d subscribers received a message", primeTimeout, n, len(subs))
		}
		// One probe reaches every subscriber: at 10,000 of them a probe
		// every 20 ms would bury the run under probes.
		if err := sleepCtx(ctx, max(20*time.Millisecond, time.Duration(len(subs))*20*time.Microsecond)); err != nil {
			return nil, err
		}
		if err := subsFailed(subs); err != nil {
			return nil, err
		}
	}
	base := seq
	sh.base.Store(base)
	if cfg.Burst > 0 {
		return runBurst(ctx, cfg, res, subs, pubs[0], base, &phase)
	}

	// Publish.
	g := &gate{subs: subs, window: int64(cfg.Window), limit: cfg.MaxDeliv / int64(cfg.Subs)}
	var pubErr atomic.Value
	var capped atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	msgRate := cfg.Rate / float64(cfg.Subs)
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if msgRate > 0 {
				err = publishFixed(&phase, g, p, base, start, msgRate, &capped)
			} else {
				err = publishWindow(&phase, g, p, base, i == 0, &capped)
			}
			if err != nil {
				pubErr.Store(err)
			}
		}()
	}

	var (
		tw0, tw1 time.Time
		cpu0     time.Duration
		pc0      []time.Duration
		sys0     map[string]cpuTimes
		pub0     int64
	)
	sample := func() (time.Time, time.Duration, []time.Duration, map[string]cpuTimes) {
		pcs := make([]time.Duration, len(cfg.Pids))
		for i, pid := range cfg.Pids {
			pcs[i], _ = pidCPU(pid)
		}
		return time.Now(), selfCPU(), pcs, readCPUTimes()
	}
	aborted := cfg.Warmup > 0 && sleepCtx(ctx, cfg.Warmup) != nil
	tw0, cpu0, pc0, sys0 = sample()
	pub0 = g.sent.Load()
	phase.Store(phaseMeasure)
	if !aborted {
		end := tw0.Add(cfg.Duration)
		for time.Now().Before(end) && !capped.Load() && pubErr.Load() == nil {
			if sleepCtx(ctx, min(50*time.Millisecond, time.Until(end))) != nil {
				aborted = true
				break
			}
		}
	}
	phase.Store(phaseStop)
	var cpu1 time.Duration
	var pc1 []time.Duration
	var sys1 map[string]cpuTimes
	tw1, cpu1, pc1, sys1 = sample()
	pub1 := g.sent.Load()
	wg.Wait()
	if aborted {
		return nil, ctx.Err()
	}

	// Drain: wait until every subscriber has every message, or give up.
	published := g.sent.Load()
	deadline = time.Now().Add(max(drainTimeout, time.Duration(len(subs))*time.Millisecond))
	for time.Now().Before(deadline) && g.slowest() < published && subsFailed(subs) == nil {
		time.Sleep(10 * time.Millisecond)
	}
	var failures []error
	for _, s := range subs {
		if lost := published - s.got.Load(); lost > 0 {
			res.Lost += lost
		}
	}
	for _, s := range subs {
		s.close()
	}
	var h hist
	for _, s := range subs {
		<-s.done
		h.merge(s.h)
		res.Deliveries += s.n
		res.Bad += s.bad
		if err := s.failure(); err != nil {
			failures = append(failures, err)
		}
	}
	if err, _ := pubErr.Load().(error); err != nil {
		failures = append(failures, fmt.Errorf("publisher: %w", err))
	}
	res.Errors = int64(len(failures))
	if len(failures) > 0 {
		res.ErrorSample = failures[0].Error()
	}
	wall := tw1.Sub(tw0)
	res.Seconds = wall.Seconds()
	res.Published = pub1 - pub0
	res.DPS = float64(res.Deliveries) / wall.Seconds()
	res.MPS = float64(res.Published) / wall.Seconds()
	res.P50ms, res.P90ms, res.P99ms, res.Maxms = h.millis()
	res.GenCPUPct = 100 * float64(cpu1-cpu0) / float64(wall)
	res.PidCPUPct = pidCPUPct(cfg.Pids, pc0, pc1, wall)
	res.CPUBusyPct = cpuBusyPct(sys0, sys1)
	res.LoadAvg = loadAvg()
	res.Capped = capped.Load()
	res.validate()
	return res, nil
}

func (r *fanResult) validate() {
	var bad []string
	if r.Errors > 0 {
		bad = append(bad, fmt.Sprintf("%d errors (%s)", r.Errors, r.ErrorSample))
	}
	if r.Lost > 0 {
		bad = append(bad, fmt.Sprintf("%d deliveries lost", r.Lost))
	}
	if r.Bad > 0 {
		bad = append(bad, fmt.Sprintf("%d frames not understood", r.Bad))
	}
	if r.Deliveries == 0 {
		bad = append(bad, "no deliveries")
	}
	r.Valid = len(bad) == 0
	r.Invalid = strings.Join(bad, "; ")
}

// publishWindow publishes as fast as the window allows until the phase is
// stop. Every message it reserved is sent, so the drain can expect them.
func publishWindow(phase *atomic.Int32, g *gate, p publisher, base int64, burst bool, capped *atomic.Bool) error {
	want := int64(1)
	if burst {
		want = 16 // MQTT: up to 16 PUBLISH packets per write
	}
	for phase.Load() != phaseStop {
		first, n := g.take(want)
		if n == 0 {
			if g.next.Load() >= g.limit {
				capped.Store(true)
				return nil
			}
			time.Sleep(20 * time.Microsecond)
			continue
		}
		for i := int64(0); i < n; i++ {
			if err := p.send(time.Now().UnixNano(), base+first+i, i == n-1); err != nil {
				return err
			}
			g.sent.Add(1)
		}
	}
	return nil
}

// publishFixed publishes message k at start + k/rate, stamped with that
// time. Several publishers share one schedule through the gate's counter
// (its window is not applied: a fixed rate is an open loop).
func publishFixed(phase *atomic.Int32, g *gate, p publisher, base int64, start time.Time, rate float64, capped *atomic.Bool) error {
	for phase.Load() != phaseStop {
		k := g.next.Add(1) - 1
		if k >= g.limit {
			capped.Store(true)
			return nil
		}
		at := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if err := p.send(at.UnixNano(), base+k, true); err != nil {
			return err
		}
		g.sent.Add(1)
	}
	return nil
}

func allReceived(subs []*subscriber) bool {
	for _, s := range subs {
		if s.total.Load() == 0 {
			return false
		}
	}
	return true
}

// subsFailed returns the first subscriber failure, if any.
func subsFailed(subs []*subscriber) error {
	for _, s := range subs {
		select {
		case <-s.done:
			if err := s.failure(); err != nil {
				return fmt.Errorf("subscriber %s: %w", s.topic, err)
			}
			return fmt.Errorf("subscriber %s: connection ended", s.topic)
		default:
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openSubs opens n subscribers, parallel at a time, and waits until each is
// subscribed. On error the subscribers opened so far are returned too, for
// the caller to close.
func openSubs(ctx context.Context, kind, subURL string, n, parallel int, timeout time.Duration,
	topic func(i int) string, sh *subShared, withHist bool, bufSize, sources int) ([]*subscriber, error) {
	d := &websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: bufSize, WriteBufferSize: 512}
	if sources > 1 {
		// Connections from 127.0.0.1 … 127.0.0.<sources> in turn: each
		// source address has its own ~28k ephemeral ports.
		var next atomic.Int64
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			k := next.Add(1) % int64(sources)
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+k))}}
			return nd.DialContext(ctx, network, addr)
		}
	}
	// MQTT client ids must differ from those of an earlier run against the
	// same broker, whose connections may still be closing.
	nonce := time.Now().UnixNano() % 1e9
	subs := make([]*subscriber, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range subs {
		if firstErr.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			id := fmt.Sprintf("mqttbench-%d-%d-%d", os.Getpid(), nonce, i)
			s, err := dialSub(dctx, d, kind, subURL, topic(i), id, sh, withHist)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			subs[i] = s
			go s.readLoop()
			select {
			case <-s.ready:
			case <-s.done:
				err := s.failure()
				if err == nil {
					err = errors.New("connection ended before it was subscribed")
				}
				firstErr.CompareAndSwap(nil, fmt.Errorf("subscriber %d: %w", i, err))
			case <-dctx.Done():
				firstErr.CompareAndSwap(nil, fmt.Errorf("subscriber %d: not subscribed after %v", i, timeout))
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return subs, err
	}
	if ctx.Err() != nil {
		return subs, ctx.Err()
	}
	return subs, nil
}

func cmdFanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	var cfg fanConfig
	var pids string
	var asJSON bool
	fs.StringVar(&cfg.System, "system", kindBridge, "bridge, mosquitto or centrifugo: the subscribers' protocol")
	fs.StringVar(&cfg.SubURL, "sub-url", "", "WebSocket URL of the subscribers (ws://127.0.0.1:port/path; loopback only)")
	fs.StringVar(&cfg.PubURL, "pub-url", "", "mqtt://127.0.0.1:port (bridge, mosquitto) or http://127.0.0.1:port/api/publish (centrifugo)")
	fs.StringVar(&cfg.Topic, "topic", "bench/f1", "topic (Centrifugo: channel)")
	fs.IntVar(&cfg.Subs, "subs", 100, "subscriber connections")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window (max 60s)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before the window (max 10s)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "fixed offered rate in deliveries/s (messages/s × subs); 0: maximum")
	fs.IntVar(&cfg.Window, "window", 64, "messages in flight to the slowest subscriber, at the maximum rate")
	fs.IntVar(&cfg.PayloadSize, "payload-size", 64, "payload bytes (Centrifugo: bytes of the data JSON)")
	fs.IntVar(&cfg.PubConns, "pub-conns", 4, "HTTP publish connections (centrifugo)")
	fs.IntVar(&cfg.Parallel, "parallel", 64, "subscriber connections opened at once")
	fs.Int64Var(&cfg.MaxDeliv, "max-deliveries", defMaxDeliveries, "stop publishing after this many messages × subs")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "connect and subscribe timeout per connection")
	fs.StringVar(&pids, "pids", "", "comma-separated process ids whose CPU use to report over the window")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.IntVar(&cfg.Burst, "burst", 0, "B1: publish this many messages open loop at once, then wait for every subscriber to have them (0: F1)")
	fs.DurationVar(&cfg.BurstDrain, "burst-drain", 60*time.Second, "how long the burst may take to reach every subscriber")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's own CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.Pids, err = parsePids(pids); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return report(asJSON, func(ctx context.Context) (*fanResult, error) { return runFanout(ctx, cfg) }, printFanResult)
}

func parsePids(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("-pids: %q is not a process id", p)
			}
			out = append(out, n)
		}
	}
	return out, nil
}

func printFanResult(w io.Writer, r *fanResult) {
	if r.Burst != nil {
		printBurstResult(w, r)
		return
	}
	fmt.Fprintf(w, "%s: publish %s -> %d subscribers at %s, payload %dB", r.System, r.PubURL, r.Subs, r.SubURL, r.PayloadSize)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", offered %.0f deliveries/s", r.Rate)
	} else {
		fmt.Fprintf(w, ", maximum rate (window %d messages)", r.Window)
	}
	fmt.Fprintf(w, "\n  subscribers connected in %.2fs\n", r.ConnectSeconds)
	fmt.Fprintf(w, "  deliveries %d in %.2fs = %.0f/s (%.0f messages/s)%s\n", r.Deliveries, r.Seconds, r.DPS, r.MPS,
		map[bool]string{true: " (cap reached)"}[r.Capped])
	fmt.Fprintf(w, "  latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", r.P50ms, r.P90ms, r.P99ms, r.Maxms)
	fmt.Fprintf(w, "  lost %d, frames not understood %d, errors %d %s\n", r.Lost, r.Bad, r.Errors, r.ErrorSample)
	fmt.Fprintf(w, "  generator CPU %.1f%% of one core", r.GenCPUPct)
	if r.GenCPUPct > 90 {
		fmt.Fprint(w, "  (above 90%: the generator may be the bottleneck)")
	}
	fmt.Fprintln(w)
	for pid, v := range r.PidCPUPct {
		fmt.Fprintf(w, "  pid %s CPU %.1f%% of one core\n", pid, v)
	}
	if r.Valid {
		fmt.Fprintln(w, "  valid")
	} else {
		fmt.Fprintf(w, "  INVALID: %s\n", r.Invalid)
	}
}
