package bridge

import (
	"strings"
	"testing"
	"time"
)

func TestCheckAlarms(t *testing.T) {
	ok := AlarmConfig{Name: "a", Filters: []string{"p/+/alarm/#"}, Clear: []string{"0"}, AckTopic: "acks/{topic}"}
	tests := []struct {
		name string
		cfgs []AlarmConfig
		bad  int    // index with a problem, -1 for none
		want string // in the problem
	}{
		{"valid", []AlarmConfig{ok, {Name: "b", Filters: []string{"q/#"}, EscalateAfter: time.Minute, EscalateWebhook: "w"}}, -1, ""},
		{"no name", []AlarmConfig{{Filters: []string{"a"}}}, 0, "missing"},
		{"same name", []AlarmConfig{ok, {Name: "a", Filters: []string{"q"}}}, 1, "another alarm"},
		{"no filters", []AlarmConfig{{Name: "a"}}, 0, "at least one"},
		{"bad filter", []AlarmConfig{{Name: "a", Filters: []string{"a/#/b"}}}, 0, `"a/#/b"`},
		{"overlap", []AlarmConfig{ok, {Name: "b", Filters: []string{"p/1/alarm"}}}, 1, "overlaps"},
		{"empty clear", []AlarmConfig{{Name: "a", Filters: []string{"a"}, Clear: []string{""}}}, 0, "empty payload"},
		{"ack_topic without placeholder", []AlarmConfig{{Name: "a", Filters: []string{"a"}, AckTopic: "acks"}}, 0, "exactly once"},
		{"ack_topic with a wildcard", []AlarmConfig{{Name: "a", Filters: []string{"a"}, AckTopic: "+/{topic}"}}, 0, "ack_topic"},
		{"escalation without webhook", []AlarmConfig{{Name: "a", Filters: []string{"a"}, EscalateAfter: time.Second}}, 0, "escalate_webhook"},
		{"webhook without escalation", []AlarmConfig{{Name: "a", Filters: []string{"a"}, EscalateWebhook: "w"}}, 0, "escalate_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckAlarms(tt.cfgs)
			if tt.bad < 0 {
				if len(got) != 0 {
					t.Fatalf("problems %v, want none", got)
				}
				return
			}
			if err := got[tt.bad]; err == nil || !strings.Contains(err.Error(), tt.want) || len(got) != 1 {
				t.Fatalf("problems %v, want one at %d with %q", got, tt.bad, tt.want)
			}
		})
	}
}

func TestAckTopics(t *testing.T) {
	c := AlarmConfig{Name: "a", Filters: []string{"plant/+/alarm/#"}, AckTopic: "acks/{topic}/ok"}
	for name, want := range map[string]bool{
		"acks/plant/1/alarm/temp/ok": true,
		"acks/plant/1/alarm/ok":      true,
		"acks/plant/1/other/ok":      false, // not an alarm topic inside
		"acks/plant/1/alarm/temp":    false,
		"acks//ok":                   false,
		"plant/1/alarm/temp":         false,
	} {
		if got := c.isAckTopic(name); got != want {
			t.Errorf("isAckTopic(%q) = %v, want %v", name, got, want)
		}
	}
	if got := ackTopicFor(c.AckTopic, "plant/1/alarm"); got != "acks/plant/1/alarm/ok" {
		t.Errorf("ackTopicFor = %q", got)
	}
}

// TestTransitions: the state machine, message by message.
func TestTransitions(t *testing.T) {
	c := &AlarmConfig{Name: "a", Filters: []string{"#"}, Clear: []string{"OK"}}
	msg := func(id, payload string) *Message {
		return &Message{ID: id, Topic: "t", Payload: []byte(payload), ReceivedAt: time.UnixMilli(1)}
	}
	var cur *Alarm
	step := func(m *Message, want string) {
		t.Helper()
		var in *Alarm
		if cur != nil {
			c := cur.Clone()
			in = &c
		}
		next := transition(c, in, m, c.clears(m))
		got := "nil"
		if next != nil {
			got = next.History[len(next.History)-1].Kind
			if next.Open() {
				cur = next
			} else {
				got += " closed"
				cur = nil
			}
		}
		if got != want {
			t.Fatalf("message %q: %s, want %s", m.Payload, got, want)
		}
	}
	step(msg("1-0", "OK"), "nil") // nothing to clear
	step(msg("2-0", "hot"), "raised")
	step(msg("3-0", "hotter"), "updated")
	if cur.Count != 2 || string(cur.Message.Payload) != "hotter" || cur.ID != "2-0" {
		t.Fatalf("after update: %+v", cur)
	}
	step(msg("4-0", ""), "cleared") // an empty payload clears
	if cur.Active || cur.ClearedAt.IsZero() {
		t.Fatalf("after clear: %+v", cur)
	}
	step(msg("5-0", "OK"), "nil") // cleared already
	step(msg("6-0", "hot"), "updated")
	if !cur.Active || !cur.ClearedAt.IsZero() || cur.Count != 3 {
		t.Fatalf("raised again while open: %+v", cur)
	}
	cur.Acknowledged = true
	step(msg("7-0", "OK"), "cleared closed")
	step(msg("8-0", "hot"), "raised")
	if cur.ID != "8-0" || cur.Count != 1 {
		t.Fatalf("after closing, a new alarm: %+v", cur)
	}
}

// TestHistoryBounded: the first transition and the newest stay.
func TestHistoryBounded(t *testing.T) {
	a := &Alarm{}
	for i := range MaxAlarmHistory + 50 {
		a.record(AlarmTransition{Kind: AlarmUpdated, MessageID: string(rune('a' + i%26))})
		if i == 0 {
			a.History[0].Kind = AlarmRaised
		}
	}
	if len(a.History) != MaxAlarmHistory || a.History[0].Kind != AlarmRaised || a.History[len(a.History)-1].MessageID != string(rune('a'+(MaxAlarmHistory+49)%26)) {
		t.Fatalf("history of %d: first %+v, last %+v", len(a.History), a.History[0], a.History[len(a.History)-1])
	}
}
