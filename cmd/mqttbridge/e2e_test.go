package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// The no-configuration default: embedded broker, memory store. A device
// publishes with the real mosquitto_pub; HTTP reads it and publishes back.
func TestEmbeddedDefaults(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0")
	in.waitReady(t)
	port := in.Embedded.Addr().(*net.TCPAddr).Port

	mosquittoPub(t, port, "-t", "demo/temp", "-r", "-m", "21.5")
	eventually(t, "GET demo/temp", func() string {
		resp, body := in.do(t, "GET", "/v1/topics/demo/temp", nil)
		if resp.StatusCode != 200 || string(body) != "21.5" {
			return fmt.Sprintf("%d %q", resp.StatusCode, body)
		}
		return ""
	})

	sub := testenv.Subscribe(t, in.Embedded.URL(), "demo/lamp")
	resp, body := in.do(t, "POST", "/v1/topics/demo/lamp", []byte("on"))
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	got := receive(t, sub)
	if string(got.Payload) != "on" || got.QoS != 1 {
		t.Fatalf("subscriber got %+v", got)
	}
}

// Against the shared Mosquitto and Redis: properties and binary payloads
// arrive intact, retained values are readable, an empty retained payload
// deletes, and a second instance on the same Redis serves the same values.
func TestMosquittoAndRedis(t *testing.T) {
	prefix := testenv.Prefix(t)
	args := []string{"--mqtt-url", testenv.MosquittoURL(t), "--redis-url", testenv.RedisURL(t),
		"--redis-key-prefix", prefix + ":", "--topics", prefix + "/#"}
	a := start(t, args...)
	b := start(t, append(args, "--instance-id", "second")...)
	a.waitReady(t)
	b.waitReady(t)
	sub := testenv.Subscribe(t, testenv.MosquittoURL(t), prefix+"/#")
	t.Cleanup(func() { clearRetained(t, testenv.MosquittoURL(t), prefix+"/#") })

	t.Run("raw publish carries properties", func(t *testing.T) {
		binary := make([]byte, 256)
		for i := range binary {
			binary[i] = byte(i)
		}
		resp, body := a.do(t, "POST", "/v1/topics/"+prefix+"/raw?qos=2&retain=true&expiry=300", binary,
			"Content-Type", "application/x-thing",
			"MQTT-Payload-Format", "0",
			"MQTT-Response-Topic", prefix+"/reply",
			"MQTT-Correlation-Data", base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255}),
			"MQTT-User-Property", "b=2,a=1",
			"MQTT-User-Property", "b=3,sp%20ace=%C3%A9%2C")
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"reason_code":0`) {
			t.Fatalf("POST: %d %s", resp.StatusCode, body)
		}
		got := receive(t, sub)
		want := []bridge.UserProperty{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}, {Key: "sp ace", Value: "é,"}}
		p := got.Properties
		switch {
		case got.Topic != prefix+"/raw" || !bytes.Equal(got.Payload, binary) || got.QoS != 2 || !got.Retain:
			t.Fatalf("message %q qos %d retain %v payload %x", got.Topic, got.QoS, got.Retain, got.Payload)
		case p.ContentType != "application/x-thing" || p.PayloadFormat == nil || *p.PayloadFormat != 0:
			t.Fatalf("content type / format: %+v", p)
		case p.MessageExpiry == nil || *p.MessageExpiry > 300 || *p.MessageExpiry < 290:
			t.Fatalf("expiry: %v", p.MessageExpiry)
		case p.ResponseTopic != prefix+"/reply" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2, 255}):
			t.Fatalf("response topic / correlation: %+v", p)
		case fmt.Sprint(p.UserProperties) != fmt.Sprint(want):
			t.Fatalf("user properties %v, want %v", p.UserProperties, want)
		}

		// Both instances serve it from Redis, byte for byte, with metadata.
		for _, in := range []*instance{a, b} {
			eventually(t, "GET raw", func() string {
				resp, body := in.do(t, "GET", "/v1/topics/"+prefix+"/raw", nil)
				if resp.StatusCode != 200 || !bytes.Equal(body, binary) {
					return fmt.Sprintf("%d %x", resp.StatusCode, body)
				}
				if resp.Header.Get("Content-Type") != "application/x-thing" || resp.Header.Get("MQTT-Retain") != "true" ||
					len(resp.Header.Values("MQTT-User-Property")) != 4 {
					return fmt.Sprintf("headers %v", resp.Header)
				}
				etag := resp.Header.Get("ETag")
				resp, _ = in.do(t, "GET", "/v1/topics/"+prefix+"/raw", nil, "If-None-Match", etag)
				if resp.StatusCode != 304 {
					return fmt.Sprintf("If-None-Match %s: %d", etag, resp.StatusCode)
				}
				return ""
			})
		}
	})

	t.Run("JSON publish and envelope", func(t *testing.T) {
		body := fmt.Sprintf(`{"topic":%q,"payload_json":{"on": true},"qos":1,"retain":true,
			"properties":{"user_properties":[{"key":"k","value":"v"}],"correlation_data_base64":"/wA="}}`, prefix+"/json")
		resp, out := a.do(t, "POST", "/v1/publish", []byte(body), "Content-Type", "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("POST /v1/publish: %d %s", resp.StatusCode, out)
		}
		got := receive(t, sub)
		if string(got.Payload) != `{"on":true}` || got.Properties.ContentType != "application/json" {
			t.Fatalf("got %q %+v", got.Payload, got.Properties)
		}
		eventually(t, "GET json envelope", func() string {
			resp, out := b.do(t, "GET", "/v1/topics/"+prefix+"/json", nil, "Accept", "application/json")
			if resp.StatusCode != 200 {
				return fmt.Sprintf("%d %s", resp.StatusCode, out)
			}
			env := decode[map[string]any](t, out)
			props, _ := env["properties"].(map[string]any)
			if env["payload"] != `{"on":true}` || env["retain"] != true || props["correlation_data_base64"] != "/wA=" {
				return string(out)
			}
			return ""
		})
	})

	t.Run("device retained publish, list, and delete", func(t *testing.T) {
		port := brokerPort(t, testenv.MosquittoURL(t))
		mosquittoPub(t, port, "-t", prefix+"/dev/1/temp", "-r", "-m", "21.5")
		mosquittoPub(t, port, "-t", prefix+"/dev/2/temp", "-r", "-m", "19")
		mosquittoPub(t, port, "-t", prefix+"/dev/2/hum", "-r", "-m", "40")
		eventually(t, "list", func() string {
			resp, out := b.do(t, "GET", "/v1/messages?limit=1&filter="+url.QueryEscape(prefix+"/dev/+/temp"), nil)
			if resp.StatusCode != 200 {
				return fmt.Sprintf("%d %s", resp.StatusCode, out)
			}
			page := decode[struct {
				Messages []struct{ Topic, Payload string }
				Next     string `json:"next_cursor"`
			}](t, out)
			if len(page.Messages) != 1 || page.Messages[0].Payload != "21.5" || page.Next == "" {
				return string(out)
			}
			resp, out = b.do(t, "GET", "/v1/messages?limit=1&filter="+url.QueryEscape(prefix+"/dev/+/temp")+"&cursor="+page.Next, nil)
			if !strings.Contains(string(out), `"payload":"19"`) {
				return string(out)
			}
			return ""
		})

		// An empty retained publish from a device deletes the value.
		mosquittoPub(t, port, "-t", prefix+"/dev/1/temp", "-r", "-n")
		eventually(t, "deleted by empty retained", func() string {
			resp, out := a.do(t, "GET", "/v1/topics/"+prefix+"/dev/1/temp", nil)
			if resp.StatusCode != 404 {
				return fmt.Sprintf("%d %s", resp.StatusCode, out)
			}
			return ""
		})

		// DELETE clears the retained message on the broker too.
		resp, out := a.do(t, "DELETE", "/v1/topics/"+prefix+"/dev/2/temp", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, out)
		}
		if resp, out := b.do(t, "GET", "/v1/topics/"+prefix+"/dev/2/temp", nil); resp.StatusCode != 404 {
			t.Fatalf("GET after DELETE: %d %s", resp.StatusCode, out)
		}
		if out, err := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-V", "mqttv5",
			"-t", prefix+"/dev/2/temp", "-W", "1", "--retained-only").CombinedOutput(); len(bytes.TrimSpace(bytes.ReplaceAll(out, []byte("Timed out"), nil))) != 0 {
			t.Fatalf("the broker still has a retained message: %q (%v)", out, err)
		}
	})
}

// Every invalid topic is refused with 400 and nothing reaches the broker.
func TestInvalidTopicsPublishNothing(t *testing.T) {
	prefix := testenv.Prefix(t)
	in := start(t, "--mqtt-url", testenv.MosquittoURL(t), "--topics", prefix+"/#")
	in.waitReady(t)
	sub := testenv.Subscribe(t, testenv.MosquittoURL(t), "#")

	long := prefix + "/" + strings.Repeat("x", 65536-len(prefix))
	cases := []struct{ name, path, json string }{
		{"plus", "/v1/topics/" + prefix + "/a%2Bb", ""},
		{"hash", "/v1/topics/" + prefix + "/%23", ""},
		{"null", "/v1/topics/" + prefix + "/a%00b", ""},
		{"bad utf8", "/v1/topics/" + prefix + "/%FF", ""},
		{"empty", "/v1/topics/", ""},
		{"json plus", "", prefix + "/+"},
		{"json hash", "", prefix + "/#"},
		{"json null", "", prefix + "/a\x00"},
		{"json too long", "", long},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var resp *http.Response
			var out []byte
			if c.path != "" {
				resp, out = in.doBad(t, "POST", c.path, []byte("x"))
			} else {
				body, _ := json.Marshal(map[string]string{"topic": c.json, "payload": "x"})
				resp, out = in.doBad(t, "POST", "/v1/publish", body, "Content-Type", "application/json")
			}
			if resp.StatusCode != 400 || !strings.Contains(string(out), `"invalid_topic"`) {
				t.Fatalf("%d %.300s", resp.StatusCode, out)
			}
		})
	}
	// The first message the broker delivers is the sentinel published last.
	resp, out := in.do(t, "POST", "/v1/topics/"+prefix+"/sentinel", []byte("s"))
	if resp.StatusCode != 200 {
		t.Fatalf("sentinel: %d %s", resp.StatusCode, out)
	}
	for {
		got := receive(t, sub)
		if strings.HasPrefix(got.Topic, prefix) {
			if got.Topic != prefix+"/sentinel" {
				t.Fatalf("an invalid publish reached the broker: %q", got.Topic)
			}
			break
		}
	}
}

// Oversize payloads are refused with 413 before touching the connection, and
// the next publish still works. So are bodies over the broker's maximum
// packet size.
func TestOversize(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_packet_size 4096"})
	in := start(t, "--mqtt-url", mq.URL)
	in.waitReady(t)
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	if resp, out := in.do(t, "POST", "/v1/topics/big", big); resp.StatusCode != 413 {
		t.Fatalf("over max_payload: %d %s", resp.StatusCode, out)
	}
	if resp, out := in.do(t, "POST", "/v1/topics/big", bytes.Repeat([]byte("x"), 5000)); resp.StatusCode != 413 {
		t.Fatalf("over the broker's maximum packet size: %d %s", resp.StatusCode, out)
	}
	if resp, out := in.do(t, "POST", "/v1/topics/small", []byte("ok")); resp.StatusCode != 200 {
		t.Fatalf("next publish: %d %s", resp.StatusCode, out)
	}
}

// A publish the broker's ACL denies is a 403 with the reason code, never 2xx.
func TestBrokerDenies(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{ACL: "topic readwrite open/#\ntopic read locked/#\n"})
	in := start(t, "--mqtt-url", mq.URL, "--topics", "open/#,locked/#")
	in.waitReady(t)
	resp, out := in.do(t, "POST", "/v1/topics/locked/door", []byte("open"))
	if resp.StatusCode != 403 || !strings.Contains(string(out), `"reason_code":135`) {
		t.Fatalf("denied publish: %d %s", resp.StatusCode, out)
	}
	if resp, out := in.do(t, "POST", "/v1/topics/open/door", []byte("x")); resp.StatusCode != 200 {
		t.Fatalf("allowed publish: %d %s", resp.StatusCode, out)
	}
}

// While the broker is down a publish fails fast with 503 and /readyz says
// why; when it comes back the bridge reconnects and resubscribes by itself.
func TestBrokerRestart(t *testing.T) {
	mq := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	in := start(t, "--mqtt-url", mq.URL)
	in.waitReady(t)

	mq.Stop()
	eventually(t, "readyz after broker stop", func() string {
		resp, out := in.do(t, "GET", "/readyz", nil)
		if resp.StatusCode != 503 || !strings.Contains(string(out), "not connected") {
			return fmt.Sprintf("%d %s", resp.StatusCode, out)
		}
		return ""
	})
	began := time.Now()
	resp, out := in.do(t, "POST", "/v1/topics/x", []byte("y"))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("publish while down: %d %s", resp.StatusCode, out)
	}
	t.Logf("503 after %v", time.Since(began))

	mq.Start()
	in.waitReady(t)
	mosquittoPub(t, mq.Port, "-t", "after/restart", "-r", "-m", "back")
	eventually(t, "message after restart", func() string {
		resp, out := in.do(t, "GET", "/v1/topics/after/restart", nil)
		if resp.StatusCode != 200 || string(out) != "back" {
			return fmt.Sprintf("%d %s", resp.StatusCode, out)
		}
		return ""
	})
}

// Invalid configuration stops start-up with exit code 2 and names the key.
func TestInvalidConfigExits2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mqtt-url", "http://x"}, "mqtt.url"},
		{[]string{"--topics", "a/#/b"}, "mqtt.topics"},
		{[]string{"--nonsense"}, "nonsense"},
	} {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "MQTTBRIDGE_TEST_RUN_MAIN=1")
		out, err := cmd.CombinedOutput()
		exit, ok := err.(*exec.ExitError)
		if !ok || exit.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: err %v, output %s", c.args, err, out)
		}
	}
}

func receive(tb testing.TB, ch <-chan bridge.Message) bridge.Message {
	tb.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		tb.Fatal("no message within 10s")
	}
	return bridge.Message{}
}

func brokerPort(tb testing.TB, raw string) int {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// clearRetained removes every retained message under filter from a shared
// broker, with the real mosquitto_sub.
func clearRetained(tb testing.TB, brokerURL, filter string) {
	tb.Helper()
	out, err := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", strconv.Itoa(brokerPort(tb, brokerURL)), "-V", "mqttv5",
		"-t", filter, "--retained-only", "--remove-retained", "-W", "1").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Timed out") {
		tb.Logf("clearing retained messages under %s: %v %s", filter, err, out)
	}
}

var _ = context.Background

// Several named brokers, from a YAML file: each publish goes to the broker
// that owns its topic, each broker's messages become last values, and a
// topic no broker owns is refused.
func TestSeveralBrokers(t *testing.T) {
	a := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	b := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	file := t.TempDir() + "/mqttbridge.yaml"
	yaml := fmt.Sprintf("mqtt:\n  brokers:\n    - {name: alpha, url: %q, topics: [\"a/#\"]}\n    - {name: beta, url: %q, topics: [\"b/#\", \"shared/b/+\"]}\n", a.URL, b.URL)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	in := start(t, "--config", file)
	in.waitReady(t)
	subA := testenv.Subscribe(t, a.URL, "#")
	subB := testenv.Subscribe(t, b.URL, "#")

	for _, c := range []struct {
		topic string
		sub   <-chan bridge.Message
	}{{"a/1", subA}, {"b/1", subB}, {"shared/b/x", subB}} {
		if resp, out := in.do(t, "POST", "/v1/topics/"+c.topic, []byte(c.topic)); resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", c.topic, resp.StatusCode, out)
		}
		if got := receive(t, c.sub); got.Topic != c.topic {
			t.Fatalf("broker got %q, want %q", got.Topic, c.topic)
		}
	}
	select {
	case m := <-subA:
		t.Fatalf("broker alpha got %q, which beta owns", m.Topic)
	case m := <-subB:
		t.Fatalf("broker beta got a second message %q", m.Topic)
	case <-time.After(200 * time.Millisecond):
	}

	if resp, out := in.do(t, "POST", "/v1/topics/c/1", []byte("x")); resp.StatusCode != 404 || !strings.Contains(string(out), "topic_not_bridged") {
		t.Fatalf("unbridged topic: %d %s", resp.StatusCode, out)
	}
	mosquittoPub(t, b.Port, "-t", "b/dev", "-r", "-m", "from beta")
	eventually(t, "GET b/dev", func() string {
		resp, out := in.do(t, "GET", "/v1/topics/b/dev", nil)
		if resp.StatusCode != 200 || string(out) != "from beta" {
			return fmt.Sprintf("%d %s", resp.StatusCode, out)
		}
		return ""
	})
}
