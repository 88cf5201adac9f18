// Package config owns the configuration of the mqttbridge command: the Config
// struct, its defaults, loading it from flags, MQTTBRIDGE_* environment
// variables and a YAML file (in that order of precedence), and validating it.
//
// Of the service it imports only the rules it validates against, from the
// packages that own them: bridge/topic (MQTT filters), bridge/acl (topic
// rule patterns) and bridge/webhook (webhook names, URLs, headers, secrets
// and defaults). It starts nothing and opens no connection; cmd/ turns a
// Config into the parts' own configs. The configuration reference of
// docs/operations.md is generated from its sources by a test
// (reference_gen_test.go), not by the binary. Every problem it reports is a *ValidationError that
// names the key as the user writes it in YAML, and no error, String or log
// value it produces ever contains a password.
package config
