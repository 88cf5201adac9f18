package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// verifyWebhook is the Standard Webhooks check as a receiver writes it,
// independent of the bridge's code.
func verifyWebhook(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("bad webhook-id or webhook-timestamp")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

// erp is a local HTTP receiver: it checks every signature, fails whatever
// fail says, and records what it accepted.
type erp struct {
	*httptest.Server
	t     testing.TB
	mu    sync.Mutex
	fail  func(topic string, attempt int) int // status to answer, 0 for 204
	tries map[string]int                      // attempts per webhook-id
	ok    []accepted                          // 2xx answers, in order
	delay time.Duration
}

type accepted struct{ id, topic, payload string }

func newERP(t *testing.T) *erp {
	r := &erp{t: t, tries: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := verifyWebhook(hookSecret, req.Header, body); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var env struct{ ID, Topic, Payload string }
		if err := json.Unmarshal(body, &env); err != nil || env.ID != req.Header.Get("webhook-id") {
			t.Errorf("webhook body %s (%v)", body, err)
		}
		r.mu.Lock()
		r.tries[env.ID]++
		n, fail, delay := r.tries[env.ID], r.fail, r.delay
		r.mu.Unlock()
		time.Sleep(delay)
		if fail != nil {
			if status := fail(env.Topic, n); status != 0 {
				w.WriteHeader(status)
				return
			}
		}
		r.mu.Lock()
		r.ok = append(r.ok, accepted{env.ID, env.Topic, env.Payload})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *erp) accepted() []accepted {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ok)
}

func (r *erp) setFail(f func(topic string, attempt int) int) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// Two instances on one Redis deliver each message to the receiver once,
// signed, in order per topic; a failing first attempt is retried, a
// message the receiver keeps refusing becomes a dead letter that is listed
// and replayed through the HTTP API, and when the delivering instance is
// closed the other takes over without losing or doubling a message.
func TestWebhooksAcrossInstances(t *testing.T) {
	testenv.Long(t, "webhooks on two instances")
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	rcv := newERP(t)
	rcv.delay = 20 * time.Millisecond
	rcv.setFail(func(topic string, attempt int) int {
		switch {
		case strings.HasSuffix(topic, "/flaky/status") && attempt == 1:
			return http.StatusServiceUnavailable
		case strings.HasSuffix(topic, "/broken/status"):
			return http.StatusInternalServerError
		}
		return 0
	})
	two := 2
	hooks := func(c *config.Config) {
		c.MQTT.IngestLease = config.Duration(time.Second)
		c.Webhooks = []config.Webhook{{
			Name: "erp", Filters: []string{prefix + "/orders/+/status"}, URL: rcv.URL, Secret: hookSecret,
			Timeout: config.Duration(time.Second), Retries: &two, ClaimIdle: config.Duration(2 * time.Second),
			BackoffMin: config.Duration(50 * time.Millisecond), BackoffMax: config.Duration(200 * time.Millisecond),
		}}
	}
	args := []string{"--mqtt-url", mq, "--redis-url", testenv.RedisURL(t), "--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := startWith(t, hooks, append(args, "--instance-id", "a")...)
	b := startWith(t, hooks, append(args, "--instance-id", "b")...)
	a.waitReady(t)
	b.waitReady(t)

	publish := func(topic, payload string) {
		testenv.Publish(t, mq, bridge.Message{Topic: prefix + "/" + topic, Payload: []byte(payload), QoS: 1})
	}
	var sent []string // topic|payload
	for i := range 30 {
		topic := fmt.Sprintf("orders/%d/status", i%3)
		publish(topic, fmt.Sprint("p", i))
		sent = append(sent, prefix+"/"+topic+"|p"+fmt.Sprint(i))
	}
	publish("orders/flaky/status", "flaky")
	publish("orders/broken/status", "broken")
	publish("other/topic", "not for the webhook")
	sent = append(sent, prefix+"/orders/flaky/status|flaky")

	// The dead letter, through either instance's API (checked against the
	// spec).
	var deadID string
	eventually(t, "the dead letter", func() string {
		resp, body := b.do(t, "GET", "/v1/webhooks/erp/dead-letters", nil)
		if resp.StatusCode != 200 {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		list := decode[struct {
			DeadLetters []struct {
				ID       string
				Attempts int
				Error    string
				Message  struct{ Topic, Payload string }
			} `json:"dead_letters"`
		}](t, body)
		if len(list.DeadLetters) != 1 {
			return string(body)
		}
		dl := list.DeadLetters[0]
		if dl.Attempts != 3 || dl.Error != "HTTP 500" || dl.Message.Payload != "broken" {
			t.Fatalf("dead letter %s", body)
		}
		deadID = dl.ID
		return ""
	})

	// Kill the instance that delivers while messages are on their way.
	holder, other := a, b
	if st, _ := b.Webhooks.Stats("erp"); st.Holding {
		holder, other = b, a
	}
	for i := 30; i < 60; i++ {
		topic := fmt.Sprintf("orders/%d/status", i%3)
		publish(topic, fmt.Sprint("p", i))
		sent = append(sent, prefix+"/"+topic+"|p"+fmt.Sprint(i))
	}
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := holder.Close(ctx); err != nil {
		t.Fatalf("closing the delivering instance: %v", err)
	}
	cancel()
	for i := 60; i < 70; i++ {
		topic := fmt.Sprintf("orders/%d/status", i%3)
		publish(topic, fmt.Sprint("p", i))
		sent = append(sent, prefix+"/"+topic+"|p"+fmt.Sprint(i))
	}

	// The receiver is fixed; replay the dead letter on the survivor.
	rcv.setFail(nil)
	resp, body := other.do(t, "POST", "/v1/webhooks/erp/dead-letters/"+deadID+"/replay", nil)
	if resp.StatusCode != 200 || string(body) != `{"replayed":1}` {
		t.Fatalf("replay: %d %s", resp.StatusCode, body)
	}
	sent = append(sent, prefix+"/orders/broken/status|broken")

	eventually(t, "every message accepted", func() string {
		if n := len(rcv.accepted()); n < len(sent) {
			return fmt.Sprintf("%d of %d accepted", n, len(sent))
		}
		return ""
	})
	time.Sleep(300 * time.Millisecond) // nothing more comes
	got := rcv.accepted()
	var gotKeys []string
	ids := map[string]bool{}
	last := map[string]string{}
	for _, d := range got {
		if ids[d.id] {
			t.Errorf("message %s (%s) accepted twice", d.id, d.topic)
		}
		ids[d.id] = true
		gotKeys = append(gotKeys, d.topic+"|"+d.payload)
		if prev, ok := last[d.topic]; ok && d.topic != prefix+"/orders/broken/status" {
			if c, _ := bridge.CompareIDs(prev, d.id); c >= 0 {
				t.Errorf("topic %s: %s accepted after %s", d.topic, d.id, prev)
			}
		}
		last[d.topic] = d.id
	}
	slices.Sort(gotKeys)
	slices.Sort(sent)
	if !slices.Equal(gotKeys, sent) {
		t.Fatalf("accepted %d messages, sent %d:\naccepted %q\nsent     %q", len(gotKeys), len(sent), gotKeys, sent)
	}
	hs, _ := holder.Webhooks.Stats("erp")
	os, _ := other.Webhooks.Stats("erp")
	t.Logf("delivered by the closed instance %d, by the survivor %d", hs.Delivered, os.Delivered)
	if !os.Holding || os.Delivered < 10 {
		t.Fatalf("the survivor did not take over: %+v", os)
	}
	resp, body = other.do(t, "GET", "/v1/webhooks/erp/dead-letters", nil)
	if resp.StatusCode != 200 || string(body) != `{"dead_letters":[]}` {
		t.Fatalf("dead letters after the replay: %s", body)
	}
}
