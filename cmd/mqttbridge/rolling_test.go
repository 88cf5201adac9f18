package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
	"github.com/mqttbridge/mqttbridge/wsproxy"
)

// Issue 8: a rolling restart of three instances under load (simulated on
// loopback: stop one, start it again, repeat) loses no message at the
// subscribers, and the test says so.
//
// QoS 1 messages flow the whole time: numbered ones from mosquitto_pub on
// f/seq, and numbered HTTP publishes on f/http to whichever instance is in
// the rotation. Subscribers behave like the browser client library behind
// a round-robin load balancer: WebSocket clients with a QoS 1 session that
// acknowledge what they process and resume with session and last_id, a
// WebSocket client that resumes with filter and last_id, and SSE clients
// that resume with Last-Event-ID. Each instance in turn leaves the
// rotation, gets SIGTERM (its WebSocket clients must get 1012, its SSE
// streams must end cleanly, it must give up the ingest lease if it held
// it, and exit before it would be killed), starts again on its port and
// joins the rotation once /readyz says 200.
//
// The guarantees checked are docs/websocket.md's and PRODUCT.md's: every
// message in per-topic order, each id once per subscriber; QoS 1 allows the
// broker to deliver a message twice to the ingest session (a takeover), so
// the same payload under a second id is counted, not failed; a resumed
// QoS 1 session re-sends its pending messages up to last_id, so those
// re-sent ids are counted, not failed.
func TestRollingRestartUnderLoad(t *testing.T) {
	// The broker queues for the ingest session what arrives while no
	// bridge holds it and while the new holder catches up; beyond
	// Mosquitto's default of 1000 queued messages it drops them, so the
	// broker is configured as deploy/mosquitto/mosquitto.conf (a starved
	// machine may fall that far behind). Redis is not restarted
	// here, so it keeps nothing on disk: fsync after every write stalls it
	// for seconds when other tests write to the disk.
	f := startFleetWith(t, 3, false, testenv.MosquittoOptions{Extra: "max_queued_messages 300000"})
	rot := newRotation(len(f.bridges))
	lease := watchLease(t, f)
	var rs restarts

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	subs := startSubs(t, ctx, &wg, f, rot, &rs, false)

	// The load: both publishers run until stopLoad, whatever happens.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	defer func() { stopLoad(); loadWG.Wait() }()
	pub := startPublisher(t, f.mqttPort)
	t.Cleanup(func() { _ = pub.cmd.Process.Kill() }) // when the test ends early
	var pubErr error
	var seqSent atomic.Int64 // pub.sent, for the log while the load runs
	loadWG.Add(2)
	go func() {
		defer loadWG.Done()
		for loadCtx.Err() == nil {
			if _, err := fmt.Fprintf(pub.stdin, "%d\n", pub.sent+1); err != nil {
				pubErr = err
				return
			}
			pub.sent++
			seqSent.Store(int64(pub.sent))
			time.Sleep(4 * time.Millisecond)
		}
	}()
	hp := &httpPublisher{rot: rot, f: f}
	go func() { defer loadWG.Done(); hp.run(loadCtx) }()

	time.Sleep(1500 * time.Millisecond)
	for i, b := range f.bridges {
		owner := f.owner(t)
		leaseMark := lease.mark()
		before := strings.Count(b.Log(), "shutting down: draining")
		rot.set(i, false) // the load balancer stops sending new clients
		rs.begin(i)
		ready := watchReadyz(b.Addr)
		began := time.Now()
		b.Stop() // SIGTERM; SIGKILL after 10 s
		took := time.Since(began)
		seen := ready()
		log := b.Log()
		if strings.Count(log, "shutting down: draining") == before {
			t.Fatalf("bridge %d did not shut down gracefully:\n%s", i, lastLines(log, 20))
		}
		if took >= 10*time.Second || strings.Contains(log, "mqttbridge: shutdown:") {
			t.Fatalf("bridge %d did not finish its graceful shutdown (%v):\n%s", i, took.Round(time.Millisecond), lastLines(log, 20))
		}
		leaseNote := ""
		if owner == i {
			// Released (DEL), not left to expire. On a starved machine a
			// renewal may come too late, and the lease expires just
			// before the SIGTERM (the bridge logs that it lost it).
			held := strings.LastIndex(log, "holding the ingest lease")
			lost := max(strings.LastIndex(log, "the ingest lease was lost"), strings.LastIndex(log, "another instance holds the ingest lease"),
				strings.LastIndex(log, "cannot renew the ingest lease"))
			switch ended := lease.ended(leaseMark, 5*time.Second); {
			case lost > held:
				leaseNote = fmt.Sprintf("; it lost the ingest lease before the SIGTERM, now bridge %d holds it", f.owner(t))
			case ended != "del":
				t.Fatalf("bridge %d held the ingest lease and did not release it on SIGTERM: after the SIGTERM the lease %s", i,
					map[string]string{"expired": "expired", "": "neither was deleted nor expired"}[ended])
			default:
				leaseNote = fmt.Sprintf("; it held the ingest lease and released it, now bridge %d holds it", f.owner(t))
			}
		}
		if k := slices.Index(seen, "200"); k >= 0 && slices.Index(seen[k+1:], "200") >= 0 {
			t.Fatalf("bridge %d: /readyz was 200 again after it went false while shutting down: %q", i, seen)
		}
		t.Logf("restart %d: bridge %d stopped in %v (readyz while stopping: %s)%s; published so far: f/seq %d, f/http %d",
			i+1, i, took.Round(time.Millisecond), strings.Join(seen, ", "), leaseNote, seqSent.Load(), hp.sentNow.Load())
		b.Start()
		waitReadyAt(t, b.Addr)
		rs.end(i)
		rot.set(i, true)
		t.Logf("restart %d: bridge %d ready again; published so far: f/seq %d, f/http %d", i+1, i, seqSent.Load(), hp.sentNow.Load())
		time.Sleep(1500 * time.Millisecond) // under load in the new configuration
	}
	stopLoad()
	loadWG.Wait()
	if pubErr != nil {
		t.Fatalf("mosquitto_pub: %v", pubErr)
	}
	pub.close(t) // every line acknowledged by the broker
	want := map[string]int{"f/seq": pub.sent, "f/http": hp.sent}
	t.Logf("published: %d on f/seq (mosquitto_pub, QoS 1), %d on f/http (HTTP POST, QoS 1, %d retried after a failed attempt)",
		pub.sent, hp.sent, hp.retries)

	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, s := range subs {
			done = done && s.complete(want)
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	var recorded map[string]map[int]bool // read on the first loss
	for _, s := range subs {
		if lost := s.report(t, want); len(lost) > 0 {
			if recorded == nil {
				recorded = f.recorded(t)
			}
			for _, topic := range sortedKeys(lost) {
				in := 0
				for _, n := range lost[topic] {
					if recorded[topic][n] {
						in++
					}
				}
				t.Errorf("%s: lost on %s: %s; %d of them are in the history (lost on the way to the subscriber), %d are not (never recorded)",
					s.name, topic, ranges(lost[topic]), in, len(lost[topic])-in)
			}
		}
	}
	for _, b := range f.bridges {
		waitReadyAt(t, b.Addr)
	}
}

// leaseWatch follows the ingest lease's key in Redis through keyspace
// notifications: "set" when an instance takes it, "del" when its holder
// releases it, "expired" when it runs out.
type leaseWatch struct {
	mu     sync.Mutex
	events []string
}

func watchLease(t *testing.T, f *fleet) *leaseWatch {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: f.redis.Addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.ConfigSet(ctx, "notify-keyspace-events", "K$gx").Err(); err != nil {
		t.Fatalf("keyspace notifications: %v", err)
	}
	ps := c.PSubscribe(ctx, "__keyspace@0__:*lease:ingest:*")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("keyspace notifications: %v", err)
	}
	w := &leaseWatch{}
	ch := ps.Channel()
	go func() {
		for m := range ch {
			w.mu.Lock()
			w.events = append(w.events, m.Payload)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = ps.Close() })
	return w
}

// mark is the position of the next event.
func (w *leaseWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

// ended waits up to d for the lease to end after mark and says how: "del",
// "expired", or "" when it did not.
func (w *leaseWatch) ended(mark int, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		for _, e := range w.events[mark:] {
			if e == "del" || e == "expired" {
				w.mu.Unlock()
				return e
			}
		}
		w.mu.Unlock()
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restarts records when each instance was shutting down or down: from the
// SIGTERM until it was ready again. A connection that ends then on that
// instance ended because of the restart.
type restarts struct {
	mu      sync.Mutex
	windows map[int][][2]time.Time // an open window has a zero end
}

func (r *restarts) begin(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.windows == nil {
		r.windows = map[int][][2]time.Time{}
	}
	r.windows[i] = append(r.windows[i], [2]time.Time{time.Now()})
}

func (r *restarts) end(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.windows[i]; len(w) > 0 {
		w[len(w)-1][1] = time.Now()
	}
}

// during reports whether instance i was shutting down or down at t.
func (r *restarts) during(i int, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.windows[i] {
		if !t.Before(w[0]) && (w[1].IsZero() || t.Before(w[1])) {
			return true
		}
	}
	return false
}

// rotation is the round-robin load balancer in front of the fleet.
type rotation struct {
	mu sync.Mutex
	in []bool
}

func newRotation(n int) *rotation {
	r := &rotation{in: make([]bool, n)}
	for i := range r.in {
		r.in[i] = true
	}
	return r
}

func (r *rotation) set(i int, in bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.in[i] = in
}

// next is the first instance in the rotation after i, or -1.
func (r *rotation) next(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := 1; k <= len(r.in); k++ {
		if j := (i + k) % len(r.in); r.in[j] {
			return j
		}
	}
	return -1
}

// watchReadyz polls /readyz at addr until the returned function is called,
// which returns what it saw, consecutive repeats collapsed, e.g.
// [200 "503 draining" refused]. The draining window is short and may fall
// between two polls; once readiness went false it must not come back.
func watchReadyz(addr string) func() []string {
	stop := make(chan struct{})
	done := make(chan []string, 1)
	go func() {
		var seen []string
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-stop:
				done <- seen
				return
			default:
			}
			what := "refused"
			if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				what = fmt.Sprint(resp.StatusCode)
				if resp.StatusCode == 503 && strings.Contains(string(body), "draining") {
					what = "503 draining"
				}
			}
			if len(seen) == 0 || seen[len(seen)-1] != what {
				seen = append(seen, what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() []string { close(stop); return <-done }
}

// httpPublisher publishes numbered QoS 1 messages on f/http with POST to
// the instances in the rotation, in turn; a number is published again
// (elsewhere) until one attempt answers 200, so every number up to sent
// was acknowledged by the broker, some perhaps twice.
type httpPublisher struct {
	rot     *rotation
	f       *fleet
	sent    int
	retries int
	sentNow atomic.Int64 // sent, for the log while the load runs
}

func (p *httpPublisher) run(ctx context.Context) {
	client := &http.Client{Timeout: 15 * time.Second}
	at := 0
	for ctx.Err() == nil {
		n := p.sent + 1
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				return // n is not counted: its outcome is unknown
			}
			at = p.rot.next(at)
			if at >= 0 {
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.f.bridges[at].Addr+"/v1/topics/f/http?qos=1", strings.NewReader(fmt.Sprint(n)))
				req.Header.Set("Content-Type", "text/plain")
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
			} else {
				at = 0
			}
			if attempt == 0 {
				p.retries++
			}
			time.Sleep(50 * time.Millisecond)
		}
		p.sent = n
		p.sentNow.Store(int64(n))
		time.Sleep(20 * time.Millisecond)
	}
}

type subKind int

const (
	subWSQoS1 subKind = iota // session, qos 1, acks, resume with session and last_id
	subWSQoS0                // filter and last_id in the URL
	subSSE                   // Last-Event-ID
)

// startSubs starts the five subscribers of the rolling and chaos runs
// (two WebSocket QoS 1 sessions, a WebSocket with filter and last_id, two
// SSE streams), spread over the instances, and returns once every
// subscription is live (each has seen a probe). They run until ctx ends.
func startSubs(t *testing.T, ctx context.Context, wg *sync.WaitGroup, f *fleet, rot *rotation, rs *restarts, chaos bool) []*rollSub {
	t.Helper()
	subs := []*rollSub{
		{name: "ws qos1 A", kind: subWSQoS1},
		{name: "ws qos1 B", kind: subWSQoS1},
		{name: "ws qos0 C", kind: subWSQoS0},
		{name: "sse D", kind: subSSE},
		{name: "sse E", kind: subSSE},
	}
	for i, s := range subs {
		s.chaos = chaos
		s.init()
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx, f, rot, rs, i%len(f.bridges)) }()
	}
	probe(t, f, subs)
	return subs
}

// rollSub is one subscriber and what it received: per topic a history
// (lost, duplicated, reordered payloads), plus the checks on ids.
type rollSub struct {
	name  string
	kind  subKind
	chaos bool // every end is expected (the chaos run): counted, not failed

	mu        sync.Mutex
	cursor    string // the newest id received (what a client resumes from)
	session   string
	topics    map[string]*history
	topicLast map[string]string
	ids       map[string]bool
	dupIDs    int           // an id delivered twice (never allowed)
	resent    int           // a pending QoS 1 message re-sent on resume (allowed)
	idOrder   int           // an id not above the topic's previous one
	ends      []string      // how each connection ended while the test ran
	bad       []string      // ends that break the contract, gaps, errors
	transient []string      // SSE error events of a slow Redis or client
	failed    int           // connection attempts refused (a draining instance)
	retry     time.Duration // an SSE stream's retry:, the EventSource's reconnect delay
}

func (s *rollSub) init() {
	s.topics = map[string]*history{}
	s.topicLast = map[string]string{}
	s.ids = map[string]bool{}
	s.retry = 3 * time.Second // an EventSource's default, until the stream says
}

// subConn is the state of one connection: fresh once it delivered a
// message the subscriber had not seen (re-sent pending messages come
// before).
type subConn struct{ fresh bool }

func (s *rollSub) record(c *subConn, id, topic, payload string, ack bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		if s.kind == subWSQoS1 && ack && !c.fresh && compareIDs(id, s.cursor) <= 0 {
			s.resent++
		} else {
			s.dupIDs++
		}
		return
	}
	s.ids[id] = true
	c.fresh = true
	if last := s.topicLast[topic]; last != "" && compareIDs(id, last) <= 0 {
		s.idOrder++
	}
	s.topicLast[topic] = id
	h := s.topics[topic]
	if h == nil {
		h = &history{}
		s.topics[topic] = h
	}
	h.add(id, payload)
	if s.cursor == "" || compareIDs(id, s.cursor) > 0 {
		s.cursor = id
	}
}

func (s *rollSub) note(bad bool, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if bad {
		s.bad = append(s.bad, msg)
	} else {
		s.ends = append(s.ends, msg)
	}
}

func (s *rollSub) state() (cursor, session string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor, s.session
}

func (s *rollSub) sawTopic(topic string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topics[topic] != nil
}

func (s *rollSub) complete(want map[string]int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, n := range want {
		h := s.topics[topic]
		if n > 0 && (h == nil || !h.complete(n)) {
			return false
		}
	}
	return true
}

// run connects to instance at, and after every end to the next instance
// in the rotation, until ctx ends. Before it reconnects it waits as the
// real client would: web/client.js's backoff after an open connection
// (125 to 250 ms), an EventSource the retry: the stream gave. Messages go
// on meanwhile, so only the resume can bring them.
//
// How a connection ends is checked against docs/websocket.md: one on an
// instance that is shutting down must end with 1012 (WebSocket) or a clean
// end of the stream (SSE); other ends are failures, except the documented
// ones of a client or a Redis too slow for a while, which a starved
// machine produces (4001, 4002, an SSE error event store_unavailable or
// slow_consumer): those are counted and the client resumes as after any
// end.
func (s *rollSub) run(ctx context.Context, f *fleet, rot *rotation, rs *restarts, at int) {
	for ctx.Err() == nil {
		var err error
		var connected, transient bool
		if s.kind == subSSE {
			connected, transient, err = s.sse(ctx, f.bridges[at].Addr)
		} else {
			connected, err = s.ws(ctx, f.bridges[at].Addr)
		}
		if ctx.Err() != nil {
			return
		}
		wait := 100 * time.Millisecond // a refused attempt
		if connected {
			restart := rs.during(at, time.Now())
			var ce *websocket.CloseError
			wait = time.Duration(125+rand.IntN(126)) * time.Millisecond
			switch {
			case s.chaos:
				s.note(false, "%v", err)
			case s.kind == subSSE && transient:
				s.note(false, "error event")
			case s.kind == subSSE && err == nil && restart:
				s.note(false, "stream ended")
			case s.kind == subSSE:
				s.note(true, "the stream from bridge %d ended (%v) while it was not shutting down", at, err)
			case errors.As(err, &ce) && (ce.Code == wsproxy.CloseSlowConsumer || ce.Code == wsproxy.CloseTooManyUnack):
				s.note(false, "%d", ce.Code)
			case errors.As(err, &ce) && ce.Code == websocket.CloseServiceRestart && restart:
				s.note(false, "1012")
			case restart:
				s.note(true, "the connection to bridge %d ended with %v while it shut down, want close 1012", at, err)
			default:
				s.note(true, "the connection to bridge %d ended with %v while it was not shutting down", at, err)
			}
			if s.kind == subSSE {
				s.mu.Lock()
				wait = s.retry
				s.mu.Unlock()
			}
		} else {
			s.mu.Lock()
			s.failed++
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if next := rot.next(at); next >= 0 {
			at = next
		}
	}
}

// ws runs one WebSocket connection like web/client.js: resume with session
// and last_id; when the session was not found, subscribe again from the
// cursor; acknowledge QoS 1 deliveries once processed.
func (s *rollSub) ws(ctx context.Context, addr string) (connected bool, err error) {
	cursor, session := s.state()
	q := url.Values{}
	switch s.kind {
	case subWSQoS1:
		if session != "" {
			q.Set("session", session)
		}
	case subWSQoS0:
		q.Set("filter", "f/#")
	}
	if cursor != "" {
		q.Set("last_id", cursor)
	}
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := dialer.DialContext(ctx, "ws://"+addr+"/v1/ws?"+q.Encode(), nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
			s.note(true, "dial %s: %v (%d)", addr, err, resp.StatusCode)
		}
		return false, err
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()

	var welcome struct {
		Type, Session string
		Resumed       bool
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&welcome); err != nil || welcome.Type != "welcome" {
		s.note(true, "no welcome from %s: %+v %v", addr, welcome, err)
		return true, err
	}
	_ = ws.SetReadDeadline(time.Time{})
	var acks chan string
	if s.kind == subWSQoS1 {
		s.mu.Lock()
		s.session = welcome.Session
		s.mu.Unlock()
		if !welcome.Resumed {
			sub := map[string]any{"type": "subscribe", "id": "s", "filters": []string{"f/#"}, "qos": 1}
			if cursor != "" {
				sub["last_id"] = cursor
			}
			if err := ws.WriteJSON(sub); err != nil {
				return true, err
			}
		}
		// The acknowledgements, batched like the client library's.
		acks = make(chan string, 4096)
		writerDone := make(chan struct{})
		defer func() { close(acks); <-writerDone }()
		go func() {
			defer close(writerDone)
			for id := range acks {
				ids := []string{id}
				for more := true; more && len(ids) < 500; {
					select {
					case id, ok := <-acks:
						if !ok {
							more = false
						} else {
							ids = append(ids, id)
						}
					default:
						more = false
					}
				}
				if ws.WriteJSON(map[string]any{"type": "ack", "ids": ids}) != nil {
					for range acks { // drain until the reader stops
					}
					return
				}
			}
		}()
	}

	c := &subConn{}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return true, err
		}
		var fr struct {
			Type, ID, Topic, Payload, Code, Message string
			Ack                                     bool
		}
		if err := json.Unmarshal(data, &fr); err != nil {
			s.note(true, "a frame that is not JSON: %q", data)
			continue
		}
		switch fr.Type {
		case "message":
			s.record(c, fr.ID, fr.Topic, fr.Payload, fr.Ack)
			if fr.Ack {
				acks <- fr.ID
			}
		case "gap", "error":
			s.note(true, "%s from %s: %s", fr.Type, addr, data)
		}
	}
}

// sse runs one SSE stream, resuming with Last-Event-ID.
func (s *rollSub) sse(ctx context.Context, addr string) (connected, transient bool, err error) {
	cursor, _ := s.state()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/stream?filter=f/%23", nil)
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			s.note(true, "stream at %s: %d %s", addr, resp.StatusCode, body)
		}
		return false, false, fmt.Errorf("status %d", resp.StatusCode)
	}
	c := &subConn{}
	sc := bufio.NewScanner(resp.Body)
	var id, event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			switch event {
			case "message":
				var env struct{ Topic, Payload string }
				if err := json.Unmarshal([]byte(data), &env); err != nil || id == "" {
					s.note(true, "a message event without id or envelope: id %q data %q", id, data)
				} else {
					s.record(c, id, env.Topic, env.Payload, false)
				}
			case "error":
				var e struct{ Code string }
				_ = json.Unmarshal([]byte(data), &e)
				if e.Code == "store_unavailable" || e.Code == "slow_consumer" {
					transient = true
					s.mu.Lock()
					s.transient = append(s.transient, e.Code)
					s.mu.Unlock()
				} else {
					s.note(true, "error from %s: %s", addr, data)
				}
			case "gap":
				s.note(true, "gap from %s: %s", addr, data)
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, "retry: "):
			if ms, err := strconv.Atoi(line[7:]); err == nil {
				s.mu.Lock()
				s.retry = time.Duration(ms) * time.Millisecond
				s.mu.Unlock()
			}
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	return true, transient, sc.Err()
}

// probe publishes on f/probe until every subscriber has received one: then
// every subscription is live.
func probe(t *testing.T, f *fleet, subs []*rollSub) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		resp, err := http.Post("http://"+f.bridges[n%len(f.bridges)].Addr+"/v1/topics/f/probe?qos=1", "text/plain", strings.NewReader(fmt.Sprint(n)))
		if err == nil {
			resp.Body.Close()
		}
		ready := true
		for _, s := range subs {
			ready = ready && s.sawTopic("f/probe")
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscribers did not all receive a probe within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// report logs what s received and fails the test where a guarantee broke;
// it returns the numbers lost, by topic.
func (s *rollSub) report(t *testing.T, want map[string]int) map[string][]int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	var lostAll, reorderedAll int
	lostSeqs := map[string][]int{}
	for _, topic := range sortedKeys(want) {
		n := want[topic]
		h := s.topics[topic]
		if h == nil {
			h = &history{}
		}
		lost, dups, reordered, _ := h.check(n)
		h.mu.Lock()
		received := len(h.seqs)
		got := map[int]bool{}
		for _, seq := range h.seqs {
			got[seq] = true
		}
		h.mu.Unlock()
		for i := 1; i <= n; i++ {
			if !got[i] {
				lostSeqs[topic] = append(lostSeqs[topic], i)
			}
		}
		lostAll += lost
		reorderedAll += reordered
		parts = append(parts, fmt.Sprintf("%s: published %d, received %d, lost %d, duplicates %d (same payload, new id: QoS 1 redelivery), out of order %d",
			topic, n, received, lost, dups, reordered))
	}
	ends := map[string]int{}
	for _, e := range s.ends {
		ends[e]++
	}
	t.Logf("%s: %s; ids delivered twice %d, pending QoS 1 re-sent on resume %d, ids out of order %d; reconnects %d %v, refused attempts %d",
		s.name, strings.Join(parts, "; "), s.dupIDs, s.resent, s.idOrder, len(s.ends), ends, s.failed)
	if len(s.transient) > 0 {
		t.Logf("%s: SSE error events (a slow Redis or client; resumed): %v", s.name, s.transient)
	}
	for _, b := range s.bad {
		t.Errorf("%s: %s", s.name, b)
	}
	if lostAll > 0 || reorderedAll > 0 || s.dupIDs > 0 || s.idOrder > 0 {
		t.Errorf("%s: %d lost, %d out of order, %d ids delivered twice, %d ids out of order", s.name, lostAll, reorderedAll, s.dupIDs, s.idOrder)
	}
	if ends["1012"]+ends["stream ended"] == 0 {
		t.Errorf("%s: no restart reached this subscriber, so its resume was not tested", s.name)
	}
	return lostSeqs
}

// recorded reads the whole history stream from Redis: which numbers of
// each topic were recorded.
func (f *fleet) recorded(t *testing.T) map[string]map[int]bool {
	t.Helper()
	out := map[string]map[int]bool{}
	keys, err := testenv.RedisDo(f.redis.Addr, 2*time.Second, "KEYS", "*history")
	list, _ := keys.([]any)
	if err != nil || len(list) != 1 {
		t.Logf("the history stream in Redis: %v %v", keys, err)
		return out
	}
	key, _ := list[0].(string)
	for start := "-"; ; {
		page, err := testenv.RedisDo(f.redis.Addr, 5*time.Second, "XRANGE", key, start, "+", "COUNT", "1000")
		entries, _ := page.([]any)
		if err != nil {
			t.Logf("XRANGE %s: %v", key, err)
			return out
		}
		if len(entries) == 0 {
			return out
		}
		for _, e := range entries {
			entry, _ := e.([]any)
			if len(entry) != 2 {
				continue
			}
			id, _ := entry[0].(string)
			fields, _ := entry[1].([]any)
			var topic, payload string
			for i := 0; i+1 < len(fields); i += 2 {
				switch fields[i] {
				case "topic":
					topic, _ = fields[i+1].(string)
				case "payload":
					payload, _ = fields[i+1].(string)
				}
			}
			if out[topic] == nil {
				out[topic] = map[int]bool{}
			}
			if n, err := strconv.Atoi(payload); err == nil {
				out[topic][n] = true
			}
			start = "(" + id
		}
	}
}

// ranges writes sorted numbers as ranges: "3-7, 9".
func ranges(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if i == j {
			fmt.Fprint(&b, ns[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		}
		i = j + 1
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compareIDs(a, b string) int {
	c, err := bridge.CompareIDs(a, b)
	if err != nil {
		panic(errors.New("rolling test: " + err.Error()))
	}
	return c
}
