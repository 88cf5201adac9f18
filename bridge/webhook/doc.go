// Package webhook delivers the messages of topic filters to HTTP endpoints
// as signed POST requests (Standard Webhooks), with retries, a dead-letter
// list and replay. It is a consumer of the bridge, like a WebSocket client:
// it reads the message history through a consumer group of the store
// (bridge.Groups), so that each message is delivered once per webhook for
// the whole fleet, and takes a lease per webhook (bridge.Leases), so that
// one instance at a time delivers and messages of one topic go out in
// order. It never imports a store, an MQTT client or a web framework.
//
// # Delivery
//
// The instance that holds a webhook's lease ("webhook:<name>", renewed
// every third of claim_idle) first takes over what a previous holder left
// pending (XAUTOCLAIM of entries idle for claim_idle), delivers it, and
// only then reads new messages. Messages of one topic are delivered one
// at a time, in history order; up to concurrency topics at once. A message
// is acknowledged in the group after a 2xx answer, or after it was
// dead-lettered; messages that match none of the filters, and expired
// ones, are acknowledged without delivery.
//
// Guarantees: every message recorded while the webhook exists is delivered
// at least once or dead-lettered, unless it leaves the history window
// (history.size, history.age) before the webhook reads it (counted as
// lost and logged). A message is delivered more than once only when an
// attempt's outcome is unknown: the receiver did not answer within timeout
// (it is retried), or the delivering instance stopped (or lost its lease)
// after sending and before acknowledging; the webhook-id header is the same
// on every attempt, so receivers can drop duplicates. Per-topic order holds
// while the receiver answers in time; a retried message holds back the
// later messages of its topic, and a takeover delivers the previous
// holder's unfinished messages before any newer one.
package webhook
