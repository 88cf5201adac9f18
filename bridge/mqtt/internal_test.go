package mqtt

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

func TestPublishPacketSizeMatchesEncoding(t *testing.T) {
	pf, exp := byte(1), uint32(60)
	props := bridge.Properties{
		ContentType: "text/plain", PayloadFormat: &pf, MessageExpiry: &exp, ResponseTopic: "r/t",
		CorrelationData: []byte{1, 2, 3}, UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}},
	}
	// Payload sizes around the Variable Byte Integer boundaries of the
	// remaining length (127/128, 16383/16384, 2097151/2097152).
	for _, n := range []int{0, 1, 100, 110, 111, 112, 127, 128, 16300, 16360, 16383, 16384, 2097100, 2097152} {
		for _, qos := range []byte{0, 1, 2} {
			for _, p := range []bridge.Properties{{}, props} {
				msg := bridge.Message{Topic: "a/b", Payload: bytes.Repeat([]byte{7}, n), QoS: qos, Retain: true, Properties: p}
				pub := toPahoPublish(msg)
				var buf bytes.Buffer
				if _, err := pub.Packet().WriteTo(&buf); err != nil {
					t.Fatal(err)
				}
				if got := publishPacketSize(pub); got != buf.Len() {
					t.Fatalf("payload %d qos %d: computed %d bytes, encoded %d", n, qos, got, buf.Len())
				}
			}
		}
	}
}

func TestMessageMappingRoundTrip(t *testing.T) {
	pf, exp := byte(0), uint32(5)
	in := bridge.Message{Topic: "x/y", Payload: []byte{0, 1, 255}, QoS: 2, Retain: true, Properties: bridge.Properties{
		ContentType: "c", PayloadFormat: &pf, MessageExpiry: &exp, ResponseTopic: "r", CorrelationData: []byte{9},
		UserProperties: []bridge.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}},
	}}
	out := fromPahoPublish(toPahoPublish(in))
	if fmt.Sprintf("%+v %d %d", out.Properties.UserProperties, *out.Properties.PayloadFormat, *out.Properties.MessageExpiry) !=
		fmt.Sprintf("%+v %d %d", in.Properties.UserProperties, pf, exp) ||
		out.Topic != in.Topic || !bytes.Equal(out.Payload, in.Payload) || out.QoS != 2 || !out.Retain ||
		out.Properties.ContentType != "c" || out.Properties.ResponseTopic != "r" || !bytes.Equal(out.Properties.CorrelationData, []byte{9}) {
		t.Fatalf("round trip changed the message: %+v", out)
	}
	// Absent stays absent.
	bare := fromPahoPublish(toPahoPublish(bridge.Message{Topic: "t"}))
	if bare.Properties.PayloadFormat != nil || bare.Properties.MessageExpiry != nil || bare.Properties.UserProperties != nil || bare.Payload == nil {
		t.Fatalf("bare message: %+v", bare)
	}
}

func TestBackoff(t *testing.T) {
	minD, maxD := 100*time.Millisecond, 10*time.Second
	b := newBackoff(minD, maxD)
	if d := b(0); d != 0 {
		t.Fatalf("attempt 0: %s, want immediate", d)
	}
	for attempt := 1; attempt < 200; attempt++ {
		base := minD << min(attempt-1, 20)
		for range 50 {
			d := b(attempt)
			if d > maxD {
				t.Fatalf("attempt %d: %s exceeds the maximum", attempt, d)
			}
			if base+base/4 <= maxD && (d < base || d > base+base/4) {
				t.Fatalf("attempt %d: %s, want %s plus up to 25%%", attempt, d, base)
			}
			if base >= maxD && d < maxD*3/4 {
				t.Fatalf("attempt %d: %s, want between 75%% and 100%% of the maximum", attempt, d)
			}
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, want, user, pass string }{
		{"mqtt://h", "mqtt://h:1883", "", ""},
		{"tcp://h:1", "mqtt://h:1", "", ""},
		{"mqtts://h", "mqtts://h:8883", "", ""},
		{"ssl://u:p@h", "mqtts://h:8883", "u", "p"},
		{"tls://[::1]", "mqtts://[::1]:8883", "", ""},
		{"ws://h:8080/mqtt", "ws://h:8080/mqtt", "", ""},
		{"WSS://h/mqtt", "wss://h/mqtt", "", ""},
	} {
		u, user, pass, err := parseURL(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if u.String() != tc.want || user != tc.user || pass != tc.pass {
			t.Errorf("%s: got %s %q %q, want %s %q %q", tc.in, u, user, pass, tc.want, tc.user, tc.pass)
		}
	}
	for _, bad := range []string{"http://h", "mqtt://", "mqtt://h/path", "://x", "mqtt://u:pw@h:badport"} {
		if _, _, _, err := parseURL(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: error shows the password: %v", bad, err)
		}
	}
}
