package bridge

import "context"

// Store keeps the last value of every topic and a bounded history of every
// message, the base of resuming a stream after a reconnect.
// Implementations: memory (one instance) and Redis (a fleet); both pass
// storetest.Run.
//
// The history is a window of the newest messages of every topic, in the
// order of their ids, bounded by a count and an age that the
// implementation's Config sets. The bounds are exact and enforced when a
// message is added: a Put drops the oldest messages beyond the count and
// those whose id is older than the age, so a store that receives nothing
// keeps its last messages. Whoever resumes from an id that the window no
// longer covers gets ErrGap, never a silent hole.
//
// Every method returns an *Error with ECodeStoreUnavailable (wrapping the
// cause) when the backend does not answer, so callers can tell a broken store
// from a missing value.
type Store interface {
	// Put records msg and returns it with its ID assigned. A retained
	// message with an empty payload deletes the topic's last value;
	// any other message becomes the topic's last value. msg.ReceivedAt is
	// kept when set, else set to now.
	//
	// Every message, a delete included, is also appended to the history,
	// in the same atomic step as the last-value update; the ID is its
	// history id, greater than every id assigned before. Once a reader has
	// seen an id, every smaller id is already in the history (or trimmed).
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
	// After returns up to limit (1..1000) messages recorded after the id
	// `after`, oldest first, of every topic, skipping expired ones. An empty
	// result means the caller is up to date. It returns an error with code
	// ECodeGap (bridge.ErrGap, wrapped) when messages after `after` may have
	// left the window (after is older than the newest id ever trimmed from it),
	// and ECodeInvalidRequest when after is not an id of the form "<ms>-<seq>".
	//
	// A page shorter than limit means there was nothing more when it was
	// read. The next page starts after the id of the last message
	// returned; expired messages past it are read again, and skipped again.
	After(ctx context.Context, after string, limit int) ([]Message, error)
	// LastID is the newest id ever assigned ("0-0" when none).
	LastID(ctx context.Context) (string, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources; safe to call twice.
	Close() error
}
