package frametest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// The reply the server sends as an ok frame's result matches, text or
// binary, and a request frame is checked like a publish without retain.
func TestRequestFrames(t *testing.T) {
	v := validator(t)
	type okFrame struct {
		Type   string `json:"type"`
		Ref    string `json:"ref,omitempty"`
		Result any    `json:"result,omitempty"`
	}
	now := time.Now()
	for _, m := range []bridge.Message{
		{Topic: "mqttbridge/reply/i/00ff", Payload: []byte(`{"ok":true}`), QoS: 1, ReceivedAt: now,
			Properties: bridge.Properties{ContentType: "application/json", CorrelationData: []byte{0, 0xff}}},
		{Topic: "mqttbridge/reply/i/00fe", Payload: []byte{0xff}, ReceivedAt: now},
	} {
		b, err := json.Marshal(okFrame{Type: "ok", Ref: "r", Result: wire.NewReply(&m, now)})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"id"`) {
			t.Fatalf("a reply carries an id: %s", b)
		}
		v.Server(t, b)
	}
	good := `{"type":"request","id":"1","topic":"dev/cmd","payload_json":{"speed":3},"qos":2,"timeout":0.5,"properties":{"user_properties":[{"key":"k","value":"v"}]}}`
	if errs := run(t, func(tb testing.TB) { v.Client(tb, []byte(good)) }); len(errs) > 0 {
		t.Errorf("request frame refused: %v", errs)
	}
	for _, bad := range []string{
		`{"type":"request","topic":"dev/cmd","payload":"x","retain":true}`,
		`{"type":"request","topic":"dev/cmd","payload":"x","timeout":0}`,
		`{"type":"request","topic":"dev/cmd"}`,
	} {
		if errs := run(t, func(tb testing.TB) { v.Client(tb, []byte(bad)) }); len(errs) == 0 {
			t.Errorf("bad request frame accepted: %s", bad)
		}
	}
}
