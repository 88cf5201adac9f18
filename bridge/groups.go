package bridge

import (
	"context"
	"time"
)

// Groups is the store capability that webhook delivery (bridge/webhook)
// builds on: consumer groups that read the message history, so that every
// message is handed to one consumer of a group for the whole fleet, with
// what a consumer that died left behind claimable by another; and, per
// group, a dead-letter list and a replay queue. The Redis store implements
// it with a consumer group on the history stream; the memory store with
// the same semantics in one process. Both pass storetest.RunGroups.
//
// A group reads every message of the history (filtering is the
// consumer's business); messages that leave the history window before the
// group read them are lost to it, which ReadGroup reports.
//
// Every method returns an *Error with ECodeStoreUnavailable (wrapping the
// cause) when the backend does not answer, and ECodeInvalidRequest for an
// empty group or consumer name.
type Groups interface {
	// CreateGroup creates the group positioned at the end of the history
	// (it reads only messages recorded later); creating an existing group
	// changes nothing.
	CreateGroup(ctx context.Context, group string) error
	// ReadGroup returns up to count (1..1000) messages recorded after the
	// last message handed to any consumer of the group, oldest first, and
	// records them as pending for consumer. When there are none it waits
	// up to block for one (0: it does not wait). lost reports that
	// messages the group had not read yet have left the history window.
	// The group must exist.
	ReadGroup(ctx context.Context, group, consumer string, count int, block time.Duration) (msgs []Message, lost bool, err error)
	// Claim makes the pending messages of the group (any consumer's) that
	// were handed out at least minIdle ago pending for consumer instead,
	// as if just handed out, and returns up to count (1..1000) of them,
	// oldest first. Pending messages that left the history meanwhile are
	// removed from the pending list and counted in gone.
	Claim(ctx context.Context, group, consumer string, minIdle time.Duration, count int) (msgs []Message, gone int, err error)
	// Pending is how many messages of the group are pending, of every
	// consumer.
	Pending(ctx context.Context, group string) (int, error)
	// Ack removes the messages with these ids from the pending list;
	// unknown ids are ignored.
	Ack(ctx context.Context, group string, ids ...string) error

	// DeadLetter adds dl to the group's dead-letter list (the store
	// assigns dl.ID, an id like a message id) and acknowledges
	// dl.Message.ID, in one step. The list keeps the newest max entries.
	DeadLetter(ctx context.Context, group string, dl DeadLetter, max int) (DeadLetter, error)
	// DeadLetters returns up to limit (1..1000) dead letters with an id
	// after `after` ("" from the oldest), oldest first, and the cursor of
	// the next page ("" when there is none).
	DeadLetters(ctx context.Context, group, after string, limit int) (dls []DeadLetter, next string, err error)
	// Replay moves the dead letters with these ids (every one when ids is
	// empty) to the group's replay queue, in one step, and returns how
	// many moved; unknown ids are ignored.
	Replay(ctx context.Context, group string, ids []string) (int, error)
	// Replays returns up to count (1..1000) entries of the replay queue,
	// oldest first, each with its own queue id; they stay queued until
	// ReplayDone.
	Replays(ctx context.Context, group string, count int) ([]DeadLetter, error)
	// ReplayDone removes the entry id from the replay queue, and with
	// failed set adds *failed to the dead-letter list again, in one step.
	ReplayDone(ctx context.Context, group, id string, failed *DeadLetter, max int) error
}

// DeadLetter is a message that a consumer gave up delivering.
type DeadLetter struct {
	// ID is assigned by the store: "<ms>-<seq>", growing.
	ID string
	// Message is the message, with its history id.
	Message Message
	// Attempts is how many deliveries were tried, replays included.
	Attempts int
	// Error is why the last attempt failed.
	Error string
	// FailedAt is when the last attempt failed.
	FailedAt time.Time
}
