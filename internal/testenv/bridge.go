package testenv

import (
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
)

// NewBridge is a bridge.New(cfg) over a new memory store (cfg.Store), with
// routes added; an error fails the test. The store is closed when the test
// ends.
func NewBridge(tb testing.TB, cfg bridge.Config, routes ...bridge.Route) (*bridge.Bridge, *memory.Store) {
	tb.Helper()
	store, err := memory.New(memory.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	cfg.Store = store
	b, err := bridge.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range routes {
		if err := b.AddRoute(r); err != nil {
			tb.Fatal(err)
		}
	}
	return b, store
}
