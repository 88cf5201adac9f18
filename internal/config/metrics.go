package config

// Metrics configures GET /metrics (Prometheus).
type Metrics struct {
	// Public serves /metrics without credentials even with authentication
	// on (for a scraper inside a trusted network). Default false: with
	// authentication on, /metrics needs credentials like any API route.
	Public bool `yaml:"public"`
}
