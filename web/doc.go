// Package web holds the browser side of mqttbridge: the console page served
// at / and client.js, the dependency-free ES module that speaks the
// WebSocket protocol of GET /v1/ws (docs/websocket.md), with its TypeScript
// declarations. The files are embedded in the binary; Handler serves them.
//
// It knows nothing of the bridge: the page talks to the server only over
// /v1/ws, like any other client. The browser tests live in e2e/ (Node,
// playwright-core and Debian's Chromium), driven by e2e_test.go.
package web
