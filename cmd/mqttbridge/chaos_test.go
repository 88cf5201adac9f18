package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// TestChaos is the chaos run of `make chaos` (issue 13); make test skips
// it. Three instances share a private Mosquitto (persistence on) and a
// private Redis (append-only file, fsync always). A QoS 1 publisher over
// MQTT and one over HTTP run the whole time, and WebSocket (QoS 1 sessions
// with acks, and filter with last_id) and SSE (Last-Event-ID) subscribers
// resume through a round-robin balancer that routes around instances that
// are down. Every few seconds one random fault strikes and the run waits
// until the fleet is ready again:
//
//   - kill -9 of an instance, or SIGTERM (graceful), then a restart;
//   - SIGSTOP of Redis for 1–5 s, then SIGCONT;
//   - a Redis restart (SIGTERM: it writes its append-only file);
//   - a broker restart (SIGTERM: it writes its persistence file);
//   - with MQTTBRIDGE_CHAOS_REDIS_KILL=1 also kill -9 of Redis, which loses
//     what its fsync policy allows; the report names that case.
//
// At the end it prints a history check in the manner of Jepsen: per
// publisher what was attempted, acknowledged (PUBACK to the MQTT
// publisher, 200 to the HTTP one) and of unknown outcome; per subscriber
// what it received: lost (an acknowledged message never delivered, must be
// 0), ids delivered twice (0), out of order per topic (0), gaps (0), and
// payload duplicates (the same message under a second id, which QoS 1
// allows on an ingest takeover: counted, not failed).
//
// MQTTBRIDGE_CHAOS is the duration of the fault phase (e.g. 3m);
// MQTTBRIDGE_CHAOS_SEED makes the sequence of faults repeatable.
func TestChaos(t *testing.T) {
	spec := os.Getenv("MQTTBRIDGE_CHAOS")
	if spec == "" {
		t.Skip("the chaos run: make chaos (MQTTBRIDGE_CHAOS=3m)")
	}
	length, err := time.ParseDuration(spec)
	if err != nil {
		t.Fatalf("MQTTBRIDGE_CHAOS=%q: %v", spec, err)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MQTTBRIDGE_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MQTTBRIDGE_CHAOS_SEED=%q: %v", s, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	redisKill := os.Getenv("MQTTBRIDGE_CHAOS_REDIS_KILL") == "1"

	f := startFleetWith(t, 3, true, testenv.MosquittoOptions{Extra: "max_queued_messages 300000"})
	rot := newRotation(len(f.bridges))
	var rs restarts

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	subs := startSubs(t, ctx, &wg, f, rot, &rs, true)

	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	defer func() { stopLoad(); loadWG.Wait() }()
	mp := &chaosPublisher{addr: fmt.Sprintf("127.0.0.1:%d", f.mqttPort), topic: "f/seq", acked: map[int]bool{}}
	hp := &httpPublisher{rot: rot, f: f}
	loadWG.Add(2)
	go func() { defer loadWG.Done(); mp.run(loadCtx) }()
	go func() { defer loadWG.Done(); hp.run(loadCtx) }()

	faults := []struct {
		name string
		do   func()
	}{
		{"kill -9 of an instance", func() { bounce(t, f, rot, &rs, rng, true) }},
		{"SIGTERM of an instance", func() { bounce(t, f, rot, &rs, rng, false) }},
		{"SIGSTOP/SIGCONT of Redis", func() { f.redis.Pause(); sleepRand(rng, time.Second, 5*time.Second); f.redis.Resume() }},
		{"Redis restart (SIGTERM)", func() { f.redis.Stop(); sleepRand(rng, 500*time.Millisecond, 2*time.Second); f.redis.Start() }},
		{"broker restart (SIGTERM)", func() { f.mq.Stop(); sleepRand(rng, 500*time.Millisecond, 2*time.Second); f.mq.Start() }},
	}
	if redisKill {
		faults = append(faults, struct {
			name string
			do   func()
		}{"kill -9 of Redis", func() { f.redis.Kill(); sleepRand(rng, 500*time.Millisecond, 2*time.Second); f.redis.Start() }})
	}
	counts := map[string]int{}
	var order []string
	var unready []string
	began := time.Now()
	time.Sleep(2 * time.Second)
	for time.Since(began) < length {
		fl := faults[rng.IntN(len(faults))]
		at := time.Since(began).Round(100 * time.Millisecond)
		fl.do()
		counts[fl.name]++
		order = append(order, fmt.Sprintf("%v %s", at, fl.name))
		if what := waitFleetReady(f, 60*time.Second); what != "" {
			unready = append(unready, fmt.Sprintf("after %s at %v: %s", fl.name, at, what))
		}
		t.Logf("fault %d at %v: %s; published so far: %s %d, f/http %d", len(order), at, fl.name, mp.topic, mp.attemptedNow(), hp.sentNow.Load())
		sleepRand(rng, 2*time.Second, 6*time.Second)
	}
	stopLoad()
	loadWG.Wait()

	// Everything acknowledged must arrive; give the fleet time to catch up.
	want := map[string]int{"f/http": hp.sent}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, s := range subs {
			done = done && s.completeAcked(mp.topic, mp.acked) && s.complete(want)
		}
		if done {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	var b strings.Builder
	fmt.Fprintf(&b, "chaos run: seed %d, %v of faults, %d faults (Redis kill -9 %s)\n", seed, length, len(order),
		map[bool]string{true: "included", false: "not included; MQTTBRIDGE_CHAOS_REDIS_KILL=1 adds it"}[redisKill])
	for _, fl := range faults {
		fmt.Fprintf(&b, "  %-28s %d\n", fl.name, counts[fl.name])
	}
	fmt.Fprintf(&b, "publishers (QoS 1):\n  %-22s %-7s %9s %12s %8s\n", "publisher", "topic", "attempted", "acknowledged", "unknown")
	fmt.Fprintf(&b, "  %-22s %-7s %9d %12d %8d\n", "MQTT (paho, to broker)", mp.topic, mp.attempted, len(mp.acked), mp.attempted-len(mp.acked))
	fmt.Fprintf(&b, "  %-22s %-7s %9d %12d %8d\n", "HTTP POST (any bridge)", "f/http", hp.sent+hp.retries, hp.sent, hp.retries)
	fmt.Fprintf(&b, "subscribers:\n  %-10s %-7s %9s %5s %8s %9s %5s %12s %10s\n", "subscriber", "topic", "delivered", "lost", "dup ids", "reordered", "gaps", "payload dups", "reconnects")
	failed := false
	for _, s := range subs {
		httpAcked := map[int]bool{}
		for i := 1; i <= hp.sent; i++ {
			httpAcked[i] = true
		}
		for _, topic := range []string{mp.topic, "f/http"} {
			acked := mp.acked
			if topic == "f/http" {
				acked = httpAcked
			}
			r := s.check(topic, acked)
			fmt.Fprintf(&b, "  %-10s %-7s %9d %5d %8d %9d %5d %12d %10d\n", s.name, topic, r.delivered, r.lost, r.dupIDs, r.reordered, r.gaps, r.payloadDups, r.reconnects)
			failed = failed || r.lost > 0 || r.dupIDs > 0 || r.reordered > 0 || r.gaps > 0
		}
	}
	for _, u := range unready {
		fmt.Fprintf(&b, "not ready within 60 s %s\n", u)
		failed = true
	}
	verdict := "PASS: nothing acknowledged was lost, no id delivered twice, nothing out of order, no gap"
	if failed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "result: %s\n", verdict)
	t.Log("faults in order:\n  " + strings.Join(order, "\n  "))
	t.Log("\n" + b.String())
	for _, s := range subs {
		s.mu.Lock()
		for _, bad := range s.bad {
			t.Errorf("%s: %s", s.name, bad)
		}
		s.mu.Unlock()
	}
	if failed {
		t.Fail()
	}
}

// bounce takes a random instance out of the rotation, ends it (kill -9 or
// SIGTERM), starts it again and puts it back once ready.
func bounce(t *testing.T, f *fleet, rot *rotation, rs *restarts, rng *rand.Rand, kill bool) {
	t.Helper()
	i := rng.IntN(len(f.bridges))
	b := f.bridges[i]
	rot.set(i, false)
	rs.begin(i)
	if kill {
		b.Kill()
	} else {
		b.Stop()
	}
	sleepRand(rng, 500*time.Millisecond, 2*time.Second)
	b.Start()
	waitReadyAt(t, b.Addr)
	rs.end(i)
	rot.set(i, true)
}

// waitFleetReady waits until every instance's /readyz is 200, and returns
// what was not ready at the deadline ("" when all were).
func waitFleetReady(f *fleet, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		var not []string
		for _, b := range f.bridges {
			if code, body := readyz(b.Addr); code != 200 {
				not = append(not, fmt.Sprintf("%s: %d %s", b.Addr, code, strings.TrimSpace(body)))
			}
		}
		if len(not) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(not, "; ")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyz is the status and body of addr's /readyz; 0 when it did not answer.
func readyz(addr string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func sleepRand(rng *rand.Rand, lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo))))
}

// chaosPublisher publishes numbered QoS 1 messages with paho straight to
// the broker, reconnecting after every failure. A number counts as
// acknowledged once the PUBACK arrived; a number whose publish failed
// (connection lost, timeout) has an unknown outcome and is never sent
// again, so it may or may not arrive.
type chaosPublisher struct {
	addr, topic string

	mu        sync.Mutex
	attempted int
	acked     map[int]bool
}

func (p *chaosPublisher) attemptedNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempted
}

func (p *chaosPublisher) run(ctx context.Context) {
	var cli *paho.Client
	var conn net.Conn
	drop := func() {
		if cli != nil {
			_ = conn.Close()
			<-cli.Done()
			cli, conn = nil, nil
		}
	}
	defer drop()
	for n := 1; ctx.Err() == nil; {
		if cli == nil {
			c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			id := fmt.Sprintf("chaos-pub-%d", time.Now().UnixNano())
			cl := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: c})
			cctx, stop := context.WithTimeout(ctx, 5*time.Second)
			_, err = cl.Connect(cctx, &paho.Connect{KeepAlive: 10, ClientID: id, CleanStart: true})
			stop()
			if err != nil {
				_ = c.Close()
				time.Sleep(200 * time.Millisecond)
				continue
			}
			cli, conn = cl, c
		}
		p.mu.Lock()
		p.attempted = n
		p.mu.Unlock()
		pctx, stop := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.Publish(pctx, &paho.Publish{Topic: p.topic, QoS: 1, Payload: []byte(strconv.Itoa(n))})
		stop()
		if err == nil && resp != nil && resp.ReasonCode < 0x80 {
			p.mu.Lock()
			p.acked[n] = true
			p.mu.Unlock()
		} else {
			drop()
		}
		n++
		time.Sleep(4 * time.Millisecond)
	}
}

// chaosResult is one subscriber's history of one topic, checked against
// the numbers the publisher saw acknowledged.
type chaosResult struct {
	delivered, lost, dupIDs, reordered, gaps, payloadDups, reconnects int
}

// completeAcked reports whether s received every acknowledged number of
// topic.
func (s *rollSub) completeAcked(topic string, acked map[int]bool) bool {
	return s.check(topic, acked).lost == 0
}

func (s *rollSub) check(topic string, acked map[int]bool) chaosResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := chaosResult{dupIDs: s.dupIDs, reconnects: len(s.ends)}
	for _, b := range s.bad {
		if strings.HasPrefix(b, "gap") {
			r.gaps++
		}
	}
	h := s.topics[topic]
	if h == nil {
		h = &history{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[int]int{}
	maxFirst := 0
	for _, n := range h.seqs {
		seen[n]++
		if seen[n] == 1 {
			if n < maxFirst {
				r.reordered++
			}
			maxFirst = max(maxFirst, n)
		} else {
			r.payloadDups++
		}
	}
	r.delivered = len(seen)
	for n := range acked {
		if seen[n] == 0 {
			r.lost++
		}
	}
	return r
}
