package config

import "slices"

// EnvVars returns every environment variable Load reads: MQTTBRIDGE_CONFIG
// and the MQTTBRIDGE_* variable of each setting, sorted.
func EnvVars() []string {
	out := []string{EnvConfig}
	for _, s := range settings {
		if s.env != "" {
			out = append(out, s.env)
		}
	}
	slices.Sort(out)
	return out
}
