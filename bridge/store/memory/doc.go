// Package memory is the in-memory bridge.Store for a single instance: the
// last value of every topic in a mutex-protected map, plus a sorted slice of
// topic names that List walks in byte order.
//
// Message ids are "<unix ms>-<seq>" and strictly increase within one Store
// (the Redis XADD rule: a new millisecond restarts the sequence at 0; when the
// clock stands still or goes back, the last millisecond is kept and the
// sequence grows). Expired messages are invisible and removed lazily, when
// Get or List meets them.
//
// Nothing survives a restart, and nothing is shared between instances: a
// fleet uses the Redis store. This package starts no goroutines.
package memory
