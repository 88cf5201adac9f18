// Package acl is the bridge.Authorizer of a deployment with authentication:
// topic permissions as Mosquitto-style patterns. An identity's Rules list
// MQTT filters per action (publish, subscribe, request) in which %u (the
// identity's name) and %c (its client id) stand for whole levels.
//
// Deny by default: an action is allowed only by a rule of that action. A
// topic name is allowed when a rule matches it; a filter only when the
// rules together match every topic the filter can match (topic.CoveredBy).
// $-topics are matched only by rules that name their first level, never by
// a leading wildcard, and never by a %u or %c first level.
//
// It is pure: no I/O, no goroutines, no state. It must not import an
// adapter.
package acl
