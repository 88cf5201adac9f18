// Package httpapi is the gin adapter of the bridge's HTTP surface: REST
// publish and last-value reads, health, readiness and the OpenAPI document.
//
// It is handed a *bridge.Bridge and talks to nothing else: it never imports
// wsproxy, a store or an MQTT client. Every request runs as an identity and
// every operation goes through the bridge, which calls the authorizer.
// Errors have one shape, {"error":{"code":…,"message":…}}, and one table maps
// bridge error codes to statuses (errors.go).
package httpapi
