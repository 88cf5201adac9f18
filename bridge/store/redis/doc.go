// Package redisstore is the Redis bridge.Store that a fleet of bridge
// instances shares (Redis 5 or later, tested with 7; standalone, Sentinel or
// Cluster, through any redis.UniversalClient). It owns its keys and two Lua scripts; it does not
// own the client: Close releases only the Store, and whoever built the
// client closes it.
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
//	{P}lastid      string, the last id issued ("<ms>-<seq>").
//
// The <topic> in a key is the topic name byte for byte, unescaped: the "lv:"
// part keeps it apart from the other keys.
//
// # Ids and atomicity
//
// Put runs one script that takes the time from Redis (TIME), derives the id
// "<ms>-<seq>" from {P}lastid with the XADD rule (a new millisecond restarts
// the sequence at 0; when Redis' clock stands still or goes back the last
// millisecond is kept and the sequence grows), and writes the hash and the
// index entry, or deletes both for a retained empty payload or a message
// already expired. Ids therefore increase across every instance sharing the
// prefix.
//
// Expired hashes vanish through Redis expiry (and Get and List also check
// the expiry against the local clock). Their index entries stay until a List
// meets them and removes them (ZREM only when the hash is really gone, in a
// script, so a concurrent Put is never undone).
//
// # Errors
//
// Every failure to reach Redis, including the per-call Timeout, is an
// error for which errors.As finds a *bridge.Error with code
// store_unavailable; the cause stays reachable with errors.Is (for example
// context.DeadlineExceeded).
package redisstore
