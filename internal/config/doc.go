// Package config owns the configuration of the mqttbridge command: the Config
// struct, its defaults, loading it from flags, MQTTBRIDGE_* environment
// variables and a YAML file (in that order of precedence), and validating it.
//
// It imports nothing of the service but bridge/topic (for the MQTT filter
// rules), starts nothing and opens no connection; cmd/ turns a Config into
// the parts' own configs. Every problem it reports is a *ValidationError that
// names the key as the user writes it in YAML, and no error, String or log
// value it produces ever contains a password.
package config
