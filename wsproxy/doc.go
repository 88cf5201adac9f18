// Package wsproxy is the gorilla/websocket adapter: the JSON stream protocol
// at /v1/ws (docs/websocket.md, asyncapi.yaml). Each connection has one
// reader and one writer goroutine and a bridge.Feed with a bounded queue;
// message frames are encoded once per message for every connection
// (websocket.PreparedMessage cached on the bridge.Event).
//
// It talks to the bridge only: it never imports httpapi or a store.
package wsproxy
