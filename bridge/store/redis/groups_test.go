package redisstore

import (
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/storetest"
)

func TestGroupsConformance(t *testing.T) {
	storetest.RunGroups(t, func(t *testing.T, w storetest.Window) (bridge.Store, bridge.Groups) {
		s := newTestStore(t, Config{HistorySize: w.Size, HistoryAge: w.Age})
		return s, NewGroups(s)
	})
}
