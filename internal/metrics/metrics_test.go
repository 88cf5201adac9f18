package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
)

type fakeBroker struct{}

func (fakeBroker) Name() string       { return "b1" }
func (fakeBroker) Connected() bool    { return true }
func (fakeBroker) Reconnects() uint64 { return 3 }

type fakeHooks struct{}

func (fakeHooks) Names() []string { return []string{"erp"} }
func (fakeHooks) Stats(string) (webhook.Stats, bool) {
	return webhook.Stats{Attempts: 5, Failures: 2, DeadLettered: 1}, true
}

// Two instances in one process each have their own registry, and every
// family carries the values it was given.
func TestRegistryPerInstance(t *testing.T) {
	a, b := New(), New()
	a.Published(1, "ok")
	a.StoreCall("get", time.Millisecond, bridge.ErrNotFound)
	a.StoreCall("put", time.Millisecond, errors.New("down"))
	a.AddBroker(fakeBroker{})
	a.WatchWebhooks(fakeHooks{})
	if got := value(t, b, "mqttbridge_publishes_total", "ok"); got != 0 {
		t.Fatalf("the second instance counted the first one's publish: %v", got)
	}
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"mqttbridge_publishes_total", "ok", 1},
		{"mqttbridge_store_errors_total", "put", 1},
		{"mqttbridge_store_errors_total", "get", 0}, // not found is no failure
		{"mqttbridge_upstream_connected", "b1", 1},
		{"mqttbridge_upstream_reconnects_total", "b1", 3},
		{"mqttbridge_webhook_attempts_total", "erp", 5},
		{"mqttbridge_webhook_failures_total", "erp", 2},
		{"mqttbridge_webhook_dead_letters_total", "erp", 1},
	} {
		if got := value(t, a, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.label, got, c.want)
		}
	}
}

// value is the sample of family name that has a label with the value
// label (0 when none).
func value(t *testing.T, m *Metrics, name, label string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetValue() == label {
					switch {
					case s.Counter != nil:
						return s.Counter.GetValue()
					case s.Gauge != nil:
						return s.Gauge.GetValue()
					}
				}
			}
		}
	}
	return 0
}
