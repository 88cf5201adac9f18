package wsproxy

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// Frames, as documented in docs/websocket.md and asyncapi.yaml.

type welcomeFrame struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Resumed bool   `json:"resumed"`
	LastID  string `json:"last_id"`
}

type messageFrame struct {
	Type string `json:"type"`
	wire.Envelope
	Snapshot bool `json:"snapshot,omitempty"`
	Ack      bool `json:"ack,omitempty"`
}

// alarmFrame is an alarm's transition, or with snapshot an open alarm sent
// before a replay or snapshot.
type alarmFrame struct {
	Type     string     `json:"type"`
	Alarm    wire.Alarm `json:"alarm"`
	Snapshot bool       `json:"snapshot,omitempty"`
}

type okFrame struct {
	Type   string `json:"type"`
	Ref    string `json:"ref,omitempty"`
	Result any    `json:"result,omitempty"`
}

type errorFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	wire.ErrorDetail
}

type pongFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
}

type gapFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	LastID  string `json:"last_id"`
	Message string `json:"message"`
}

type subscribeFrame struct {
	Type     string   `json:"type"`
	ID       string   `json:"id"`
	Filters  []string `json:"filters"`
	QoS      *byte    `json:"qos"`
	Snapshot bool     `json:"snapshot"`
	LastID   string   `json:"last_id"`
}

type unsubscribeFrame struct {
	Type    string   `json:"type"`
	ID      string   `json:"id"`
	Filters []string `json:"filters"`
}

type publishFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	wire.PublishRequest
}

type ackFrame struct {
	Type string   `json:"type"`
	ID   string   `json:"id"`
	IDs  []string `json:"ids"`
}

type pingFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// tailGapMessage is the message of the gap frame of a hole in the history
// tail (bridge.Delivery.Gap).
const tailGapMessage = "messages after last_id left the history window before this server delivered them; re-read current values with a snapshot"

func encodeDelivery(d bridge.Delivery) []byte {
	if d.Alarm != nil {
		return mustJSON(alarmFrame{Type: "alarm", Alarm: wire.NewAlarm(&d.Alarm.Alarm, false, time.Now()), Snapshot: d.Snapshot})
	}
	if d.Gap != nil {
		return mustJSON(gapFrame{Type: "gap", LastID: d.Gap.After, Message: tailGapMessage})
	}
	return mustJSON(messageFrame{Type: "message", Envelope: wire.NewEnvelope(&d.Event.Message, time.Now()), Snapshot: d.Snapshot, Ack: d.Ack})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("wsproxy: encoding a frame: " + err.Error())
	}
	return b
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// pendingSet holds the QoS 1 messages a connection delivered and the client
// has not acknowledged, in delivery order.
type pendingSet struct {
	mu    sync.Mutex
	order []string
	msgs  map[string]bridge.Message
}

func newPendingSet() pendingSet { return pendingSet{} }

// add records m and returns how many are pending.
func (p *pendingSet) add(m bridge.Message) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.msgs[m.ID]; !ok {
		if p.msgs == nil {
			p.msgs = map[string]bridge.Message{} // none while nothing is pending
		}
		p.order = append(p.order, m.ID)
		p.msgs[m.ID] = m
	}
	return len(p.msgs)
}

// len is how many are pending.
func (p *pendingSet) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

func (p *pendingSet) ack(ids []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		delete(p.msgs, id)
	}
	p.order = slices.DeleteFunc(p.order, func(id string) bool { _, ok := p.msgs[id]; return !ok })
}

func (p *pendingSet) list() []bridge.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]bridge.Message, 0, len(p.order))
	for _, id := range p.order {
		out = append(out, p.msgs[id])
	}
	return out
}
