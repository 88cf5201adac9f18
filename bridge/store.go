package bridge

import "context"

// Store keeps the last value of every topic. Implementations: memory (one
// instance) and Redis (a fleet); both pass storetest.Run.
//
// Every method returns an *Error with ECodeStoreUnavailable (wrapping the
// cause) when the backend does not answer, so callers can tell a broken store
// from a missing value.
type Store interface {
	// Put records msg and returns it with its ID assigned. A retained
	// message with an empty payload deletes the topic's last value;
	// any other message becomes the topic's last value. msg.ReceivedAt is
	// kept when set, else set to now.
	Put(ctx context.Context, msg Message) (Message, error)
	// Get returns the last value of the exact topic, or ErrNotFound when
	// there is none or it has expired.
	Get(ctx context.Context, topic string) (Message, error)
	// Delete removes the last value of topic; deleting nothing is not an
	// error.
	Delete(ctx context.Context, topic string) error
	// List returns the unexpired last values of topics matching filter,
	// ordered by topic name (byte order), starting after the topic name
	// `after` ("" = from the start), at most limit (1..1000) of them. next
	// is the cursor for the following page ("" when there is none).
	List(ctx context.Context, filter, after string, limit int) (msgs []Message, next string, err error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources; safe to call twice.
	Close() error
}
