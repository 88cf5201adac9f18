package bridge

import "sync"

// Event is a message on its way to local subscribers. It is shared by every
// subscriber it reaches, so that each wire encoding is built once for all of
// them (Encoded), not once per client.
type Event struct {
	Message

	// gap is set on the marker of a hole in the history tail (tail.go),
	// which every feed gets in place of a message: its ID is Gap.Next and
	// it matches every filter.
	gap *Gap
	// at is when the hub handed it to the feeds (mono), for the feeds'
	// MaxLag.
	at int64

	cache encodings
}

// encodings keeps the wire encodings of one event, one per key.
type encodings struct {
	mu  sync.Mutex
	enc []encoding
}

type encoding struct {
	key any
	v   any
}

// get returns the encoding under key, building it the first time.
func (c *encodings) get(key any, build func() any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kv := range c.enc {
		if kv.key == key {
			return kv.v
		}
	}
	v := build()
	c.enc = append(c.enc, encoding{key, v})
	return v
}

// NewEvent wraps a stored message.
func NewEvent(m Message) *Event { return &Event{Message: m} }

// Encoded returns the encoding of the event under key, building it with
// build the first time any subscriber asks. Adapters use one key per wire
// form (a WebSocket frame, an SSE event, …).
func (e *Event) Encoded(key any, build func(*Message) any) any {
	return e.cache.get(key, func() any { return build(&e.Message) })
}

// AlarmEvent is an alarm as a transition left it, on its way to the
// local feeds whose filters match its topic; shared by all of them, so
// that each wire encoding is built once (Encoded). It is read-only.
type AlarmEvent struct {
	Alarm
	cache encodings
}

// NewAlarmEvent wraps an alarm.
func NewAlarmEvent(a Alarm) *AlarmEvent { return &AlarmEvent{Alarm: a} }

// Encoded is Event.Encoded for an alarm.
func (e *AlarmEvent) Encoded(key any, build func(*Alarm) any) any {
	return e.cache.get(key, func() any { return build(&e.Alarm) })
}
