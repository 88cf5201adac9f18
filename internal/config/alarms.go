package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Alarm is one alarm configuration: messages on Filters raise (or update)
// the alarm of their topic, which a person acknowledges (POST
// /v1/alarms/{id}/ack) and a clearing message clears.
type Alarm struct {
	// Name is unique; it names the alarm configuration in every alarm it
	// raises.
	Name string `yaml:"name"`
	// Filters are MQTT topic filters: a message on one raises or updates
	// the alarm of its topic. At least one; the filters of two alarms
	// must not overlap.
	Filters []string `yaml:"filters"`
	// Clear lists the payloads that clear the alarm (compared exactly); an
	// empty payload (an empty retained message) always clears.
	Clear []string `yaml:"clear"`
	// AckTopic is where each acknowledgment is published, retained, QoS 1,
	// with "{topic}" standing for the alarm's topic (e.g. "acks/{topic}");
	// it must be bridged. Messages on it never raise. Empty: not published.
	AckTopic string `yaml:"ack_topic"`
	// EscalateAfter is how long an alarm may stay unacknowledged before it
	// is sent, once, to EscalateWebhook. 0: never.
	EscalateAfter Duration `yaml:"escalate_after"`
	// EscalateWebhook is the name of a configured webhook that receives
	// escalations (event type alarm.escalated).
	EscalateWebhook string `yaml:"escalate_webhook"`
}

// AlarmConfig is the alarm as the bridge takes it.
func (a Alarm) AlarmConfig() bridge.AlarmConfig {
	return bridge.AlarmConfig{Name: a.Name, Filters: a.Filters, Clear: a.Clear, AckTopic: a.AckTopic,
		EscalateAfter: time.Duration(a.EscalateAfter), EscalateWebhook: a.EscalateWebhook}
}

// AlarmConfigs are the alarms as the bridge takes them.
func (c Config) AlarmConfigs() []bridge.AlarmConfig {
	out := make([]bridge.AlarmConfig, len(c.Alarms))
	for i, a := range c.Alarms {
		out[i] = a.AlarmConfig()
	}
	return out
}

func (c Config) validateAlarms(p *problems) {
	for i, err := range bridge.CheckAlarms(c.AlarmConfigs()) {
		p.add(fmt.Sprintf("alarms[%d]", i), "%v", err)
	}
	webhooks := map[string]bool{}
	for _, w := range c.Webhooks {
		webhooks[w.Name] = true
	}
	for i, a := range c.Alarms {
		key := fmt.Sprintf("alarms[%d]", i)
		for j, f := range a.Filters {
			if bridge.CheckAlarm(bridge.AlarmConfig{Filters: []string{f}}) == nil && !c.bridges(f) {
				p.add(fmt.Sprintf("%s.filters[%d]", key, j), "%q matches no bridged topic, so it would never raise an alarm", f)
			}
		}
		if a.AckTopic != "" && strings.Count(a.AckTopic, bridge.AckTopicPlaceholder) == 1 &&
			!c.bridges(strings.Replace(a.AckTopic, bridge.AckTopicPlaceholder, "#", 1)) {
			p.add(key+".ack_topic", "%q is not bridged: acknowledgments could not be published", a.AckTopic)
		}
		if a.EscalateWebhook != "" && !webhooks[a.EscalateWebhook] {
			p.add(key+".escalate_webhook", "%q is not the name of a configured webhook", a.EscalateWebhook)
		}
	}
}
