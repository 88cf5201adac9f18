// Package mqttbridge holds the files that ship inside the binary: the
// OpenAPI document. The service itself lives in the subpackages; see
// README.md.
package mqttbridge

import _ "embed"

// OpenAPI is openapi.yaml, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
