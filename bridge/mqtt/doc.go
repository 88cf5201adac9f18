// Package mqtt is the MQTT v5 adapter of the bridge: Conn implements
// bridge.Upstream on top of eclipse/paho.golang's autopaho.
//
// A Conn owns one connection to one broker (mqtt://, mqtts://, ws://, wss://)
// with clean start and no session: it reconnects with capped exponential
// backoff, resubscribes to its filters after every (re)connect and checks each
// SUBACK, hands incoming messages to one callback goroutine through a bounded
// queue, and answers Publish fast and truthfully (ErrUnavailable when down,
// the broker's reason code when refused, ErrTimeout when the outcome is
// unknown). It never queues a publish for later.
//
// It must not know about stores, HTTP or any other adapter; cmd/ wires it.
package mqtt
