package config

import "testing"

func TestAlarmValidation(t *testing.T) {
	const hook = "webhooks: [{name: oncall, url: 'https://h.example/x', filters: [x/#]}]\n"
	tests := []struct {
		name string
		yaml string
		key  string
		want []string
	}{
		{"name missing", "alarms: [{filters: [a/#]}]", "alarms[0]", []string{"name", "missing"}},
		{"name twice", "alarms: [{name: a, filters: [a/#]}, {name: a, filters: [b/#]}]", "alarms[1]", []string{`"a"`, "another alarm"}},
		{"no filter", "alarms: [{name: a}]", "alarms[0]", []string{"at least one topic filter"}},
		{"bad filter", "alarms: [{name: a, filters: ['a/#/b']}]", "alarms[0]", []string{`"a/#/b"`}},
		{"overlapping alarms", "alarms: [{name: a, filters: [p/+/alarm]}, {name: b, filters: [p/1/#]}]", "alarms[1]", []string{"overlaps", `alarm "a"`}},
		{"not bridged", "mqtt: {topics: [x/#]}\nalarms: [{name: a, filters: [p/#]}]", "alarms[0].filters[0]", []string{"matches no bridged topic"}},
		{"ack_topic without {topic}", "alarms: [{name: a, filters: [p/#], ack_topic: acks}]", "alarms[0]", []string{"{topic} exactly once"}},
		{"ack_topic twice {topic}", "alarms: [{name: a, filters: [p/#], ack_topic: '{topic}/{topic}'}]", "alarms[0]", []string{"{topic} exactly once"}},
		{"ack_topic wildcard", "alarms: [{name: a, filters: [p/#], ack_topic: 'acks/+/{topic}'}]", "alarms[0]", []string{"ack_topic"}},
		{"ack_topic not bridged", "mqtt: {topics: [p/#]}\nalarms: [{name: a, filters: [p/#], ack_topic: 'acks/{topic}'}]", "alarms[0].ack_topic", []string{"not bridged"}},
		{"empty clear", "alarms: [{name: a, filters: [p/#], clear: ['']}]", "alarms[0]", []string{"empty payload always clears"}},
		{"webhook unknown", hook + "alarms: [{name: a, filters: [p/#], escalate_after: 1m, escalate_webhook: pager}]", "alarms[0].escalate_webhook", []string{`"pager"`, "configured webhook"}},
		{"escalate_after without webhook", "alarms: [{name: a, filters: [p/#], escalate_after: 1m}]", "alarms[0]", []string{"needs escalate_webhook"}},
		{"webhook without escalate_after", hook + "alarms: [{name: a, filters: [p/#], escalate_webhook: oncall}]", "alarms[0]", []string{"needs escalate_after"}},
		{"negative escalate_after", hook + "alarms: [{name: a, filters: [p/#], escalate_after: -1m, escalate_webhook: oncall}]", "alarms[0]", []string{"negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml, nil, nil)
			requireProblem(t, err, tt.key, tt.want...)
		})
	}
	valid := hook + "alarms: [{name: plant, filters: [plant/+/alarm/#], clear: ['0', OK], ack_topic: 'acks/{topic}', escalate_after: 5m, escalate_webhook: oncall}, {name: b, filters: [b/#]}]"
	c, err := loadYAML(t, valid, nil, nil)
	if err != nil {
		t.Fatalf("valid alarms: %v", err)
	}
	if got := c.AlarmConfigs(); len(got) != 2 || got[0].EscalateAfter.Minutes() != 5 || got[0].AckTopic != "acks/{topic}" || len(got[0].Clear) != 2 {
		t.Fatalf("AlarmConfigs = %+v", got)
	}
}
