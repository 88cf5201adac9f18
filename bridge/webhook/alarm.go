package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

var _ bridge.Escalator = (*Manager)(nil)

// EventAlarmEscalated is the type of an escalation's body.
const EventAlarmEscalated = "alarm.escalated"

// Escalate sends an alarm that stayed unacknowledged to the webhook name:
// a JSON body {"type": "alarm.escalated", "timestamp", "data": <the
// alarm>}, with the webhook's headers and signature, webhook-id
// "alarm-escalated-<alarm id>" (the same on every attempt and every
// instance, so a receiver can drop a duplicate), tried as the webhook
// tries a message (attempts, backoff), until a 2xx answer or ctx ends.
// It does not go through the webhook's consumer group nor its dead
// letters: the alarm's history records the escalation.
func (m *Manager) Escalate(ctx context.Context, name string, a bridge.Alarm) error {
	w, ok := m.workers[name]
	if !ok {
		return fmt.Errorf("webhook: there is no webhook %q", name)
	}
	now := time.Now()
	body, err := json.Marshal(wire.AlarmEscalated{Type: EventAlarmEscalated, Timestamp: now.UTC(), Data: wire.NewAlarm(&a, true, now)})
	if err != nil {
		return err
	}
	id := "alarm-escalated-" + a.ID
	for n := 1; ; n++ {
		err = w.post(ctx, id, body, "application/json", nil)
		w.attempts.Add(1)
		if err == nil {
			w.delivered.Add(1)
			return nil
		}
		w.failures.Add(1)
		if n >= w.cfg.Attempts || ctx.Err() != nil {
			return fmt.Errorf("webhook %q: %d attempts failed, the last: %w", name, n, err)
		}
		w.log.Debug("webhook: escalation attempt failed; retrying", "alarm", a.ID, "attempt", n, "err", err)
		sleep(ctx, w.backoff(n))
	}
}
