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

	mu  sync.Mutex
	enc []encoding
}

type encoding struct {
	key any
	v   any
}

// NewEvent wraps a stored message.
func NewEvent(m Message) *Event { return &Event{Message: m} }

// Encoded returns the encoding of the event under key, building it with
// build the first time any subscriber asks. Adapters use one key per wire
// form (a WebSocket frame, an SSE event, …).
func (e *Event) Encoded(key any, build func(*Message) any) any {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, kv := range e.enc {
		if kv.key == key {
			return kv.v
		}
	}
	v := build(&e.Message)
	e.enc = append(e.enc, encoding{key, v})
	return v
}
