package wire

import (
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Alarm is the JSON form of an alarm: in GET /v1/alarms (without
// history), GET /v1/alarms/{id} and the acknowledgment's answer (with
// it), WebSocket and SSE alarm events, and escalation webhooks. Times
// that did not happen yet, and acked_by and comment before an
// acknowledgment, are null.
type Alarm struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	Topic        string       `json:"topic"`
	Active       bool         `json:"active"`
	Acknowledged bool         `json:"acknowledged"`
	Count        int          `json:"count"`
	RaisedAt     time.Time    `json:"raised_at"`
	ClearedAt    *time.Time   `json:"cleared_at"`
	AckedAt      *time.Time   `json:"acked_at"`
	AckedBy      *string      `json:"acked_by"`
	Comment      *string      `json:"comment"`
	EscalatedAt  *time.Time   `json:"escalated_at"`
	Rev          int          `json:"rev"`
	Message      Envelope     `json:"message"`
	History      []Transition `json:"history,omitempty"`
}

// Transition is one entry of an alarm's history.
type Transition struct {
	Kind      string    `json:"kind"`
	At        time.Time `json:"at"`
	By        string    `json:"by,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	Webhook   string    `json:"webhook,omitempty"`
}

// NewAlarm renders a; with history, its history too.
func NewAlarm(a *bridge.Alarm, history bool, now time.Time) Alarm {
	when := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	out := Alarm{ID: a.ID, Name: a.Name, Topic: a.Topic, Active: a.Active, Acknowledged: a.Acknowledged, Count: a.Count,
		RaisedAt: a.RaisedAt.UTC(), ClearedAt: when(a.ClearedAt), AckedAt: when(a.AckedAt), EscalatedAt: when(a.EscalatedAt),
		Rev: a.Rev, Message: NewEnvelope(&a.Message, now)}
	if a.Acknowledged {
		by, comment := a.AckedBy, a.Comment
		out.AckedBy, out.Comment = &by, &comment
	}
	if history {
		out.History = make([]Transition, len(a.History))
		for i, t := range a.History {
			out.History[i] = Transition{Kind: t.Kind, At: t.At.UTC(), By: t.By, MessageID: t.MessageID, Comment: t.Comment, Webhook: t.Webhook}
		}
	}
	return out
}

// AlarmEscalated is the body of an escalation webhook (Standard Webhooks:
// type, timestamp, data).
type AlarmEscalated struct {
	Type      string    `json:"type"` // "alarm.escalated"
	Timestamp time.Time `json:"timestamp"`
	Data      Alarm     `json:"data"`
}
