// Package memory is the in-memory bridge.Store for a single instance: the
// last value of every topic in a mutex-protected map, plus a sorted slice of
// topic names that List walks in byte order, and the message history in a
// ring buffer.
//
// Message ids are "<unix ms>-<seq>" and strictly increase within one Store
// (the Redis XADD rule: a new millisecond restarts the sequence at 0; when the
// clock stands still or goes back, the last millisecond is kept and the
// sequence grows). Expired messages are invisible and removed lazily, when
// Get or List meets them; After skips them.
//
// # History
//
// Put assigns the id, updates the last value and appends the message to the
// history under one mutex, so a reader that sees an id has every smaller id
// too. Put then trims the history exactly to its window, from the oldest
// end: beyond Config.HistorySize messages, and every message whose id's
// millisecond is older than Config.HistoryAge at the time of the Put. The
// newest id ever trimmed is kept: After from an older id returns
// bridge.ErrGap. Nothing is trimmed between Puts, as in the Redis store.
// After finds its start by binary search.
//
// Nothing survives a restart, and nothing is shared between instances: a
// fleet uses the Redis store. A client resuming with an id from before a
// restart cannot be told that the messages in between are gone (the new
// Store has trimmed nothing). This package starts no goroutines.
package memory
