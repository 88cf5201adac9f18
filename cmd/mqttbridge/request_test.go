package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// pump is a device written against MQTT v5 request/response: it answers
// every command on its response topic with its correlation data.
func pump(req bridge.Message) (bridge.Message, bool) {
	return bridge.Message{Payload: append([]byte("ok:"), req.Payload...), Properties: bridge.Properties{
		ContentType: "text/x-pump", UserProperties: []bridge.UserProperty{{Key: "status", Value: "done"}}}}, true
}

// Requests over HTTP and WebSocket reach a real MQTT v5 device through the
// shared Mosquitto and come back with its reply, through either of two
// instances on one Redis; a silent device gives 504. Replies are neither
// recorded nor streamed, even though the bridged filter covers them.
func TestRequestResponse(t *testing.T) {
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	args := []string{"--mqtt-url", mq, "--redis-url", testenv.RedisURL(t), "--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	replyUnder := func(c *config.Config) {
		c.Request.ReplyPrefix = prefix + "/reply/"
		c.MQTT.IngestLease = config.Duration(time.Second)
	}
	a := startWith(t, replyUnder, append(args, "--instance-id", "first")...)
	b := startWith(t, replyUnder, append(args, "--instance-id", "second")...)
	a.waitReady(t)
	b.waitReady(t)
	testenv.StartDevice(t, mq, prefix+"/devices/+/cmd", pump)
	silent := testenv.StartDevice(t, mq, prefix+"/silent/cmd", func(bridge.Message) (bridge.Message, bool) { return bridge.Message{}, false })
	watch, _ := a.wsConnect(t, "filter="+prefix+"/reply/%23")

	t.Run("raw", func(t *testing.T) {
		resp, body := a.do(t, "POST", "/v1/request/"+prefix+"/devices/pump7/cmd?timeout=5", []byte(`{"speed":3}`),
			"Content-Type", "application/json", "MQTT-User-Property", "by=test")
		if resp.StatusCode != 200 || string(body) != `ok:{"speed":3}` {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		h := resp.Header
		if h.Get("Content-Type") != "text/x-pump" || h.Get("MQTT-User-Property") != "status=done" ||
			!strings.HasPrefix(h.Get("MQTT-Topic"), prefix+"/reply/first/") || h.Get("MQTT-Correlation-Data") == "" {
			t.Fatalf("headers %v", h)
		}
	})
	t.Run("JSON through the other instance", func(t *testing.T) {
		resp, body := b.do(t, "POST", "/v1/request/"+prefix+"/devices/pump8/cmd", []byte("hi"), "Accept", "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		reply := decode[map[string]any](t, body)
		if reply["payload"] != "ok:hi" || reply["id"] != nil || !strings.HasPrefix(reply["topic"].(string), prefix+"/reply/second/") {
			t.Fatalf("reply %s", body)
		}
	})
	t.Run("many at once over both instances", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			in := []*instance{a, b}[i%2]
			wg.Go(func() {
				resp, err := http.Post(fmt.Sprintf("%s/v1/request/%s/devices/%d/cmd?timeout=10", in.base, prefix, i), "text/plain", strings.NewReader(strconv.Itoa(i)))
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := "ok:" + strconv.Itoa(i); resp.StatusCode != 200 || string(body) != want {
					errs <- fmt.Errorf("request %d: %d %q, want %q", i, resp.StatusCode, body, want)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("silent device", func(t *testing.T) {
		began := time.Now()
		resp, body := a.do(t, "POST", "/v1/request/"+prefix+"/silent/cmd?timeout=0.5", []byte("anyone?"))
		if resp.StatusCode != 504 || !strings.Contains(string(body), `"timeout"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if d := time.Since(began); d < 500*time.Millisecond || d > 3*time.Second {
			t.Fatalf("504 after %v", d)
		}
		if silent.Requests.Load() != 1 {
			t.Fatalf("the silent device got %d requests, want 1", silent.Requests.Load())
		}
	})
	t.Run("WebSocket", func(t *testing.T) {
		c, _ := b.wsConnect(t, "")
		c.send(fmt.Sprintf(`{"type":"request","id":"slow","topic":%q,"payload":"x","timeout":1}`, prefix+"/silent/cmd"))
		ok := c.request(fmt.Sprintf(`{"type":"request","id":"r1","topic":%q,"payload_json":{"n":9},"timeout":5}`, prefix+"/devices/9/cmd"), "r1")
		result, _ := ok["result"].(map[string]any)
		if ok["type"] != "ok" || result["payload"] != `ok:{"n":9}` {
			t.Fatalf("answer %v", ok)
		}
		// The silent one answers later, without holding up the other.
		if f, _ := c.until("error", "slow"); f["code"] != "timeout" {
			t.Fatalf("silent: %v", f)
		}
		if f := c.request(`{"type":"request","id":"bad","topic":"x","payload":"x","properties":{"response_topic":"mine"}}`, "bad"); f["code"] != "invalid_request" {
			t.Fatalf("own response topic: %v", f)
		}
	})

	// Nothing under the reply prefix was recorded or streamed, although
	// the instances bridge prefix/#; a normal message still is.
	testenv.Publish(t, mq, bridge.Message{Topic: prefix + "/reply/first/control", Payload: []byte("c"), QoS: 1})
	testenv.Publish(t, mq, bridge.Message{Topic: prefix + "/devices/ctl", Payload: []byte("control"), QoS: 1, Retain: true})
	t.Cleanup(func() { clearRetained(t, mq, prefix+"/#") })
	eventually(t, "the control message", func() string {
		resp, body := b.do(t, "GET", "/v1/topics/"+prefix+"/devices/ctl", nil)
		if resp.StatusCode != 200 {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		return ""
	})
	for _, in := range []*instance{a, b} {
		resp, body := in.do(t, "GET", "/v1/messages?filter="+prefix+"/reply/%23", nil)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"messages":[]`)) {
			t.Fatalf("replies were recorded: %s", body)
		}
	}
	if f, err := watch.tryRead(300 * time.Millisecond); err == nil {
		t.Fatalf("a reply was streamed: %v", f)
	}
	st := a.Bridge.RequestStats()
	if st.Replied == 0 || st.TimedOut != 1 {
		t.Fatalf("stats of the first instance %+v", st)
	}
	// The control message under the first instance's reply prefix matches
	// no request: counted, not an error.
	eventually(t, "the foreign reply counted", func() string {
		if st := a.Bridge.RequestStats(); st.Foreign != 1 {
			return fmt.Sprintf("stats %+v", st)
		}
		return ""
	})
}

// A device scripted with mosquitto_sub and mosquitto_pub answers the
// response topic without echoing the correlation data, as devices built
// for mosquitto_rr do; the bridge takes that reply too.
func TestRequestShellDevice(t *testing.T) {
	prefix := testenv.Prefix(t)
	mq := testenv.MosquittoURL(t)
	in := start(t, "--mqtt-url", mq, "--topics", prefix+"/#")
	in.waitReady(t)
	port := strconv.Itoa(brokerPort(t, mq))
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-t", prefix+"/shell/cmd", "-C", "1", "-F", "%R", "-W", "15")
	var out bytes.Buffer
	sub.Stdout = &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // subscribed
	type result struct {
		status int
		body   string
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post(in.base+"/v1/request/"+prefix+"/shell/cmd?timeout=10", "text/plain", strings.NewReader("ping"))
		if err != nil {
			res <- result{0, err.Error()}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(body)}
	}()
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v (%s)", err, out.String())
	}
	responseTopic := strings.TrimSpace(out.String())
	if !strings.HasPrefix(responseTopic, "mqttbridge/reply/") {
		t.Fatalf("response topic %q", responseTopic)
	}
	mosquittoPub(t, brokerPort(t, mq), "-t", responseTopic, "-m", "pong")
	if r := <-res; r.status != 200 || r.body != "pong" {
		t.Fatalf("reply %d %q", r.status, r.body)
	}
}

// The reply subscription comes back after the broker restarts: readiness
// waits for it, and requests work again.
func TestRequestAfterBrokerRestart(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	in := startWith(t, func(c *config.Config) { c.MQTT.ReconnectMax = config.Duration(300 * time.Millisecond) }, "--mqtt-url", mq.URL)
	in.waitReady(t)
	resp, body := in.do(t, "GET", "/readyz", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}
	mq.Stop()
	eventually(t, "readyz after broker stop", func() string {
		resp, out := in.do(t, "GET", "/readyz", nil)
		if resp.StatusCode != 503 {
			return fmt.Sprintf("%d %s", resp.StatusCode, out)
		}
		return ""
	})
	if resp, out := in.do(t, "POST", "/v1/request/dev/cmd", []byte("x")); resp.StatusCode != 503 {
		t.Fatalf("request while the broker is down: %d %s", resp.StatusCode, out)
	}
	mq.Start()
	in.waitReady(t)
	testenv.StartDevice(t, mq.URL, "dev/cmd", pump)
	resp, body = in.do(t, "POST", "/v1/request/dev/cmd?timeout=5", []byte("again"))
	if resp.StatusCode != 200 || string(body) != "ok:again" {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
}
