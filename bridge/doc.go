// Package bridge is the domain of mqttbridge: the Message, the Bridge service
// (publish, read last values, list, delete), the Authorizer every operation
// goes through, and the interfaces (Upstream, Store) that adapters implement.
//
// It imports no web framework and no driver: gin, gorilla, go-redis and paho
// live in the adapters beside it (httpapi, wsproxy, bridge/mqtt,
// bridge/store/...), and only cmd/ knows every concrete type.
package bridge
