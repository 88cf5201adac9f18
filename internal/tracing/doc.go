// Package tracing builds the OpenTelemetry tracer provider of mqttbridge:
// an OTLP/HTTP exporter, batching, a parent-based ratio sampler and the
// service's resource. It makes no spans itself: the bridge and the HTTP
// API make them through the OpenTelemetry trace API, handed the provider
// by cmd/. It never sets OpenTelemetry's global provider, propagator or
// error handler, and never logs the export headers.
package tracing
