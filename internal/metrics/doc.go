// Package metrics owns the Prometheus registry of one mqttbridge instance
// (never the global default registry, so that tests run several in one
// process) and implements bridge.Metrics and the HTTP request observer of
// httpapi. It reads the state that other parts keep themselves (broker
// connections, webhook statistics, subscriptions) when scraped. It must
// not be imported by bridge, httpapi or wsproxy: cmd wires it.
package metrics
