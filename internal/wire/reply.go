package wire

import (
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Reply is the JSON form of the reply to a request: the message envelope
// without its id, since a reply is not recorded (its outer ID, always nil,
// hides Envelope.ID when encoding).
type Reply struct {
	ID *string `json:"id,omitempty"`
	Envelope
}

// NewReply renders a reply; the expiry shown is what remains at now.
func NewReply(msg *bridge.Message, now time.Time) Reply {
	return Reply{Envelope: NewEnvelope(msg, now)}
}

// DeadLetter is the JSON form of a webhook's dead letter.
type DeadLetter struct {
	ID       string    `json:"id"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
	FailedAt time.Time `json:"failed_at"`
	Message  Envelope  `json:"message"`
}

// NewDeadLetter renders a dead letter.
func NewDeadLetter(dl *bridge.DeadLetter, now time.Time) DeadLetter {
	return DeadLetter{ID: dl.ID, Attempts: dl.Attempts, Error: dl.Error, FailedAt: dl.FailedAt.UTC(), Message: NewEnvelope(&dl.Message, now)}
}
