package topic

import (
	"strings"
)

// CoveredBy reports whether every topic name that filter matches is matched
// by at least one of the filters in by: the union of by covers filter. It
// is Covers for a set: a/# is covered by {a, a/+/#} although neither covers
// it alone. The $ rule holds: a filter starting with a literal $ level is
// covered only by filters that name that level. $share/{group}/ prefixes
// are ignored. Every filter is assumed valid; an empty by covers nothing.
//
// It decides soundly: when it says true, no name matched by filter escapes
// by (FuzzCoveredBy checks this against Match).
func CoveredBy(filter string, by []string) bool {
	if len(by) == 0 {
		return false
	}
	rules := make([][]string, len(by))
	for i, f := range by {
		rules[i] = strings.Split(plain(f), "/")
	}
	return coveredBy(strings.Split(plain(filter), "/"), rules, true)
}

// coveredBy decides whether every continuation of a name that the filter
// levels n match is matched by one of the rule levels rs. first marks the
// first level of a name, where wildcards do not match $ levels.
func coveredBy(n []string, rs [][]string, first bool) bool {
	if len(n) == 0 {
		// The name ends here: a rule that ends here too, or a trailing #
		// (which matches its parent), matches it.
		for _, r := range rs {
			if len(r) == 0 || len(r) == 1 && r[0] == "#" {
				return true
			}
		}
		return false
	}
	level := n[0]
	dollar := first && level != "+" && level != "#" && strings.HasPrefix(level, "$")
	if !dollar {
		for _, r := range rs {
			if len(r) > 0 && r[0] == "#" {
				return true // matches this level and everything after it
			}
		}
	}
	switch level {
	case "#":
		// The name may end here (but a name has at least one level) ...
		if !first && !coveredBy(nil, rs, false) {
			return false
		}
		// ... or go on with any level at all: only rules with + there can
		// match a level none of them names, and what they cover then
		// holds for named levels as well.
		return coveredBy(n, advance(rs, "+", false), false)
	case "+":
		return coveredBy(n[1:], advance(rs, "+", false), false)
	default:
		return coveredBy(n[1:], advance(rs, level, !dollar), false)
	}
}

// advance keeps the rules whose first level matches level (exactly, or by
// + when plus), without that level.
func advance(rs [][]string, level string, plus bool) [][]string {
	var out [][]string
	for _, r := range rs {
		if len(r) > 0 && (r[0] == level || plus && r[0] == "+") {
			out = append(out, r[1:])
		}
	}
	return out
}
