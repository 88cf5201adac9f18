package mqttbridge

import _ "embed"

// AsyncAPI is asyncapi.yaml, the AsyncAPI 3.0 description of the WebSocket
// protocol at /v1/ws (docs/websocket.md); internal/frametest checks frames
// against it.
//
//go:embed asyncapi.yaml
var AsyncAPI []byte
