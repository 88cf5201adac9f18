package memory

import (
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

func TestGroupsConformance(t *testing.T) {
	storetest.RunGroups(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Groups) {
		s, err := New(Config{HistorySize: w.Size, HistoryAge: w.Age})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, NewGroups(s)
	})
}
