package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/internal/mqttpacket"
)

// The S1 generator: one MQTT publisher and one subscriber in this process.
// The publisher sends numbered messages to the broker that the bridge
// ingests; the subscriber reads them back from the bridge (a WebSocket
// client) or from the Redis stream the bridge writes (XREAD). It is a
// closed loop: at most Window messages are between the publisher and the
// subscriber at any time, so no queue on the way (the broker's queue for
// the ingest session, the bridge's per-client queue) overflows, and what
// is measured is how fast the pipeline drains.

// s1Config configures one S1 generator run.
type s1Config struct {
	MQTTAddr  string // the broker, host:port
	Topic     string
	QoS       byte // of the publisher: 0 or 1
	Size      int  // payload bytes, at least s1SeqDigits
	Window    int  // messages in flight between s1Publisher and s1Sub
	Sub       string
	WSURL     string // ws://host:port/v1/ws?filter=...
	RedisURL  string // redis://host:port/db
	Stream    string // the history stream key
	Duration  time.Duration
	Warmup    time.Duration
	Drain     time.Duration // how long to wait for the last messages
	Stall     time.Duration // no progress for this long ends the run as invalid
	MaxMsgs   int64
	Pids      []int
	ClientID  string
	StartWait time.Duration // how long the first message may take to come back
}

// s1Result is what an S1 run measured.
type s1Result struct {
	Sub    string `json:"subscriber"`
	Topic  string `json:"topic"`
	QoS    byte   `json:"qos"`
	Size   int    `json:"payload_size"`
	Window int    `json:"window"`

	Seconds   float64 `json:"seconds"`
	Received  int64   `json:"received"` // in the window
	MPS       float64 `json:"msgs_per_s"`
	Published int64   `json:"published_total"`  // from the first message that came back on
	Delivered int64   `json:"delivered_total"`  // distinct, from the first one on
	Lost      int64   `json:"lost"`             // published, never received
	Dups      int64   `json:"duplicates"`       // received more than once
	Reordered int64   `json:"reordered"`        // received after a later one
	Probes    int64   `json:"probes,omitempty"` // sent before the pipeline answered
	Capped    bool    `json:"capped,omitempty"`

	GenCPUPct  float64            `json:"gen_cpu_pct"`
	PidCPUPct  map[string]float64 `json:"pid_cpu_pct,omitempty"`
	CPUBusyPct map[string]float64 `json:"cpu_busy_pct,omitempty"`
	LoadAvg    float64            `json:"loadavg_1m"`
	Valid      bool               `json:"valid"`
	Invalid    string             `json:"invalid_reason,omitempty"`
}

// s1SeqDigits is the width of the sequence number that starts each payload.
const s1SeqDigits = 12

func (c *s1Config) check() error {
	host, _, err := net.SplitHostPort(c.MQTTAddr)
	if err != nil || !s1Loopback(host) {
		return fmt.Errorf("-mqtt %q: want a loopback host:port", c.MQTTAddr)
	}
	switch c.Sub {
	case "ws":
		u, err := url.Parse(c.WSURL)
		if err != nil || u.Scheme != "ws" || !s1Loopback(u.Hostname()) {
			return fmt.Errorf("-ws-url %q: want ws://127.0.0.1:port/v1/ws?filter=...", c.WSURL)
		}
	case "redis":
		u, err := url.Parse(c.RedisURL)
		if err != nil || u.Scheme != "redis" || !s1Loopback(u.Hostname()) {
			return fmt.Errorf("-redis-url %q: want redis://127.0.0.1:port/db", c.RedisURL)
		}
		if c.Stream == "" {
			return errors.New("-stream: the history stream key is needed")
		}
	default:
		return fmt.Errorf("-sub %q: want ws or redis", c.Sub)
	}
	if c.Topic == "" || strings.ContainsAny(c.Topic, "+#") || len(c.Topic) > 200 {
		return fmt.Errorf("-topic %q: want a topic name", c.Topic)
	}
	if c.QoS > 1 {
		return fmt.Errorf("-qos %d: want 0 or 1", c.QoS)
	}
	if c.Size < s1SeqDigits || c.Size > 64*1024 {
		return fmt.Errorf("-size %d: want %d..65536", c.Size, s1SeqDigits)
	}
	if c.Window < 1 || c.Window > 100000 {
		return fmt.Errorf("-window %d: want 1..100000", c.Window)
	}
	if c.Duration <= 0 || c.Duration > maxDuration || c.Warmup < 0 || c.Warmup > maxWarmup {
		return fmt.Errorf("-duration and -warmup: want (0, %v] and [0, %v]", maxDuration, maxWarmup)
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.Stall <= 0 {
		c.Stall = 5 * time.Second
	}
	if c.StartWait <= 0 {
		c.StartWait = 20 * time.Second
	}
	if c.MaxMsgs <= 0 {
		c.MaxMsgs = defMaxRequests
	}
	if c.ClientID == "" {
		c.ClientID = fmt.Sprintf("mqttbench-s1-%d", os.Getpid())
	}
	return nil
}

func s1Loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// s1Tracker counts what the subscriber receives. Only messages from the
// first one received on count: what was published before the pipeline
// was subscribed end to end is not expected.
type s1Tracker struct {
	mu        sync.Mutex
	first     int64 // sequence number of the first message received; -1 before
	seen      []uint64
	maxSeq    int64
	delivered int64 // distinct messages >= first
	dups      int64
	reordered int64

	count  atomic.Int64  // delivered, for the publisher's window
	notify chan struct{} // poked on every new message
}

func newS1Tracker() *s1Tracker {
	return &s1Tracker{first: -1, maxSeq: -1, notify: make(chan struct{}, 1)}
}

// record notes one received sequence number.
func (t *s1Tracker) record(seq int64) {
	if seq < 0 {
		return
	}
	t.mu.Lock()
	if t.first < 0 {
		t.first = seq
	}
	if seq < t.first {
		t.mu.Unlock()
		return // a probe that arrived late: not counted either way
	}
	i := seq - t.first
	for int64(len(t.seen))*64 <= i {
		t.seen = append(t.seen, make([]uint64, len(t.seen)+64)...)
	}
	w, bit := i/64, uint64(1)<<(i%64)
	if t.seen[w]&bit != 0 {
		t.dups++
		t.mu.Unlock()
		return
	}
	t.seen[w] |= bit
	t.delivered++
	if seq < t.maxSeq {
		t.reordered++
	} else {
		t.maxSeq = seq
	}
	t.mu.Unlock()
	t.count.Add(1)
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

func (t *s1Tracker) firstSeq() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first
}

// s1ParseSeq reads the sequence number at the start of a payload.
func s1ParseSeq(p []byte) int64 {
	if len(p) < s1SeqDigits {
		return -1
	}
	var n int64
	for _, c := range p[:s1SeqDigits] {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

var s1PayloadKey = []byte(`"payload":"`)

// s1SeqFromFrame finds the payload of a WebSocket message frame without
// decoding the JSON: the bridge writes "payload":"<text>" for UTF-8
// payloads, and ours start with the digits. Other frames give -1.
func s1SeqFromFrame(f []byte) int64 {
	if !bytes.Contains(f, []byte(`"type":"message"`)) {
		return -1
	}
	i := bytes.Index(f, s1PayloadKey)
	if i < 0 {
		return -1
	}
	return s1ParseSeq(f[i+len(s1PayloadKey):])
}

// s1Sub reads messages until ctx ends and records them.
type s1Sub interface {
	run(ctx context.Context, t *s1Tracker) error
	close()
}

type s1WSSub struct{ conn *websocket.Conn }

func dialS1WS(ctx context.Context, rawURL string) (*s1WSSub, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 64 << 10}
	conn, resp, err := d.DialContext(ctx, rawURL, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("WebSocket %s: %v (HTTP %d)", rawURL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("WebSocket %s: %w", rawURL, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, first, err := conn.ReadMessage()
	if err != nil || !bytes.Contains(first, []byte(`"type":"welcome"`)) {
		conn.Close()
		return nil, fmt.Errorf("WebSocket %s: no welcome (%v): %.200s", rawURL, err, first)
	}
	return &s1WSSub{conn: conn}, nil
}

func (s *s1WSSub) run(ctx context.Context, t *s1Tracker) error {
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetReadDeadline(time.Now()) })
	defer stop()
	_ = s.conn.SetReadDeadline(time.Time{})
	var buf bytes.Buffer
	for {
		typ, r, err := s.conn.NextReader()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("WebSocket read: %w", err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("WebSocket read: %w", err)
		}
		if typ != websocket.TextMessage {
			continue
		}
		f := buf.Bytes()
		if bytes.Contains(f, []byte(`"type":"gap"`)) || bytes.Contains(f, []byte(`"type":"error"`)) {
			return fmt.Errorf("WebSocket: %.200s", f)
		}
		t.record(s1SeqFromFrame(f))
	}
}

func (s *s1WSSub) close() { _ = s.conn.Close() }

type s1RedisSub struct {
	client *redis.Client
	stream string
	after  string
}

func newS1RedisSub(ctx context.Context, rawURL, stream string) (*s1RedisSub, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Start after the newest entry; "0-0" when there is no stream yet.
	after := "0-0"
	last, err := c.XRevRangeN(cctx, stream, "+", "-", 1).Result()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: %w", rawURL, err)
	}
	if len(last) == 1 {
		after = last[0].ID
	}
	return &s1RedisSub{client: c, stream: stream, after: after}, nil
}

func (s *s1RedisSub) run(ctx context.Context, t *s1Tracker) error {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		res, err := s.client.XRead(rctx, &redis.XReadArgs{
			Streams: []string{s.stream, s.after}, Count: 1000, Block: time.Second,
		}).Result()
		cancel()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("XREAD: %w", err)
		}
		for _, st := range res {
			for _, m := range st.Messages {
				s.after = m.ID
				p, _ := m.Values["payload"].(string)
				t.record(s1ParseSeq([]byte(p)))
			}
		}
	}
	return nil
}

func (s *s1RedisSub) close() { _ = s.client.Close() }

// s1Publisher is a minimal MQTT v5 client: CONNECT, PUBLISH at QoS 0 or 1,
// PUBACKs counted by a reader goroutine, DISCONNECT.
type s1Publisher struct {
	conn     net.Conn
	w        *bufio.Writer
	qos      byte
	recvMax  int
	inflight chan struct{} // one token per unacknowledged QoS 1 PUBLISH
	pktID    uint16
	topic    []byte
	payload  []byte
	errc     chan error
	acked    atomic.Int64
}

func dialS1Publisher(addr, clientID, topic string, qos byte, size int) (*s1Publisher, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(mqttpacket.Connect5(clientID, 60)); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	ack, err := mqttpacket.ReadPacket(br, 1<<16)
	rc, rcErr := mqttpacket.ReasonCode(ack)
	if err != nil || ack.Kind() != packets.CONNACK || rcErr != nil || rc != 0 {
		conn.Close()
		return nil, fmt.Errorf("MQTT CONNACK: %v % x", err, ack.Body)
	}
	recvMax := 65535
	if props, err := mqttpacket.ConnackProperties(ack); err == nil && props.ReceiveMaximum != nil {
		recvMax = int(*props.ReceiveMaximum)
	}
	_ = conn.SetDeadline(time.Time{})
	p := &s1Publisher{
		conn: conn, w: bufio.NewWriterSize(conn, 64<<10), qos: qos, recvMax: recvMax,
		inflight: make(chan struct{}, recvMax), topic: []byte(topic),
		payload: bytes.Repeat([]byte("x"), size), errc: make(chan error, 1),
	}
	go p.readLoop(br)
	return p, nil
}

// readLoop consumes PUBACKs (and anything else) until the connection ends.
func (p *s1Publisher) readLoop(br *bufio.Reader) {
	for {
		pk, err := mqttpacket.ReadPacket(br, mqttpacket.MaxVBI)
		if err != nil {
			p.errc <- err
			return
		}
		switch pk.Kind() {
		case packets.PUBACK:
			if rc, err := mqttpacket.ReasonCode(pk); err != nil || rc >= 0x80 {
				p.errc <- fmt.Errorf("PUBACK % x", pk.Body)
				return
			}
			p.acked.Add(1)
			<-p.inflight
		case packets.DISCONNECT:
			p.errc <- fmt.Errorf("the broker disconnected: % x", pk.Body)
			return
		}
	}
}

// publish writes one PUBLISH with sequence number seq into the buffer.
func (p *s1Publisher) publish(seq int64, deadline time.Time) error {
	if p.qos == 1 {
		select {
		case p.inflight <- struct{}{}:
		default:
			if err := p.w.Flush(); err != nil {
				return err
			}
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			select {
			case p.inflight <- struct{}{}:
			case err := <-p.errc:
				return err
			case <-t.C:
				return errors.New("no PUBACK in time")
			}
		}
	}
	s := strconv.FormatInt(seq, 10)
	for i := range s1SeqDigits {
		p.payload[i] = '0'
	}
	copy(p.payload[s1SeqDigits-len(s):], s)
	n := 2 + len(p.topic) + 1 + len(p.payload) // topic, property length 0, payload
	hdr := byte(0x30)
	if p.qos == 1 {
		hdr |= 0x02
		n += 2
	}
	var b [8]byte
	out := append(b[:0], hdr)
	out = mqttpacket.AppendVBI(out, n)
	out = append(out, byte(len(p.topic)>>8), byte(len(p.topic)))
	if _, err := p.w.Write(out); err != nil {
		return err
	}
	if _, err := p.w.Write(p.topic); err != nil {
		return err
	}
	if p.qos == 1 {
		p.pktID++
		if p.pktID == 0 {
			p.pktID = 1
		}
		if _, err := p.w.Write([]byte{byte(p.pktID >> 8), byte(p.pktID)}); err != nil {
			return err
		}
	}
	if err := p.w.WriteByte(0); err != nil { // no properties
		return err
	}
	_, err := p.w.Write(p.payload)
	return err
}

func (p *s1Publisher) close() {
	_ = p.w.Flush()
	_, _ = p.conn.Write([]byte{0xe0, 0})
	_ = p.conn.Close()
}

// runS1Stream runs one S1 measurement: subscribe, probe until the pipeline
// answers, warm up, measure for Duration, stop publishing, drain.
func runS1Stream(ctx context.Context, cfg s1Config) (*s1Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var sub s1Sub
	var err error
	switch cfg.Sub {
	case "ws":
		sub, err = dialS1WS(ctx, cfg.WSURL)
	case "redis":
		sub, err = newS1RedisSub(ctx, cfg.RedisURL, cfg.Stream)
	}
	if err != nil {
		return nil, err
	}
	defer sub.close()
	pub, err := dialS1Publisher(cfg.MQTTAddr, cfg.ClientID, cfg.Topic, cfg.QoS, cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("MQTT %s: %w", cfg.MQTTAddr, err)
	}
	defer pub.close()

	t := newS1Tracker()
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	subErr := make(chan error, 1)
	go func() { subErr <- sub.run(subCtx, t) }()

	res := &s1Result{Sub: cfg.Sub, Topic: cfg.Topic, QoS: cfg.QoS, Size: cfg.Size, Window: cfg.Window}
	fail := func(format string, args ...any) (*s1Result, error) {
		res.Invalid = fmt.Sprintf(format, args...)
		return res, nil
	}

	// Probe, one message at a time, until one comes back.
	var seq int64
	startBy := time.Now().Add(cfg.StartWait)
	for t.firstSeq() < 0 {
		if time.Now().After(startBy) {
			return fail("no message came back within %v", cfg.StartWait)
		}
		if err := pub.publish(seq, startBy); err != nil {
			return fail("publishing: %v", err)
		}
		if err := pub.w.Flush(); err != nil {
			return fail("publishing: %v", err)
		}
		seq++
		select {
		case <-t.notify:
		case <-time.After(100 * time.Millisecond):
		case err := <-subErr:
			return fail("subscriber: %v", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	first := t.firstSeq()
	res.Probes = first

	var (
		phase     atomic.Int32 // phaseWarmup, phaseMeasure, phaseStop
		pubErr    = make(chan error, 1)
		published atomic.Int64 // the next sequence number
	)
	published.Store(seq)
	go func() {
		// Publish while fewer than Window messages from first on are
		// outstanding; a window that does not move for Stall is an error.
		s := seq
		for phase.Load() != phaseStop && s-first < cfg.MaxMsgs {
			for s-first-t.count.Load() >= int64(cfg.Window) {
				if err := pub.w.Flush(); err != nil {
					pubErr <- err
					return
				}
				select {
				case <-t.notify:
				case <-time.After(cfg.Stall):
					pubErr <- fmt.Errorf("nothing came back for %v with %d messages outstanding", cfg.Stall, s-first-t.count.Load())
					return
				}
				if phase.Load() == phaseStop {
					pubErr <- nil
					return
				}
			}
			if err := pub.publish(s, time.Now().Add(cfg.Stall)); err != nil {
				pubErr <- err
				return
			}
			s++
			published.Store(s)
			if pub.w.Buffered() > 8<<10 {
				if err := pub.w.Flush(); err != nil {
					pubErr <- err
					return
				}
			}
		}
		if err := pub.w.Flush(); err != nil {
			pubErr <- err
			return
		}
		pubErr <- nil
	}()

	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case err := <-pubErr:
			if err == nil {
				err = errors.New("the publisher stopped early (message cap)")
			}
			return err
		case err := <-subErr:
			return fmt.Errorf("subscriber: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	sample := func() (time.Time, int64, time.Duration, []time.Duration, map[string]cpuTimes) {
		pcs := make([]time.Duration, len(cfg.Pids))
		for i, pid := range cfg.Pids {
			pcs[i], _ = pidCPU(pid)
		}
		return time.Now(), t.count.Load(), selfCPU(), pcs, readCPUTimes()
	}
	if err := sleep(cfg.Warmup); err != nil {
		phase.Store(phaseStop)
		return fail("during the warm-up: %v", err)
	}
	t0, n0, cpu0, pc0, sys0 := sample()
	phase.Store(phaseMeasure)
	werr := sleep(cfg.Duration)
	t1, n1, cpu1, pc1, sys1 := sample()
	phase.Store(phaseStop)
	if werr != nil {
		if errors.Is(werr, ctx.Err()) {
			return nil, werr
		}
		return fail("during the window: %v", werr)
	}
	select { // the publisher's last word
	case err := <-pubErr:
		if err != nil {
			return fail("publisher: %v", err)
		}
	case <-time.After(cfg.Stall + time.Second):
		return fail("the publisher did not stop")
	}

	// Drain: everything published must come back.
	last := published.Load()
	want := last - first
	drainBy := time.Now().Add(cfg.Drain)
	for t.count.Load() < want && time.Now().Before(drainBy) {
		select {
		case <-t.notify:
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond) // a late duplicate would still be counted
	stopSub()

	wall := t1.Sub(t0)
	t.mu.Lock()
	res.Delivered, res.Dups, res.Reordered = t.delivered, t.dups, t.reordered
	t.mu.Unlock()
	res.Published = want
	res.Lost = want - res.Delivered
	res.Seconds = wall.Seconds()
	res.Received = n1 - n0
	res.MPS = float64(res.Received) / wall.Seconds()
	res.Capped = last-first >= cfg.MaxMsgs
	res.GenCPUPct = 100 * float64(cpu1-cpu0) / float64(wall)
	res.PidCPUPct = pidCPUPct(cfg.Pids, pc0, pc1, wall)
	res.CPUBusyPct = cpuBusyPct(sys0, sys1)
	res.LoadAvg = loadAvg()
	var bad []string
	if res.Received == 0 {
		bad = append(bad, "nothing received in the window")
	}
	if res.Lost != 0 {
		bad = append(bad, fmt.Sprintf("%d messages lost", res.Lost))
	}
	if res.Dups != 0 {
		bad = append(bad, fmt.Sprintf("%d duplicates", res.Dups))
	}
	if res.Reordered != 0 {
		bad = append(bad, fmt.Sprintf("%d out of order", res.Reordered))
	}
	res.Valid = len(bad) == 0
	res.Invalid = strings.Join(bad, "; ")
	return res, nil
}

func cmdStream(args []string) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	var cfg s1Config
	var pids string
	var qos int
	var asJSON bool
	fs.StringVar(&cfg.MQTTAddr, "mqtt", "127.0.0.1:18894", "the broker the bridge ingests from, host:port (loopback)")
	fs.StringVar(&cfg.Topic, "topic", "bench/s1", "topic to publish to")
	fs.IntVar(&qos, "qos", 1, "QoS of the publisher: 0 or 1")
	fs.IntVar(&cfg.Size, "size", 64, "payload bytes (a 12-digit sequence number, then 'x')")
	fs.IntVar(&cfg.Window, "window", 500, "most messages between publisher and subscriber")
	fs.StringVar(&cfg.Sub, "sub", "ws", "subscriber: ws (a WebSocket client of the bridge) or redis (XREAD of the history stream)")
	fs.StringVar(&cfg.WSURL, "ws-url", "ws://127.0.0.1:18280/v1/ws?filter=bench%2Fs1", "the bridge's WebSocket URL with the filter, for -sub ws")
	fs.StringVar(&cfg.RedisURL, "redis-url", "redis://127.0.0.1:16389/0", "the Redis the bridge writes, for -sub redis")
	fs.StringVar(&cfg.Stream, "stream", "{bench:}history", "the history stream key, for -sub redis")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window (max 60s)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up once messages flow (max 10s)")
	fs.Int64Var(&cfg.MaxMsgs, "max-messages", defMaxRequests, "publish at most this many")
	fs.StringVar(&pids, "pids", "", "comma-separated process ids whose CPU use to report over the window")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.QoS = byte(qos)
	if qos < 0 || qos > 1 {
		return fmt.Errorf("-qos %d: want 0 or 1", qos)
	}
	var err error
	if cfg.Pids, err = parsePids(pids); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := runS1Stream(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(os.Stdout, res)
	}
	fmt.Printf("S1 %s -> bridge -> %s  %d B, QoS %d, window %d\n", cfg.MQTTAddr, cfg.Sub, cfg.Size, cfg.QoS, cfg.Window)
	fmt.Printf("  received  %d in %.2fs = %.0f msg/s\n", res.Received, res.Seconds, res.MPS)
	fmt.Printf("  published %d, delivered %d, lost %d, duplicates %d, out of order %d (after %d probes)\n",
		res.Published, res.Delivered, res.Lost, res.Dups, res.Reordered, res.Probes)
	fmt.Printf("  generator CPU %.1f%% of one core\n", res.GenCPUPct)
	for pid, v := range res.PidCPUPct {
		fmt.Printf("  pid %s CPU %.1f%% of one core\n", pid, v)
	}
	if !res.Valid {
		return fmt.Errorf("run invalid: %s", res.Invalid)
	}
	return nil
}
