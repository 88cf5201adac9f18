package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/acl"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The published Standard Webhooks test vector.
func TestSignStandardVector(t *testing.T) {
	key, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestParseSecret(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)),
		"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65))} {
		if _, err := webhook.ParseSecret(s); err == nil {
			t.Errorf("ParseSecret(%q) accepted it", s)
		} else if len(s) > 8 && strings.Contains(err.Error(), s[6:]) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// verify is an independent Standard Webhooks verifier, as a receiver
// would write it: base64 key after whsec_, HMAC-SHA256 over
// id.timestamp.body, any of the space-separated v1 signatures, timestamp
// within 5 minutes.
func verify(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return fmt.Errorf("missing webhook-id or webhook-timestamp")
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp too far off")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, s, _ := strings.Cut(sig, ","); v == "v1" && hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a local HTTP endpoint that records what it gets and answers
// as its handler says.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) int // status for the n-th request (from 1)
	delay  func(n int) time.Duration
}

type delivery struct {
	id, topic string
	header    http.Header
	body      []byte
	verified  error
}

func newReceiver(t *testing.T, answer func(n int, d delivery) int) *receiver {
	return newReceiverOn(t, nil, answer)
}

// newReceiverOn is newReceiver listening on ln (nil: a new port).
func newReceiverOn(t *testing.T, ln net.Listener, answer func(n int, d delivery) int) *receiver {
	r := &receiver{answer: answer}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{id: req.Header.Get("webhook-id"), header: req.Header.Clone(), body: body, verified: verify(secret, req.Header, body)}
		var env struct{ Topic string }
		if json.Unmarshal(body, &env) == nil {
			d.topic = env.Topic
		}
		r.mu.Lock()
		r.got = append(r.got, d)
		n := len(r.got)
		delay := r.delay
		r.mu.Unlock()
		if delay != nil {
			select {
			case <-time.After(delay(n)):
			case <-req.Context().Done():
				return
			}
		}
		status := http.StatusNoContent
		if r.answer != nil {
			status = r.answer(n, d)
		}
		w.WriteHeader(status)
	}))
	if ln != nil {
		r.Listener.Close()
		r.Listener = ln
	}
	r.Start()
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

type env struct {
	store  *memory.Store
	groups *memory.Groups
}

func newEnv(t *testing.T) *env {
	s, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &env{store: s, groups: memory.NewGroups(s)}
}

func (e *env) manager(t *testing.T, consumer string, hooks ...webhook.Config) *webhook.Manager {
	t.Helper()
	m, err := webhook.New(webhook.ManagerConfig{
		Webhooks: hooks, Groups: e.groups, Leases: e.store, Consumer: consumer,
		Logger: slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) put(t *testing.T, topic, payload string) bridge.Message {
	t.Helper()
	m, err := e.store.Put(t.Context(), bridge.Message{Topic: topic, Payload: []byte(payload), QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func hook(url string, change func(*webhook.Config)) webhook.Config {
	c := webhook.Config{
		Name: "erp", Filters: []string{"orders/+/status"}, URL: url, Secret: secret,
		Timeout: 2 * time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		ClaimIdle: 3 * time.Second, Attempts: 3,
	}
	if change != nil {
		change(&c)
	}
	return c
}

func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Matching messages arrive signed, as the JSON envelope, each once, in
// order per topic; others are skipped.
func TestDeliverSignedInOrder(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	m := e.manager(t, "a", hook(rcv.URL, func(c *webhook.Config) { c.Headers = map[string]string{"Authorization": "Bearer x"} }))
	var want []string
	for i := range 30 {
		topic := fmt.Sprintf("orders/%d/status", i%3)
		want = append(want, e.put(t, topic, fmt.Sprint(i)).ID)
		e.put(t, "other/topic", "x")
	}
	eventually(t, "deliveries", func() string {
		if n := len(rcv.deliveries()); n < 30 {
			return fmt.Sprintf("%d of 30", n)
		}
		return ""
	})
	got := rcv.deliveries()
	if len(got) != 30 {
		t.Fatalf("%d deliveries, want 30", len(got))
	}
	last := map[string]string{}
	var ids []string
	for _, d := range got {
		if d.verified != nil {
			t.Fatalf("delivery %s: %v", d.id, d.verified)
		}
		if d.header.Get("Content-Type") != "application/json" || d.header.Get("Authorization") != "Bearer x" {
			t.Fatalf("headers %v", d.header)
		}
		if prev := last[d.topic]; prev != "" {
			if c, _ := bridge.CompareIDs(prev, d.id); c >= 0 {
				t.Fatalf("topic %s: %s delivered after %s", d.topic, d.id, prev)
			}
		}
		last[d.topic] = d.id
		ids = append(ids, d.id)
	}
	slices.SortFunc(ids, func(a, b string) int { c, _ := bridge.CompareIDs(a, b); return c })
	if !slices.Equal(ids, want) {
		t.Fatalf("delivered %v, want %v", ids, want)
	}
	// The receiver has the 30th before the worker counts its answer.
	eventually(t, "stats", func() string {
		if st, _ := m.Stats("erp"); st.Delivered != 30 || st.Skipped != 30 || !st.Holding {
			return fmt.Sprintf("stats %+v", st)
		}
		return ""
	})
}

// A receiver that fails the first attempts gets the message again, with
// the same webhook-id and a fresh signature, until it answers 2xx.
func TestRetries(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, func(n int, _ delivery) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	m := e.manager(t, "a", hook(rcv.URL, nil))
	msg := e.put(t, "orders/1/status", "shipped")
	eventually(t, "three attempts", func() string {
		if n := len(rcv.deliveries()); n != 3 {
			return fmt.Sprintf("%d attempts", n)
		}
		return ""
	})
	for _, d := range rcv.deliveries() {
		if d.id != msg.ID || d.verified != nil {
			t.Fatalf("attempt: id %s (want %s), signature %v", d.id, msg.ID, d.verified)
		}
	}
	eventually(t, "acknowledged", func() string {
		if n, _ := e.groups.Pending(t.Context(), "webhook:erp"); n != 0 {
			return fmt.Sprintf("%d pending", n)
		}
		return ""
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(rcv.deliveries()); n != 3 {
		t.Fatalf("%d attempts after success", n)
	}
	if st, _ := m.Stats("erp"); st.Delivered != 1 || st.Failures != 2 || st.DeadLettered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A receiver that answers too slowly is retried (the outcome of the slow
// attempt is unknown): it sees the message twice, with one webhook-id,
// and the next message of the topic only after.
func TestSlowReceiver(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	rcv.delay = func(n int) time.Duration {
		if n == 1 {
			return 700 * time.Millisecond
		}
		return 0
	}
	e.manager(t, "a", hook(rcv.URL, func(c *webhook.Config) { c.Timeout = 300 * time.Millisecond; c.ClaimIdle = time.Second }))
	first := e.put(t, "orders/1/status", "a")
	second := e.put(t, "orders/1/status", "b")
	eventually(t, "deliveries", func() string {
		if n := len(rcv.deliveries()); n < 3 {
			return fmt.Sprintf("%d deliveries", n)
		}
		return ""
	})
	var ids []string
	for _, d := range rcv.deliveries() {
		ids = append(ids, d.id)
	}
	if want := []string{first.ID, first.ID, second.ID}; !slices.Equal(ids, want) {
		t.Fatalf("deliveries %v, want %v", ids, want)
	}
}

// A receiver that is down: the message is dead-lettered after its
// attempts; once the receiver is back, a replay delivers it and empties
// the list.
func TestDeadLetterAndReplay(t *testing.T) {
	e := newEnv(t)
	var up sync.Mutex
	down := true
	rcv := newReceiver(t, func(int, delivery) int {
		up.Lock()
		defer up.Unlock()
		if down {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	m := e.manager(t, "a", hook(rcv.URL, nil))
	msg := e.put(t, "orders/7/status", "lost?")
	var dls []bridge.DeadLetter
	eventually(t, "dead letter", func() string {
		var err error
		dls, _, err = m.DeadLetters(t.Context(), bridge.Identity{}, "erp", "", 10)
		if err != nil || len(dls) != 1 {
			return fmt.Sprintf("%d dead letters, %v", len(dls), err)
		}
		return ""
	})
	dl := dls[0]
	if dl.Message.ID != msg.ID || dl.Attempts != 3 || !strings.Contains(dl.Error, "502") {
		t.Fatalf("dead letter %+v", dl)
	}
	if n, _ := e.groups.Pending(t.Context(), "webhook:erp"); n != 0 {
		t.Fatalf("%d pending after dead-lettering", n)
	}
	if n := len(rcv.deliveries()); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}

	up.Lock()
	down = false
	up.Unlock()
	if n, err := m.Replay(t.Context(), bridge.Identity{}, "erp", []string{dl.ID}); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	eventually(t, "replayed", func() string {
		got := rcv.deliveries()
		if len(got) != 4 {
			return fmt.Sprintf("%d deliveries", len(got))
		}
		if last := got[3]; last.id != msg.ID || last.verified != nil || !strings.Contains(string(last.body), "lost?") {
			return fmt.Sprintf("replay %s %v %s", last.id, last.verified, last.body)
		}
		if left, _, _ := m.DeadLetters(t.Context(), bridge.Identity{}, "erp", "", 10); len(left) != 0 {
			return fmt.Sprintf("%d dead letters left", len(left))
		}
		if st, _ := m.Stats("erp"); st.Replayed != 1 {
			return fmt.Sprintf("stats %+v", st)
		}
		return ""
	})
	if _, _, err := m.DeadLetters(t.Context(), bridge.Identity{}, "nope", "", 10); bridge.ErrorCode(err) != bridge.ECodeNotFound {
		t.Fatalf("DeadLetters of an unknown webhook: %v", err)
	}
}

// A raw body is the payload, with its content type and the MQTT metadata in
// headers; the signature covers it.
func TestRawBody(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	e.manager(t, "a", hook(rcv.URL, func(c *webhook.Config) { c.Body = webhook.BodyRaw; c.Filters = []string{"#"} }))
	_, err := e.store.Put(t.Context(), bridge.Message{Topic: "dev/ü 1", Payload: []byte{0, 1, 2}, QoS: 1, Retain: true,
		Properties: bridge.Properties{ContentType: "application/x-thing", UserProperties: []bridge.UserProperty{{Key: "k", Value: "v,w"}}}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() string {
		if len(rcv.deliveries()) != 1 {
			return "none"
		}
		return ""
	})
	d := rcv.deliveries()[0]
	h := d.header
	if string(d.body) != "\x00\x01\x02" || h.Get("Content-Type") != "application/x-thing" || h.Get("MQTT-Topic") != "dev/%C3%BC%201" ||
		h.Get("MQTT-Retain") != "true" || h.Get("MQTT-QoS") != "1" || h.Get("MQTT-User-Property") != "k=v%2Cw" || d.verified != nil {
		t.Fatalf("raw delivery %q %v (%v)", d.body, h, d.verified)
	}
}

// Two instances on one store: one delivers; when it is closed, the other
// takes over, and every message is delivered, in order per topic, none
// twice.
func TestTakeover(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	rcv.delay = func(int) time.Duration { return 30 * time.Millisecond }
	cfg := hook(rcv.URL, func(c *webhook.Config) { c.ClaimIdle = 500 * time.Millisecond; c.Timeout = 400 * time.Millisecond })
	a := e.manager(t, "a", cfg)
	time.Sleep(50 * time.Millisecond) // a takes the lease first
	b := e.manager(t, "b", cfg)
	var want []string
	for i := range 40 {
		want = append(want, e.put(t, fmt.Sprintf("orders/%d/status", i%4), fmt.Sprint(i)).ID)
	}
	eventually(t, "first deliveries", func() string {
		if len(rcv.deliveries()) < 10 {
			return "fewer than 10"
		}
		return ""
	})
	if st, _ := a.Stats("erp"); !st.Holding {
		t.Fatal("the first instance does not deliver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if st, _ := a.Stats("erp"); st.Delivered >= 40 {
		t.Fatalf("the first instance delivered everything before it stopped (%+v): nothing to take over", st)
	}
	for i := 40; i < 60; i++ {
		want = append(want, e.put(t, fmt.Sprintf("orders/%d/status", i%4), fmt.Sprint(i)).ID)
	}
	eventually(t, "all delivered", func() string {
		if n := len(rcv.deliveries()); n < 60 {
			return fmt.Sprintf("%d of 60", n)
		}
		return ""
	})
	if st, _ := b.Stats("erp"); !st.Holding || st.Delivered == 0 {
		t.Fatalf("the second instance did not take over: %+v", st)
	}
	got := rcv.deliveries()
	seen := map[string]bool{}
	last := map[string]string{}
	for _, d := range got {
		if seen[d.id] {
			t.Errorf("%s delivered twice", d.id)
		}
		seen[d.id] = true
		if prev := last[d.topic]; prev != "" {
			if c, _ := bridge.CompareIDs(prev, d.id); c >= 0 {
				t.Errorf("topic %s: %s after %s", d.topic, d.id, prev)
			}
		}
		last[d.topic] = d.id
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("%s was never delivered", id)
		}
	}
}

// Dead letters hold messages: reading or replaying them needs the right to
// subscribe to every filter of the webhook.
func TestDeadLettersAuthorized(t *testing.T) {
	e := newEnv(t)
	m, err := webhook.New(webhook.ManagerConfig{
		Webhooks: []webhook.Config{hook("http://127.0.0.1:1/", nil)}, Groups: e.groups, Leases: e.store, Consumer: "a",
		Authorizer: denyAll{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.DeadLetters(t.Context(), bridge.Identity{Name: "x"}, "erp", "", 1); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Fatalf("DeadLetters: %v", err)
	}
	if _, err := m.Replay(t.Context(), bridge.Identity{Name: "x"}, "erp", nil); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Fatalf("Replay: %v", err)
	}
	_ = m.Close(t.Context())
}

// Replaying sends the messages again: it needs the right to publish on
// every filter of the webhook as well; reading the dead letters does not.
func TestReplayNeedsPublish(t *testing.T) {
	e := newEnv(t)
	m, err := webhook.New(webhook.ManagerConfig{
		Webhooks: []webhook.Config{hook("http://127.0.0.1:1/", nil)}, Groups: e.groups, Leases: e.store, Consumer: "a",
		Authorizer: acl.ACL{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(t.Context()) }()
	if err := e.groups.CreateGroup(t.Context(), "webhook:erp"); err != nil { // what Start does
		t.Fatal(err)
	}
	reader := bridge.Identity{Name: "reader", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"orders/#"}}}
	if _, _, err := m.DeadLetters(t.Context(), reader, "erp", "", 1); err != nil {
		t.Fatalf("DeadLetters with subscribe rights: %v", err)
	}
	if _, err := m.Replay(t.Context(), reader, "erp", nil); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Fatalf("Replay with subscribe rights only: %v, want forbidden", err)
	}
	partial := bridge.Identity{Name: "partial", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"orders/#"}, Publish: []string{"orders/1/status"}}}
	if _, err := m.Replay(t.Context(), partial, "erp", nil); bridge.ErrorCode(err) != bridge.ECodeForbidden {
		t.Fatalf("Replay with publish rights on one topic of the filter: %v, want forbidden", err)
	}
	writer := bridge.Identity{Name: "writer", Kind: bridge.KindAPIKey, Rules: &bridge.Rules{Subscribe: []string{"orders/#"}, Publish: []string{"orders/#"}}}
	if _, err := m.Replay(t.Context(), writer, "erp", nil); err != nil {
		t.Fatalf("Replay with publish and subscribe rights: %v", err)
	}
}

type denyAll struct{}

func (denyAll) Authorize(context.Context, bridge.Identity, bridge.Action, string) error {
	return bridge.Errorf(bridge.ECodeForbidden, "no")
}

func TestConfigRefused(t *testing.T) {
	e := newEnv(t)
	if _, err := webhook.New(webhook.ManagerConfig{Webhooks: []webhook.Config{hook("http://x/", nil)}, Groups: e.groups, Leases: e.store, Consumer: "a"}); err != nil {
		t.Fatalf("the base configuration is refused: %v", err)
	}
	for name, change := range map[string]func(*webhook.Config){
		"no name":        func(c *webhook.Config) { c.Name = "" },
		"bad name":       func(c *webhook.Config) { c.Name = "a b" },
		"no filters":     func(c *webhook.Config) { c.Filters = nil },
		"bad filter":     func(c *webhook.Config) { c.Filters = []string{"a/#/b"} },
		"ftp url":        func(c *webhook.Config) { c.URL = "ftp://x" },
		"body":           func(c *webhook.Config) { c.Body = "xml" },
		"secret":         func(c *webhook.Config) { c.Secret = "nope" },
		"reserved":       func(c *webhook.Config) { c.Headers = map[string]string{"webhook-id": "x"} },
		"claim<=timeout": func(c *webhook.Config) { c.ClaimIdle = c.Timeout },
		"backoff":        func(c *webhook.Config) { c.BackoffMax = time.Millisecond },
	} {
		_, err := webhook.New(webhook.ManagerConfig{Webhooks: []webhook.Config{hook("http://x/", change)}, Groups: e.groups, Leases: e.store, Consumer: "a"})
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A receiver that is down (nothing listens): the message becomes a dead
// letter saying why; once a receiver listens there, a replay of every dead
// letter delivers it.
func TestReceiverDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := newEnv(t)
	m := e.manager(t, "a", hook("http://"+addr+"/hook", nil))
	msg := e.put(t, "orders/9/status", "x")
	eventually(t, "dead letter", func() string {
		dls, _, err := m.DeadLetters(t.Context(), bridge.Identity{}, "erp", "", 10)
		if err != nil || len(dls) != 1 {
			return fmt.Sprintf("%d dead letters, %v", len(dls), err)
		}
		if !strings.Contains(dls[0].Error, "connection refused") || strings.Contains(dls[0].Error, addr+"/hook") {
			t.Fatalf("error %q: want the cause, without the URL", dls[0].Error)
		}
		return ""
	})
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	rcv := newReceiverOn(t, ln, nil)
	if n, err := m.Replay(t.Context(), bridge.Identity{}, "erp", nil); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	eventually(t, "replayed", func() string {
		if got := rcv.deliveries(); len(got) != 1 || got[0].id != msg.ID || got[0].verified != nil {
			return fmt.Sprintf("deliveries %v", got)
		}
		return ""
	})
}
