package main

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

// With the embedded broker the bridge publishes and subscribes through
// mochi's inline client: no socket of its own on the broker, while
// devices on the TCP listener and HTTP clients still see each other's
// messages with their QoS, retain flag and properties, the stream and GET
// serve them, and requests get their replies.
func TestEmbeddedInline(t *testing.T) {
	in := start(t, "--embedded-mqtt-addr", "127.0.0.1:0", "--topics", "demo/#,other/+")
	in.waitReady(t)
	url := in.Embedded.URL()
	port := in.Embedded.Addr().(*net.TCPAddr).Port

	// The only client on the broker is the one watching: the bridge holds
	// no connection (over TCP it held two, publish and ingest).
	clients := testenv.Subscribe(t, url, "$SYS/broker/clients/connected")
	deadline := time.After(10 * time.Second)
	for seen := ""; seen != "1"; {
		select {
		case m := <-clients:
			seen = string(m.Payload)
		case <-deadline:
			t.Fatalf("connected clients: still %q, want 1 (the test's own)", seen)
		}
	}

	device := testenv.Subscribe(t, url, "demo/#")
	ws, _ := in.wsConnect(t, "filter=demo/%23")

	// HTTP → broker → device, the stream and GET: QoS 1 retained with
	// properties; 200 only once the broker has it.
	resp, body := in.do(t, "POST", "/v1/topics/demo/lamp?qos=1&retain=true&expiry=300", []byte("on"),
		"Content-Type", "text/x-lamp", "MQTT-User-Property", "by=http")
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	got := testenv.NextMessage(t, device, 10*time.Second)
	p := got.Properties
	if got.Topic != "demo/lamp" || string(got.Payload) != "on" || got.QoS != 1 || !got.Retain ||
		p.ContentType != "text/x-lamp" || fmt.Sprint(p.UserProperties) != "[{by http}]" ||
		p.MessageExpiry == nil || *p.MessageExpiry > 300 || *p.MessageExpiry < 290 {
		t.Fatalf("device got %s", testenv.String(got))
	}
	if f := ws.read(); f["type"] != "message" || f["topic"] != "demo/lamp" || f["payload"] != "on" {
		t.Fatalf("stream got %v", f)
	}
	resp, body = in.do(t, "GET", "/v1/topics/demo/lamp", nil)
	if resp.StatusCode != 200 || string(body) != "on" || resp.Header.Get("MQTT-Retain") != "true" ||
		resp.Header.Get("MQTT-QoS") != "1" || resp.Header.Get("Content-Type") != "text/x-lamp" {
		t.Fatalf("GET: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	// A device that subscribes later gets it as retained.
	late := testenv.Subscribe(t, url, "demo/lamp")
	if m := testenv.NextMessage(t, late, 10*time.Second); string(m.Payload) != "on" || !m.Retain {
		t.Fatalf("late subscriber got %s", testenv.String(m))
	}

	// QoS 0 and QoS 2 keep their QoS on the way to the device.
	for _, qos := range []string{"0", "2"} {
		resp, body = in.do(t, "POST", "/v1/topics/demo/q?qos="+qos, []byte(qos))
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST qos %s: %d %s", qos, resp.StatusCode, body)
		}
		if m := testenv.NextMessage(t, device, 10*time.Second); string(m.Payload) != qos || fmt.Sprint(m.QoS) != qos || m.Retain {
			t.Fatalf("device got %s for qos %s", testenv.String(m), qos)
		}
		if f := ws.read(); f["topic"] != "demo/q" || f["payload"] != qos {
			t.Fatalf("stream got %v", f)
		}
	}

	// Device → broker → the bridge: a QoS 2 retained publish with
	// properties, recorded at the subscription's QoS 1, as over TCP.
	testenv.Publish(t, url, bridge.Message{Topic: "demo/temp", Payload: []byte("21.5"), QoS: 2, Retain: true,
		Properties: bridge.Properties{ContentType: "text/plain", UserProperties: []bridge.UserProperty{{Key: "unit", Value: "C"}}}})
	if f := ws.read(); f["topic"] != "demo/temp" || f["payload"] != "21.5" {
		t.Fatalf("stream got %v", f)
	}
	testenv.NextMessage(t, device, 10*time.Second) // the device's own
	resp, body = in.do(t, "GET", "/v1/topics/demo/temp", nil)
	if resp.StatusCode != 200 || string(body) != "21.5" || resp.Header.Get("MQTT-QoS") != "1" ||
		resp.Header.Get("MQTT-Retain") != "true" || resp.Header.Get("MQTT-User-Property") != "unit=C" {
		t.Fatalf("GET: %d %s %v", resp.StatusCode, body, resp.Header)
	}

	// "demo/#" covers "demo" itself; "other/+" does not cover "other/a/b";
	// the broker's own $SYS topics are never ingested.
	mosquittoPub(t, port, "-t", "demo", "-m", "parent")
	mosquittoPub(t, port, "-t", "other/a/b", "-m", "deep")
	mosquittoPub(t, port, "-t", "other/a", "-m", "one")
	eventually(t, "GET other/a", func() string {
		if resp, body := in.do(t, "GET", "/v1/topics/other/a", nil); resp.StatusCode != 200 || string(body) != "one" {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		return ""
	})
	if resp, body := in.do(t, "GET", "/v1/topics/demo", nil); resp.StatusCode != 200 || string(body) != "parent" {
		t.Fatalf("GET demo: %d %s", resp.StatusCode, body)
	}
	if resp, body := in.doBad(t, "GET", "/v1/topics/other/a/b", nil); resp.StatusCode != 404 {
		t.Fatalf("GET other/a/b: %d %s", resp.StatusCode, body)
	}

	// An empty retained publish deletes, on the broker and in the store.
	resp, body = in.do(t, "POST", "/v1/topics/demo/lamp?qos=1&retain=true", []byte{})
	if resp.StatusCode != 200 {
		t.Fatalf("POST delete: %d %s", resp.StatusCode, body)
	}
	eventually(t, "GET after delete", func() string {
		if resp, body := in.doBad(t, "GET", "/v1/topics/demo/lamp", nil); resp.StatusCode != 404 {
			return fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		return ""
	})
	after := testenv.Subscribe(t, url, "demo/lamp")
	select {
	case m := <-after:
		t.Fatalf("a deleted retained message was delivered: %s", testenv.String(m))
	case <-time.After(300 * time.Millisecond):
	}

	// Request/response: the reply from a device on TCP reaches the waiting
	// request through the inline reply subscription.
	testenv.StartDevice(t, url, "other/cmd", func(req bridge.Message) (bridge.Message, bool) {
		return bridge.Message{Payload: append([]byte("ok:"), req.Payload...)}, true
	})
	resp, body = in.do(t, "POST", "/v1/request/other/cmd?timeout=5", []byte("go"))
	if resp.StatusCode != 200 || string(body) != "ok:go" {
		t.Fatalf("request: %d %s", resp.StatusCode, body)
	}

}
