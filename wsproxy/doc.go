// Package wsproxy is the gorilla/websocket adapter. It serves two
// endpoints:
//
//   - /v1/ws, the JSON stream protocol (docs/websocket.md, asyncapi.yaml).
//     Each connection has one reader and one writer goroutine and a
//     bridge.Feed with a bounded queue; message frames are encoded once per
//     message for every connection (websocket.PreparedMessage cached on the
//     bridge.Event).
//   - /mqtt, MQTT 3.1.1 and 5 over WebSocket proxied to the upstream broker
//     (MQTTServer, docs/mqtt-proxy.md): one broker connection per client,
//     packets passed as they came except CONNECT (rewritten: client id per
//     identity, credentials), SUBSCRIBE and PUBLISH (checked with the
//     bridge's CheckSubscribe and CheckPublish) and the SUBACKs and CONNACK
//     that answer them. Its parsers (mqtt_packets.go) are fuzzed.
//
// It talks to the bridge only: it never imports httpapi or a store, and
// reaches the broker through the Dial function it is given.
package wsproxy
