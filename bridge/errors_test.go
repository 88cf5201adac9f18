package bridge_test

import (
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// One table names the reason codes of every packet: a failure code means
// the same in CONNACK, PUBACK, SUBACK and DISCONNECT.
func TestReasonName(t *testing.T) {
	for code, want := range map[byte]string{
		0x00: "success",
		0x10: "no matching subscribers",
		0x86: "bad user name or password", // CONNACK
		0x87: "not authorized",            // every packet
		0x8B: "server shutting down",      // DISCONNECT
		0x8F: "topic filter invalid",      // SUBACK
		0x97: "quota exceeded",            // PUBACK
		0xA2: "wildcard subscriptions not supported",
		0x7F: "reason code 0x7F",
	} {
		if got := bridge.ReasonName(code); got != want {
			t.Errorf("ReasonName(0x%02X) = %q, want %q", code, got, want)
		}
	}
}
