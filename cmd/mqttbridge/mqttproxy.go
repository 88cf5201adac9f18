package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge/mqtt"
	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/wsproxy"
)

// startMQTTProxy builds MQTT over WebSocket (GET /mqtt) to br, the first
// broker (with the embedded broker, its TCP listener). It returns nil when
// mqtt_proxy.enabled is false.
func (m *Main) startMQTTProxy(br config.Broker) (http.Handler, error) {
	cfg := m.Config
	if !cfg.MQTTProxy.Enabled {
		return nil, nil
	}
	d, err := mqtt.NewDialer(m.brokerConfig(br))
	if err != nil {
		return nil, fmt.Errorf("mqtt_proxy: broker %q: %w", br.Name, err)
	}
	s, err := wsproxy.NewMQTT(wsproxy.MQTTConfig{
		Bridge:          m.Bridge,
		Dial:            d.Dial,
		Broker:          br.Name,
		PassCredentials: cfg.MQTTProxy.Credentials == "client",
		Username:        d.Username,
		Password:        d.Password,
		MaxPacketSize:   int(cfg.MQTTProxy.MaxPacketSize),
		IdleTimeout:     time.Duration(cfg.MQTTProxy.IdleTimeout),
		ConnectTimeout:  time.Duration(cfg.MQTT.ConnectTimeout),
		WriteTimeout:    time.Duration(cfg.WS.WriteTimeout),
		AllowedOrigins:  cfg.WS.AllowedOrigins,
		Authenticator:   m.sec.forWS(),
		Logger:          m.Logger.With("component", "mqtt-proxy", "broker", br.Name),
	})
	if err != nil {
		return nil, err
	}
	m.mqtt = s
	return s, nil
}
