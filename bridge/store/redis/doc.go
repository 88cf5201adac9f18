// Package redisstore is the Redis bridge.Store that a fleet of bridge
// instances shares (Redis 7.0 or later: XADD/XTRIM MINID, XSETID
// MAXDELETEDID, XINFO STREAM max-deleted-entry-id, script flags;
// standalone, Sentinel or Cluster, through any redis.UniversalClient). It
// owns its keys and four Lua scripts; it does not own the client: Close
// releases only the Store, and whoever built the client closes it.
//
// # Key layout
//
// Every key starts with the hash tag "{" + KeyPrefix + "}" (default
// "{mqttbridge:}"), so all keys of one store live in one Redis Cluster slot and
// a script may touch several of them. KeyPrefix therefore must not contain
// '{' or '}'; topic names may contain anything, since only the first {...}
// of a key is its hash tag.
//
//	{P}lv:<topic>  hash, the topic's last value: id, payload (raw bytes),
//	               qos ("0".."2"), retain ("0"/"1"), props (compact JSON of
//	               the MQTT v5 properties, correlation data base64, user
//	               properties an ordered list of [name, value]; "" when none),
//	               received_at (Unix ms). PEXPIREAT at the message expiry.
//	{P}topics      sorted set, all scores 0, members the topic names that
//	               have a last value: List walks it with ZRANGEBYLEX,
//	               bounded by the filter's literal prefix.
//	{P}history     stream, the message history. The entry id is the
//	               message id; the fields are those of the last value hash,
//	               with topic in place of id: topic, payload, qos, retain,
//	               props, received_at, then n, the entry's sequence
//	               number, always all seven in this order, so Redis keeps
//	               the names once per stream node and each entry holds only
//	               the values (entries written before n existed have only
//	               the six others). A retained empty payload
//	               (a delete) is an entry like any other. The stream's
//	               last-generated-id is the newest id ever assigned, its
//	               max-deleted-entry-id the newest id trimmed.
//	{P}history:seq counter, the n of the newest entry: the put script
//	               adds its batch's size (INCRBY) and numbers the batch's
//	               entries after the old value, so a tail that reads an n
//	               other than the next one knows how many entries it lost.
//	{P}secret:<name> string, 32 random bytes that every instance shares
//	               (SharedSecret, SET NX GET): "cursor" is the key that
//	               seals list cursors.
//	{P}ticket:<h>  string, a one-time ticket (tickets.go): <h> is the hex
//	               SHA-256 of the ticket, the value its identity (JSON:
//	               name, kind, issuer, client_id, rules, expires); PX the
//	               ticket's TTL. Take is GETDEL: one redeem, fleet-wide.
//	{P}tickets:<identity key>
//	               sorted set, that identity's outstanding ticket hashes
//	               scored by their expiry (ms, Redis' clock): the
//	               per-identity bound. PEXPIREAT its newest ticket's expiry.
//
// The <topic> in a key is the topic name byte for byte, unescaped: the "lv:"
// part keeps it apart from the other keys.
//
// Before the history, the store kept the last id in {P}lastid; it is
// neither read nor written any more, and may be deleted. None of the keys
// but the last value hashes has a TTL, and Redis must not evict them
// (maxmemory-policy noeviction or volatile-*): a lost {P}history would
// start again empty, and a client resuming from an older id could not be
// told what it missed.
//
// # Ids and atomicity
//
// Put (and PutBatch, for several messages at once: the ingest's group
// commit) runs one script that appends the message to {P}history with XADD *,
// so Redis assigns the id "<ms>-<seq>" (a new millisecond restarts the
// sequence at 0; when Redis' clock stands still or goes back the last
// millisecond is kept and the sequence grows), trims the history, and
// writes the hash (with that id) and the index entry, or deletes both for a
// retained empty payload or a message already expired (whose history entry
// After skips). Ids therefore increase across every instance sharing the
// prefix, and a reader that sees an id has every smaller one: Redis runs
// the script as one step.
//
// Expired hashes vanish through Redis expiry (and Get and List also check
// the expiry against the local clock). Their index entries stay until a List
// meets them and removes them (ZREM only when the hash is really gone, in a
// script, so a concurrent Put is never undone).
//
// # History window
//
// The put script trims exactly, not with "~". It finds the newest entry to
// drop: the oldest beyond HistorySize (XLEN, then XRANGE COUNT n from the
// old end, or from the new end when HistorySize was lowered and that end
// is nearer), or, when the
// oldest entry that would stay has a millisecond more than HistoryAge
// before the new id's, the newest such entry (XREVRANGE COUNT 1, asked only
// then: an XREVRANGE that finds nothing walks the stream). It removes every
// entry up to it with XTRIM MINID and records it with XSETID MAXDELETEDID,
// because trimming does not update max-deleted-entry-id (only XDEL does).
// The script trims once per call, after all of its messages.
// In a steady flow a Put reads the one or two oldest entries and drops one;
// it costs about what a Put with "MAXLEN ~" costs (BenchmarkPut).
// Approximate trimming would drop whole stream nodes only (up to
// stream-node-max-entries, 100, or stream-node-max-bytes, 4 KiB: a
// server-wide setting), so the window would depend on payload sizes and
// the server, differ from the memory store's, and hide which id was
// trimmed last. Age is enforced when a message is added, as in the memory
// store: a quiet history keeps its messages.
//
// After runs a read-only script (flag no-writes) that reads
// max-deleted-entry-id (XINFO STREAM) and an XRANGE page in one step:
// resuming from an id older than that mark is bridge.ErrGap. It skips
// expired entries against the local clock, reading further batches until
// its page is full or the stream ends; each batch checks the mark again.
// LastID is the stream's last-generated-id, which trimming keeps.
//
// # Consumer groups
//
// Groups (groups.go, for webhooks) are Redis consumer groups on
// {P}history named after the group ("webhook:<name>"): XREADGROUP hands
// out new entries, XACK acknowledges, XAUTOCLAIM moves the pending entries
// of a consumer that stopped. A group's dead letters are the stream
// {P}group:<group>:dead, its replay queue {P}group:<group>:replay; their
// entries hold the message's fields plus msg_id, attempts, error and
// failed_at. Because the history is trimmed to its window, a group that
// falls behind it loses entries: the read reports it (max-deleted-entry-id
// above the group's last-delivered-id).
//
// # Errors
//
// Every failure to reach Redis, including the per-call Timeout, is an
// error for which errors.As finds a *bridge.Error with code
// store_unavailable; the cause stays reachable with errors.Is (for example
// context.DeadlineExceeded).
package redisstore
