// Package bridge is the domain of mqttbridge: the Message, the Bridge service
// (publish, batches all or nothing, read last values, list, delete,
// request/response, WebSocket sessions kept between connections, and the
// admission of what an adapter carries to a broker itself: forward.go), the
// Authorizer every operation goes through (bridge/acl implements it), the
// Limiter every publish and request goes through (bridge/ratelimit), the
// Limits on topics and connections, and the interfaces (Upstream,
// Replier, Store, Groups, ...) that adapters implement.
//
// It imports no web framework and no driver: gin, gorilla, go-redis and paho
// live in the adapters beside it (httpapi, wsproxy, bridge/mqtt,
// bridge/store/...), and only cmd/ knows every concrete type.
// Of OpenTelemetry it uses only the API (trace, propagation, semconv) to
// make spans and carry the W3C trace context in user properties
// (trace.go); the SDK and the exporter are wired in cmd/.
package bridge
