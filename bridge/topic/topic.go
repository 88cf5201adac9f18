package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter MQTT allows, in bytes of UTF-8.
// Longer input is rejected, never truncated.
const MaxLen = 65535

// sharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const sharePrefix = "$share/"

// Validation errors. ValidateName and ValidateFilter return exactly one of
// these (unwrapped), so callers can compare with errors.Is and show the
// message to the user.
var (
	// ErrEmpty: the topic name or filter is the empty string.
	ErrEmpty = errors.New("topic must not be empty")
	// ErrTooLong: the topic name or filter is longer than MaxLen bytes.
	ErrTooLong = errors.New("topic must not be longer than 65535 bytes")
	// ErrInvalidUTF8: the topic name or filter is not well-formed UTF-8.
	ErrInvalidUTF8 = errors.New("topic must be valid UTF-8")
	// ErrNullChar: the topic name or filter contains U+0000.
	ErrNullChar = errors.New("topic must not contain the null character (U+0000)")
	// ErrWildcardInName: a topic name (for publishing) contains + or #.
	ErrWildcardInName = errors.New("topic name must not contain wildcards (+ or #)")
	// ErrWildcardPlacement: a filter has a wildcard that is not a whole
	// level, or a # that is not the last level.
	ErrWildcardPlacement = errors.New("a wildcard must be a whole level of the topic filter, and # only the last level (as in a/+/c or a/#)")
	// ErrShareSyntax: a filter starting with $share/ is not
	// $share/{group}/{filter} with a non-empty group free of +, # and /, and
	// a non-empty filter.
	ErrShareSyntax = errors.New("a shared subscription must be $share/{group}/{filter}, with a non-empty group name without +, # or /, and a non-empty filter")
)

// ValidateName checks a topic name for PUBLISH: non-empty, at most MaxLen
// bytes, well-formed UTF-8, no U+0000, and no wildcard (+ or #) anywhere.
//
// Only the MQTT "MUST" rules are enforced: control characters other than
// U+0000 are accepted, and so are names starting with $ (including $share/),
// which are legal by the grammar.
func ValidateName(name string) error {
	if err := validateString(name); err != nil {
		return err
	}
	if strings.ContainsAny(name, "+#") {
		return ErrWildcardInName
	}
	return nil
}

// ValidateFilter checks a subscription filter: the same length, UTF-8 and
// U+0000 rules as ValidateName; + only as a whole level; # only as the whole
// last level. A filter starting with $share/ must be $share/{group}/{filter}
// where group is non-empty without +, # or /, and filter is a non-empty valid
// filter; that inner filter is checked as a plain filter (a second $share/
// inside it is literal text, not another share).
func ValidateFilter(filter string) error {
	if err := validateString(filter); err != nil {
		return err
	}
	if rest, ok := strings.CutPrefix(filter, sharePrefix); ok {
		group, inner, found := strings.Cut(rest, "/")
		if !found || group == "" || strings.ContainsAny(group, "+#") || inner == "" {
			return ErrShareSyntax
		}
		filter = inner
	}
	return validatePlacement(filter)
}

// validateString applies the rules common to names and filters.
func validateString(s string) error {
	switch {
	case s == "":
		return ErrEmpty
	case len(s) > MaxLen:
		return ErrTooLong
	case !utf8.ValidString(s): // also rejects surrogates and overlong forms
		return ErrInvalidUTF8
	case strings.IndexByte(s, 0) >= 0:
		return ErrNullChar
	}
	return nil
}

// validatePlacement checks that every + and # in a plain filter is a whole
// level and that # is the last level.
func validatePlacement(f string) error {
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '+' && c != '#' {
			continue
		}
		if i > 0 && f[i-1] != '/' {
			return ErrWildcardPlacement
		}
		last := i+1 == len(f)
		if !last && (c == '#' || f[i+1] != '/') {
			return ErrWildcardPlacement
		}
	}
	return nil
}

// IsShared reports whether filter starts with $share/. group is the text up
// to the next '/', inner the text after it (empty when there is no further
// '/'). It does not validate; ValidateFilter does.
func IsShared(filter string) (group, inner string, ok bool) {
	rest, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return "", "", false
	}
	group, inner, _ = strings.Cut(rest, "/")
	return group, inner, true
}

// plain strips a $share/{group}/ prefix, so the result is what matches.
func plain(filter string) string {
	if _, inner, ok := IsShared(filter); ok {
		return inner
	}
	return filter
}

// cut splits s at its first '/': the first level, the rest, and whether
// there is a rest (a trailing '/' means one more, empty, level).
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// isWild reports whether a level is a wildcard level.
func isWild(level string) bool { return level == "+" || level == "#" }

// Match reports whether the topic name matches the filter under the MQTT
// rules: + matches exactly one level (which may be empty), # matches the
// parent level and any number of child levels (a/# matches a), other levels
// compare byte for byte (case-sensitive; empty levels count, a//b has three),
// and a filter whose first level is + or # does not match a name whose first
// level starts with $. A $share/{group}/ prefix on the filter is ignored.
//
// Both arguments are assumed valid (ValidateFilter, ValidateName); invalid
// input gives an unspecified result but never panics. Match does not
// allocate.
func Match(filter, name string) bool {
	filter = plain(filter)
	if strings.HasPrefix(name, "$") && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		// A wildcard first level is the whole level in a valid filter.
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := cut(name)
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore:
			return !nmore
		case !nmore:
			// The name ends here; only a trailing # (its parent rule) can
			// match zero further levels.
			return frest == "#"
		}
		filter, name = frest, nrest
	}
}

// Overlap reports whether some topic name exists that both filters match,
// respecting the $ rule: # and $SYS/# do not overlap, nor do +/x and $a/x.
// $share/{group}/ prefixes are ignored. Both filters are assumed valid.
// Overlap is symmetric.
func Overlap(a, b string) bool {
	a, b = plain(a), plain(b)
	fa, _, _ := cut(a)
	fb, _, _ := cut(b)
	// At the first level a wildcard excludes $ names. Two wildcards can agree
	// on a name without $; a wildcard and a literal meet only at the literal.
	if isWild(fa) && !isWild(fb) && strings.HasPrefix(fb, "$") ||
		isWild(fb) && !isWild(fa) && strings.HasPrefix(fa, "$") {
		return false
	}
	for first := true; ; first = false {
		la, ra, ma := cut(a)
		lb, rb, mb := cut(b)
		if la == "#" || lb == "#" {
			// # takes zero or more levels, which covers whatever the other
			// filter's remaining levels match.
			return true
		}
		if la != "+" && lb != "+" && la != lb {
			return false
		}
		if !ma || !mb {
			// One filter ends here, so the name does. A name of one empty
			// level is the empty string, which is not a topic name: /# and
			// + have no name in common.
			if first && la+lb == "+" {
				return false
			}
			if !ma {
				return !mb || rb == "#"
			}
			return ra == "#"
		}
		a, b = ra, rb
	}
}

// LiteralPrefix returns the part of the filter before its first wildcard
// level: every name the filter matches starts with it, so stores can use it
// for a prefix range scan and then check each candidate with Match.
// A $share/{group}/ prefix is dropped first.
//
//	a/b/+/c → "a/b/"
//	a/b/#   → "a/b"   (a/b/# also matches a/b itself)
//	#       → ""
//	a/b     → "a/b"   (no wildcard: the whole filter)
func LiteralPrefix(filter string) string {
	filter = plain(filter)
	rest := filter
	for {
		level, r, more := cut(rest)
		if isWild(level) {
			p := filter[:len(filter)-len(rest)]
			if level == "#" {
				p = strings.TrimSuffix(p, "/")
			}
			return p
		}
		if !more {
			return filter
		}
		rest = r
	}
}

// Covers reports whether every topic name that narrow matches is also
// matched by wide: a/# covers a/+/c and a, + covers x but not $x, and a/+
// does not cover a/# (a/# also matches a). $share/{group}/ prefixes are
// ignored. Both filters are assumed valid.
func Covers(wide, narrow string) bool {
	wide, narrow = plain(wide), plain(narrow)
	wl, _, _ := cut(wide)
	nl, _, _ := cut(narrow)
	// A wildcard first level in wide excludes $ names, which a literal $
	// level in narrow matches.
	if isWild(wl) && !isWild(nl) && strings.HasPrefix(nl, "$") {
		return false
	}
	for {
		wl, wrest, wmore := cut(wide)
		nl, nrest, nmore := cut(narrow)
		switch {
		case wl == "#":
			return true
		case nl == "#":
			// narrow matches its parent and any deeper name; only # does.
			return false
		case wl == "+":
			// covers any single level, wildcard or not
		case nl != wl:
			return false
		}
		switch {
		case !nmore && !wmore:
			return true
		case !nmore:
			// narrow ends; wide must match the same name: only a trailing #
			// matches zero further levels.
			return wrest == "#"
		case !wmore:
			return false
		}
		wide, narrow = wrest, nrest
	}
}
