package config

import "testing"

func TestMQTTProxyConfig(t *testing.T) {
	cfg, err := loadYAML(t, "mqtt_proxy:\n  enabled: false\n  credentials: client\n  max_packet_size: 64KiB\n  idle_timeout: 90s\n", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := cfg.MQTTProxy; m.Enabled || m.Credentials != "client" || m.MaxPacketSize != 64*KiB || m.IdleTimeout.String() != "1m30s" {
		t.Errorf("mqtt_proxy = %+v", m)
	}
	for _, c := range []struct{ yaml, key, want string }{
		{"mqtt_proxy:\n  credentials: token\n", "mqtt_proxy.credentials", "broker, client"},
		{"mqtt_proxy:\n  max_packet_size: 100B\n", "mqtt_proxy.max_packet_size", "128B"},
		{"mqtt_proxy:\n  max_packet_size: 1GiB\n", "mqtt_proxy.max_packet_size", "256MiB"},
		{"mqtt_proxy:\n  idle_timeout: 0s\n", "mqtt_proxy.idle_timeout", "positive"},
	} {
		_, err := loadYAML(t, c.yaml, nil, nil)
		requireProblem(t, err, c.key, c.want)
	}
}
