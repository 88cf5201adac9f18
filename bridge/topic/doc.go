// Package topic owns the MQTT v5 topic rules: validation of topic names and
// topic filters (including shared subscriptions, $share/{group}/{filter}),
// matching a name against a filter with the $-topic rule, deciding whether two
// filters overlap, and a filter trie for matching one name against many
// filters.
//
// It is pure: standard library only, no I/O, no goroutines, no global state.
// It must not import anything of the project; bridge and the adapters import
// it, never the reverse.
package topic
