// Package wsproxy is the gorilla/websocket adapter. It serves two
// endpoints:
//
//   - /v1/ws, the JSON stream protocol (docs/websocket.md, asyncapi.yaml).
//     Each connection has a reader goroutine, a bridge.Feed with a bounded
//     queue, and a writer goroutine only while something is queued, which
//     writes all of it with one system call (batchconn.go); a message's
//     text frame is built once for every connection (cached on the
//     bridge.Event). The writer keeps to MaxPending unacknowledged QoS 1
//     messages, holding the rest back until acks come; a subscribe (whose
//     replay may wait for them) and the frames after it run beside the
//     reader, which goes on reading acks.
//   - /mqtt, MQTT 3.1.1 and 5 over WebSocket proxied to the upstream broker
//     (MQTTServer, docs/mqtt-proxy.md): one broker connection per client,
//     packets passed as they came except CONNECT (rewritten: client id per
//     identity, credentials), SUBSCRIBE and PUBLISH and the SUBACKs and
//     CONNACK that answer them. The bridge decides (CheckSubscribeOn,
//     Forward with its publish rate and metrics, MayReceiveOn for every
//     delivery: the identity's rules and the topics of the proxied
//     broker); the proxy only speaks MQTT. A resumed session loses the
//     filters the identity may no longer have (mqtt_sessions.go). Its
//     parsers (mqtt_packets.go) are fuzzed.
//
// It talks to the bridge only: it never imports httpapi or a store (the
// /v1/ws sessions are the bridge's Resume and Checkpoint), and reaches the
// broker through the Dial function it is given.
package wsproxy
