package bridge

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// AlarmConfig is one configured alarm: messages on Filters raise (or
// update) the alarm of their topic, until a person acknowledges it and a
// clearing message clears it (ISA-18.2 in two booleans, see Alarm).
type AlarmConfig struct {
	// Name identifies the alarm configuration; unique.
	Name string
	// Filters are the MQTT filters whose messages raise, update and clear
	// alarms; at least one. Filters of different alarms must not overlap.
	Filters []string
	// Clear lists the payloads that clear an alarm (compared byte for
	// byte); an empty payload always clears.
	Clear []string
	// AckTopic, when set, is where each acknowledgment is published,
	// retained, QoS 1: a topic name with "{topic}" once in it, which
	// stands for the alarm's topic. Messages on such topics never raise.
	AckTopic string
	// EscalateAfter, when positive, is how long an alarm may stay
	// unacknowledged before it is sent to EscalateWebhook.
	EscalateAfter time.Duration
	// EscalateWebhook names the webhook escalations go to; required with
	// EscalateAfter.
	EscalateWebhook string
}

// AckTopicPlaceholder is what AlarmConfig.AckTopic holds in place of the
// alarm's topic.
const AckTopicPlaceholder = "{topic}"

// CheckAlarm reports what is wrong with one alarm configuration, apart
// from its name's uniqueness and the overlap with other alarms
// (CheckAlarms).
func CheckAlarm(c AlarmConfig) error {
	if len(c.Filters) == 0 {
		return fmt.Errorf("needs at least one topic filter")
	}
	for _, f := range c.Filters {
		if err := topic.ValidateFilter(f); err != nil {
			return fmt.Errorf("filter %q: %v", f, err)
		}
	}
	for _, p := range c.Clear {
		if p == "" {
			return fmt.Errorf("clear: an empty payload always clears; list only non-empty payloads")
		}
	}
	if c.AckTopic != "" {
		if err := checkAckTopic(c.AckTopic); err != nil {
			return err
		}
	}
	switch {
	case c.EscalateAfter < 0:
		return fmt.Errorf("escalate_after must not be negative")
	case c.EscalateAfter > 0 && c.EscalateWebhook == "":
		return fmt.Errorf("escalate_after needs escalate_webhook")
	case c.EscalateAfter == 0 && c.EscalateWebhook != "":
		return fmt.Errorf("escalate_webhook needs escalate_after")
	}
	return nil
}

// CheckAlarms checks every alarm (CheckAlarm), that names are unique and
// not empty, and that no two alarms' filters overlap (a topic has one
// alarm). Keys are the index of the alarm in the list for each problem.
func CheckAlarms(cs []AlarmConfig) map[int]error {
	out := map[int]error{}
	names := map[string]bool{}
	for i, c := range cs {
		switch {
		case c.Name == "":
			out[i] = fmt.Errorf("name: missing; every alarm needs a unique name")
			continue
		case names[c.Name]:
			out[i] = fmt.Errorf("name: %q is the name of another alarm", c.Name)
			continue
		}
		names[c.Name] = true
		if err := CheckAlarm(c); err != nil {
			out[i] = err
			continue
		}
		for _, o := range cs[:i] {
			for _, f := range c.Filters {
				for _, g := range o.Filters {
					if topic.ValidateFilter(g) == nil && topic.Overlap(f, g) {
						out[i] = fmt.Errorf("filter %q overlaps %q of alarm %q: a topic has one alarm", f, g, o.Name)
					}
				}
			}
		}
	}
	return out
}

// checkAckTopic: "{topic}" once, and a valid topic name when it is filled
// in.
func checkAckTopic(t string) error {
	if strings.Count(t, AckTopicPlaceholder) != 1 {
		return fmt.Errorf("ack_topic %q must contain %s exactly once", t, AckTopicPlaceholder)
	}
	if err := topic.ValidateName(strings.Replace(t, AckTopicPlaceholder, "x", 1)); err != nil {
		return fmt.Errorf("ack_topic %q: %v", t, err)
	}
	return nil
}

// ackTopicFor fills in the alarm's topic.
func ackTopicFor(template, alarmTopic string) string {
	return strings.Replace(template, AckTopicPlaceholder, alarmTopic, 1)
}

// isAckTopic reports whether name is an acknowledgment topic of c: its
// AckTopic with a topic that c's filters match filled in.
func (c *AlarmConfig) isAckTopic(name string) bool {
	pre, post, ok := strings.Cut(c.AckTopic, AckTopicPlaceholder)
	if !ok || len(name) <= len(pre)+len(post) || !strings.HasPrefix(name, pre) || !strings.HasSuffix(name, post) {
		return false
	}
	return c.matches(name[len(pre) : len(name)-len(post)])
}

// matches reports whether name is one of c's topics.
func (c *AlarmConfig) matches(name string) bool {
	for _, f := range c.Filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// clears reports whether m clears an alarm of c: an empty payload, or one
// of c.Clear.
func (c *AlarmConfig) clears(m *Message) bool {
	if len(m.Payload) == 0 {
		return true
	}
	for _, p := range c.Clear {
		if string(m.Payload) == p {
			return true
		}
	}
	return false
}

// Alarm kinds of transition, in Alarm.History.
const (
	AlarmRaised       = "raised"
	AlarmUpdated      = "updated"
	AlarmAcknowledged = "acknowledged"
	AlarmCleared      = "cleared"
	AlarmEscalated    = "escalated"
)

// Alarm states a list can select (AlarmQuery.State).
const (
	AlarmStateUnacknowledged = "unacknowledged"
	AlarmStateAcknowledged   = "acknowledged"
	AlarmStateActive         = "active"
	AlarmStateCleared        = "cleared"
)

// MaxAlarmHistory bounds an alarm's history: beyond it the oldest
// transitions after the first go.
const MaxAlarmHistory = 100

// MaxOpenAlarms bounds the open alarms of a store: a raising message that
// would open one more is not applied (and logged).
const MaxOpenAlarms = 10000

// ClosedAlarmRetention is how long a closed alarm stays readable (GET
// /v1/alarms/{id}) after it closed.
const ClosedAlarmRetention = 7 * 24 * time.Hour

// MaxAlarmComment bounds an acknowledgment's comment, in bytes.
const MaxAlarmComment = 1024

// Alarm is the alarm of one topic, from the message that raised it until
// it is closed. Active says the condition holds (no clearing message
// since it was raised); Acknowledged that a person acknowledged it. It is
// open while active or unacknowledged; closed (neither) it leaves the
// open list, keeps its history, and a new raising message on its topic
// opens a new alarm with a new id.
type Alarm struct {
	// ID is the id of the message that raised it.
	ID string
	// Name is the AlarmConfig's.
	Name  string
	Topic string

	Active, Acknowledged bool
	// Count is how many raising messages it had: 1, and one more per
	// update.
	Count int
	// RaisedAt is when the first raising message was received.
	RaisedAt time.Time
	// ClearedAt is when the last clearing message was received; zero while
	// active.
	ClearedAt time.Time
	// AckedAt, AckedBy (an Identity's Key) and Comment are those of the
	// acknowledgment; zero before it.
	AckedAt time.Time
	AckedBy string
	Comment string
	// EscalatedAt is when it was sent to the escalation webhook; zero
	// before.
	EscalatedAt time.Time
	// Message is the latest raising (or clearing) message.
	Message Message
	// History is every transition, oldest first (at most
	// MaxAlarmHistory).
	History []AlarmTransition
	// Rev counts the writes of the alarm: 1 when raised, one more with
	// each transition. Feeds use it to drop what is older than what they
	// sent.
	Rev int
}

// AlarmTransition is one entry of an alarm's history.
type AlarmTransition struct {
	Kind string
	At   time.Time
	// By is the Identity's Key of the person who acted (acknowledged);
	// empty for what a message did.
	By string
	// MessageID is the message that raised, updated or cleared.
	MessageID string
	// Comment is the acknowledgment's; Webhook the escalation's.
	Comment string
	Webhook string
}

// Open reports whether the alarm is in the open list.
func (a *Alarm) Open() bool { return a.Active || !a.Acknowledged }

// Is reports whether the alarm is in state (one of the AlarmState
// constants; "" is every state).
func (a *Alarm) Is(state string) bool {
	switch state {
	case AlarmStateUnacknowledged:
		return !a.Acknowledged
	case AlarmStateAcknowledged:
		return a.Acknowledged
	case AlarmStateActive:
		return a.Active
	case AlarmStateCleared:
		return !a.Active
	}
	return true
}

// Clone returns a deep copy.
func (a Alarm) Clone() Alarm {
	a.Message.Payload = bytes.Clone(a.Message.Payload)
	a.History = append([]AlarmTransition(nil), a.History...)
	return a
}

func (a *Alarm) record(t AlarmTransition) {
	if len(a.History) >= MaxAlarmHistory {
		a.History = append(a.History[:1], a.History[len(a.History)-MaxAlarmHistory+2:]...)
	}
	a.History = append(a.History, t)
}

// AlarmKey selects the alarm an AlarmStore.UpdateAlarm works on: by ID, or
// (ID empty) the open alarm of Topic.
type AlarmKey struct {
	ID    string
	Topic string
	// Applied, with Topic, is the history id of the message being
	// applied: the update happens only when it is newer than every
	// message applied before, and it becomes the newest applied in the
	// same step (SetAlarmsApplied), so that each message is applied once
	// for the fleet.
	Applied string
}

// AlarmStore keeps the alarms. Implementations: memory (one instance) and
// Redis (a fleet); both pass storetest.RunAlarms.
//
// Every method returns an *Error with ECodeStoreUnavailable (wrapping the
// cause) when the backend does not answer.
type AlarmStore interface {
	// Alarm returns the alarm with this id (open, or closed within
	// ClosedAlarmRetention), or an *Error with ECodeNotFound.
	Alarm(ctx context.Context, id string) (Alarm, error)
	// OpenAlarms returns up to limit (1..1000) open alarms whose id is
	// older than before ("" from the newest), newest first.
	OpenAlarms(ctx context.Context, before string, limit int) ([]Alarm, error)
	// UpdateAlarm reads the alarm of key (nil when there is none, or with
	// key.Applied when the message was applied already: then fn is not
	// called), calls fn with a copy, and stores what fn returns, in one
	// atomic step: the open list and the topic's open alarm follow the
	// alarm's Open, and a closed alarm expires after ClosedAlarmRetention.
	// fn may be called more than once (when another writer came first);
	// it returns nil to write nothing (an Applied id is still recorded),
	// or an error, which UpdateAlarm returns. A new alarm that would
	// exceed MaxOpenAlarms open ones is not written: UpdateAlarm returns an
	// *Error with ECodeRateLimited.
	//
	// It returns the alarm as written, and whether it wrote one.
	UpdateAlarm(ctx context.Context, key AlarmKey, fn func(cur *Alarm) (*Alarm, error)) (Alarm, bool, error)
	// AlarmsApplied is the history id of the newest message applied ("" when
	// none ever was).
	AlarmsApplied(ctx context.Context) (string, error)
	// SetAlarmsApplied makes id the newest message applied, unless a newer
	// one is.
	SetAlarmsApplied(ctx context.Context, id string) error
}

// AlarmTailer is an AlarmStore that several instances share: TailAlarms
// calls fn with every alarm that UpdateAlarm writes, on any instance, from
// when it starts until ctx ends, in the order they were written; after a
// lost connection it goes on from where it was. Each instance hands them
// to its own feeds.
type AlarmTailer interface {
	TailAlarms(ctx context.Context, fn func([]Alarm)) error
}

// AlarmQuery selects open alarms for ListAlarms.
type AlarmQuery struct {
	// Filter is an MQTT filter on the alarm's topic; "" is every topic.
	Filter string
	// State is one of the AlarmState constants; "" is every state.
	State string
	// Limit is clamped to 1..1000; 0 means 100.
	Limit int
	// Cursor continues a list: the NextCursor of the previous page.
	Cursor string
}

// Escalator sends an alarm that stayed unacknowledged to a webhook;
// bridge/webhook implements it. It tries until the webhook answers 2xx,
// or its attempts are used up (an error), or ctx ends.
type Escalator interface {
	Escalate(ctx context.Context, webhook string, a Alarm) error
}
