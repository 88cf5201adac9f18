package config

import "time"

// MQTTProxy configures MQTT over WebSocket at GET /mqtt: MQTT 3.1.1 and 5
// clients (MQTT.js, Paho JS) reach the first broker through the bridge,
// with the bridge's authentication and topic permissions. It uses
// ws.allowed_origins, ws.write_timeout, mqtt.connect_timeout and
// limits.connections_per_identity as /v1/ws does.
type MQTTProxy struct {
	// Enabled serves /mqtt. Default true.
	Enabled bool `yaml:"enabled"`
	// Credentials says what user name and password the broker gets:
	// "broker", the bridge's own for that broker (mqtt.username and
	// mqtt.password, or the broker's in mqtt.brokers), or "client", those
	// of the client's CONNECT, passed through. Default "broker".
	Credentials string `yaml:"credentials"`
	// MaxPacketSize is the largest MQTT packet a client may send, fixed
	// header included; 128B to 256MiB. Default 1MiB.
	MaxPacketSize ByteSize `yaml:"max_packet_size"`
	// IdleTimeout closes a connection silent for 1.5 times its keep alive,
	// or for this long when it has none or a longer one. Default 5m.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// defaultMQTTProxy fills the defaults of the section in this file.
func defaultMQTTProxy(c *Config) {
	c.MQTTProxy = MQTTProxy{Enabled: true, Credentials: "broker", MaxPacketSize: MiB, IdleTimeout: Duration(5 * time.Minute)}
}

func (c Config) validateMQTTProxy(p *problems) {
	m := c.MQTTProxy
	switch m.Credentials {
	case "broker", "client":
	default:
		p.add("mqtt_proxy.credentials", "%q is not one of broker, client", m.Credentials)
	}
	if m.MaxPacketSize < 128 || m.MaxPacketSize > 256*MiB {
		p.add("mqtt_proxy.max_packet_size", "must be between 128B and 256MiB, got %d bytes", int64(m.MaxPacketSize))
	}
	checkPositive(p, "mqtt_proxy.idle_timeout", m.IdleTimeout)
}
