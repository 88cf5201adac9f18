// Package apitest checks HTTP exchanges in tests against an OpenAPI 3.1
// document (openapi.yaml), with kin-openapi.
//
// New loads and validates the document; Validator.Do validates a request
// against it, sends it, and validates the response: its status must be one
// the operation declares, and its headers and body must match. A mismatch
// fails the test. Validator.DoInvalid is for requests that break the
// document on purpose (to test a 400): it fails the test if the request is
// valid after all, and checks the response like Do. Validator.Routes lists
// every operation, for comparing with a router.
//
// Two things kin-openapi does not do on its own:
//
//   - A path parameter marked `x-multi-segment: true` as the last segment of
//     a path template (the MQTT topic in /v1/topics/{topic}) spans several
//     segments. kin-openapi's routers match a {param} against one segment,
//     so the helper routes with the rest of the path escaped into a single
//     segment (demo/a/b becomes demo%2Fa%2Fb), then validates with the
//     parameter set to the real, percent-decoded rest (demo/a/b).
//   - Raw bodies of any media type: the helper registers
//     openapi3filter.FileBodyDecoder for "*/*" and "text/plain" (process
//     wide, once), so a body declared as `type: string, format: binary`
//     under `*/*` validates whatever its Content-Type.
//
// The document's servers are ignored: requests are routed by path alone,
// so an httptest server on any address matches.
//
// This package is for tests only; it must not be imported by production
// code.
package apitest
