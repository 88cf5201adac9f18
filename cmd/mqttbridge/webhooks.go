package main

import (
	"context"
	"fmt"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/memory"
	redisstore "github.com/mqttbridge/mqttbridge/bridge/store/redis"
	"github.com/mqttbridge/mqttbridge/bridge/webhook"
)

// startWebhooks builds the webhooks of the configuration on the store's
// consumer groups and leases; Run starts them once HTTP listens, Close
// stops them.
func (m *Main) startWebhooks(ctx context.Context) error {
	var groups bridge.Groups
	switch st := m.store.(type) {
	case *memory.Store:
		groups = memory.NewGroups(st)
	case *redisstore.Store:
		groups = redisstore.NewGroups(st)
	}
	leases, _ := m.store.(bridge.Leases)
	hooks := make([]webhook.Config, len(m.Config.Webhooks))
	for i, w := range m.Config.Webhooks {
		hooks[i] = w.WebhookConfig()
	}
	mgr, err := webhook.New(webhook.ManagerConfig{
		Webhooks:   hooks,
		Groups:     groups,
		Leases:     leases,
		Authorizer: m.sec.authorizer, // the bridge's one authorizer
		Consumer:   m.Config.InstanceID,
		Logger:     m.Logger.With("component", "webhook"),
	})
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	m.Webhooks = mgr // started once HTTP listens: its first try may wait for a Redis that is down
	return nil
}
