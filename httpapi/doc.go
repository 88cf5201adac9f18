// Package httpapi is the gin adapter of the bridge's HTTP surface: REST
// publish and last-value reads, request/response, the webhook dead letters,
// health, readiness and the OpenAPI document.
//
// It is handed a *bridge.Bridge (and the webhooks as an interface) and
// talks to nothing else: it never imports wsproxy, a store or an MQTT
// client. Every request runs as an identity, found in one place (the
// identify middleware, auth.go) by the Authenticator it is handed, and
// every operation goes through the bridge, which calls the authorizer and
// the limiter.
// Errors have one shape, {"error":{"code":…,"message":…}}, and one table maps
// bridge error codes to statuses (errors.go).
package httpapi
