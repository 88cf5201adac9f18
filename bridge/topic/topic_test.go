package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"a", nil},
		{"a/b/c", nil},
		{"/", nil},
		{"//", nil},
		{"/a/", nil},
		{" ", nil},
		{"A/a", nil},
		{"$SYS/broker/uptime", nil},
		{"$share/g/x", nil}, // legal by the grammar
		{"$share/g", nil},
		{"$share", nil},
		{"sensor/温度/°C", nil},
		{"\x01\x1f\u007f\u0085\u009f", nil}, // SHOULD NOT, not MUST NOT
		{"\uFFFF\uFFFE", nil},               // non-characters are well-formed
		{"\U0010FFFF", nil},
		{strings.Repeat("a", MaxLen), nil},
		{strings.Repeat("é", MaxLen/2) + "a", nil}, // 65535 bytes, multi-byte
		{strings.Repeat("/", MaxLen), nil},

		{"", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), ErrTooLong},
		{strings.Repeat("é", MaxLen/2+1), ErrTooLong}, // 65536 bytes
		{"\xff", ErrInvalidUTF8},
		{"a/\xc3", ErrInvalidUTF8},           // truncated sequence
		{"\xed\xa0\x80", ErrInvalidUTF8},     // surrogate U+D800
		{"\xc0\xaf", ErrInvalidUTF8},         // overlong '/'
		{"\xf4\x90\x80\x80", ErrInvalidUTF8}, // above U+10FFFF
		{"\x00", ErrNullChar},
		{"a/\x00/b", ErrNullChar},
		{"a\x00", ErrNullChar},
		{"+", ErrWildcardInName},
		{"#", ErrWildcardInName},
		{"a/+", ErrWildcardInName},
		{"a/#", ErrWildcardInName},
		{"a+", ErrWildcardInName},
		{"a#b", ErrWildcardInName},
		{"$share/g/+", ErrWildcardInName},
	}
	for _, tt := range tests {
		if got := ValidateName(tt.name); got != tt.want {
			t.Errorf("ValidateName(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   error
	}{
		{"a", nil},
		{"a/b", nil},
		{"#", nil},
		{"+", nil},
		{"/", nil},
		{"+/+", nil},
		{"/+", nil},
		{"+/", nil},
		{"/#", nil},
		{"a/#", nil},
		{"a//#", nil},
		{"a/+/b", nil},
		{"+/+/#", nil},
		{"$SYS/#", nil},
		{"$share", nil},    // a plain level named $share
		{"$sharex/+", nil}, // not a share
		{"$SHARE/g", nil},  // the prefix is case-sensitive
		{"$share/g/#", nil},
		{"$share/g/a/+/b", nil},
		{"$share/g/+", nil},
		{"$share/g//", nil},
		{"$share/g/$share/h/x", nil}, // the inner filter is plain
		{"$share/g/$share/h", nil},
		{"$share/g-1.ü/x", nil},
		{strings.Repeat("a", MaxLen), nil},
		{strings.Repeat("+/", MaxLen/2) + "#", nil},
		{"$share/g/" + strings.Repeat("a", MaxLen-len("$share/g/")), nil},

		{"", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), ErrTooLong},
		{"$share/g/" + strings.Repeat("a", MaxLen+1-len("$share/g/")), ErrTooLong},
		{"a/\xff", ErrInvalidUTF8},
		{"\xed\xbf\xbf/#", ErrInvalidUTF8},
		{"$share/\xff/x", ErrInvalidUTF8},
		{"a/\x00", ErrNullChar},
		{"$share/g\x00/x", ErrNullChar},

		{"a/#/b", ErrWildcardPlacement},
		{"#/a", ErrWildcardPlacement},
		{"#/", ErrWildcardPlacement},
		{"#/#", ErrWildcardPlacement},
		{"a+", ErrWildcardPlacement},
		{"+a", ErrWildcardPlacement},
		{"a/b+", ErrWildcardPlacement},
		{"a/+b/c", ErrWildcardPlacement},
		{"++", ErrWildcardPlacement},
		{"#a", ErrWildcardPlacement},
		{"a#", ErrWildcardPlacement},
		{"a/b#", ErrWildcardPlacement},
		{"##", ErrWildcardPlacement},
		{"+#", ErrWildcardPlacement},
		{"#+", ErrWildcardPlacement},
		{"$share/g/a#", ErrWildcardPlacement},
		{"$share/g/#/a", ErrWildcardPlacement},

		{"$share/", ErrShareSyntax},
		{"$share//x", ErrShareSyntax},
		{"$share//", ErrShareSyntax},
		{"$share/g", ErrShareSyntax},
		{"$share/g/", ErrShareSyntax},
		{"$share/g+/x", ErrShareSyntax},
		{"$share/+/x", ErrShareSyntax},
		{"$share/#/x", ErrShareSyntax},
		{"$share/g#/x", ErrShareSyntax},
		{"$share/#", ErrShareSyntax},
	}
	for _, tt := range tests {
		if got := ValidateFilter(tt.filter); got != tt.want {
			t.Errorf("ValidateFilter(%.40q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestErrorsAreDistinctAndReadable(t *testing.T) {
	errs := []error{ErrEmpty, ErrTooLong, ErrInvalidUTF8, ErrNullChar, ErrWildcardInName, ErrWildcardPlacement, ErrShareSyntax}
	for i, a := range errs {
		if a.Error() == "" || strings.Contains(a.Error(), "topic:") {
			t.Errorf("error %d has message %q", i, a.Error())
		}
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors %d and %d are the same", i, j)
			}
		}
	}
}

func TestIsShared(t *testing.T) {
	tests := []struct {
		filter, group, inner string
		ok                   bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g/", "g", "", true},
		{"$share/g", "g", "", true},
		{"$share//x", "", "x", true},
		{"$share", "", "", false},
		{"$SHARE/g/x", "", "", false},
		{"a/$share/g/x", "", "", false},
		{"#", "", "", false},
	}
	for _, tt := range tests {
		g, in, ok := IsShared(tt.filter)
		if g != tt.group || in != tt.inner || ok != tt.ok {
			t.Errorf("IsShared(%q) = %q, %q, %v, want %q, %q, %v", tt.filter, g, in, ok, tt.group, tt.inner, tt.ok)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"a", "a", true},
		{"a", "A", false}, // case-sensitive
		{"a", "a/", false},
		{"a", "/a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},

		// empty levels count
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"a/b", "a//b", false},
		{"/", "/", true},
		{"/", "//", false},
		{"a/", "a", false},

		// +
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},  // two empty levels
		{"a/+", "a/", true}, // + matches an empty level
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/b/d", false},
		{"+/b", "/b", true},
		{"/+", "/a", true},
		{"+/+/+", "a/b", false},

		// #
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true}, // the parent level
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b", false},
		{"a/#", "ab", false},
		{"a/b/#", "a", false},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"+/#", "a", true},
		{"/#", "/", true},
		{"/#", "a", false},
		{"a//#", "a/", true},

		// the $ rule
		{"#", "$SYS/uptime", false},
		{"#", "$SYS", false},
		{"+/uptime", "$SYS/uptime", false},
		{"+", "$", false},
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/uptime", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/uptime", true},
		{"a/+", "a/$b", true}, // only the first level is special
		{"a/#", "a/$b", true},
		{"#", "a$", true},
		{"#", "/$a", true},
		{"+/+", "/$a", true},

		// $share/ is stripped from the filter
		{"$share/g/a/+", "a/b", true},
		{"$share/g/#", "x/y", true},
		{"$share/g/#", "$SYS/x", false},
		{"$share/g/a", "$share/g/a", false},
		{"$share/g/$share/h/a", "$share/h/a", true},
		{"$share", "$share", true},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.name); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (the test's reference is wrong)", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		Match("$share/g/a/+/c/#", "a/b/c/d/e")
	})
	if n != 0 {
		t.Errorf("Match allocates %v times per call", n)
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a", "A", false},
		{"#", "a", true},
		{"#", "#", true},
		{"#", "+", true},
		{"#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b", true},
		{"a/#", "b/#", false},
		{"a/#", "+/b", true},
		{"a/#", "a/+/c/d", true},
		{"a/b/#", "a", false},
		{"a/b/#", "a/#", true},
		{"a/+", "a", false},
		{"a/+", "a/#", true},
		{"a/+", "+/b", true},
		{"a/+/c", "+/b/+", true},
		{"a/+/c", "+/b/d", false},
		{"+", "+/+", false},
		{"+", "a/b", false},
		{"+/+", "/", true},
		{"+", "/", false},
		{"a//b", "a/+/b", true},
		{"a//b", "a/b", false},
		{"a/+/#", "a", false},
		{"+/#", "a", true},
		{"/#", "+", false}, // only the empty string, which is no name
		{"/#", "+/#", true},
		{"/#", "+/+", true},
		{"/#", "#", true},

		// the $ rule
		{"#", "$SYS/#", false},
		{"#", "$SYS", false},
		{"+/x", "$a/x", false},
		{"+", "$a", false},
		{"+/#", "$SYS/+", false},
		{"#", "+", true},
		{"+/x", "+/x", true},
		{"$SYS/#", "$SYS/+", true},
		{"$SYS/#", "$SYS", true},
		{"#", "a/$b", true},
		{"a/+", "a/$b", true},

		// $share/ is ignored
		{"$share/g/a/#", "a/b", true},
		{"$share/g/a", "$share/h/a", true},
		{"$share/g/#", "$SYS/x", false},
		{"$share/g/a", "b", false},
	}
	for _, tt := range tests {
		if got := Overlap(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlap(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestOverlapExhaustive checks Overlap against its definition on every small
// filter pair: true exactly when some name of at most four levels, built from
// the filters' literals and one fresh level, matches both.
func TestOverlapExhaustive(t *testing.T) {
	filters := genFilters([]string{"a", "b", "", "$a", "+", "#"}, 3)
	names := genNames([]string{"a", "b", "", "$a", "w"}, 4)
	const words = 13 // ceil(len(names)/64), checked below
	if (len(names)+63)/64 != words {
		t.Fatalf("%d names need another bitset size", len(names))
	}
	sets := make([][words]uint64, len(filters))
	for i, f := range filters {
		for j, n := range names {
			if Match(f, n) {
				sets[i][j/64] |= 1 << (j % 64)
			}
		}
	}
	for i, a := range filters {
		for j, b := range filters {
			want := false
			for w := range words {
				want = want || sets[i][w]&sets[j][w] != 0
			}
			if got := Overlap(a, b); got != want {
				t.Errorf("Overlap(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestLiteralPrefix(t *testing.T) {
	tests := []struct{ filter, want string }{
		{"a/b/+/c", "a/b/"},
		{"a/b/+", "a/b/"},
		{"+", ""},
		{"+/a", ""},
		{"#", ""},
		{"a/b", "a/b"},
		{"a", "a"},
		{"a/", "a/"},
		{"/", "/"},
		{"a/b/#", "a/b"}, // a/b/# matches a/b
		{"a//#", "a/"},
		{"/#", ""},
		{"a/+/#", "a/"},
		{"$SYS/#", "$SYS"},
		{"$share/g/a/+", "a/"},
		{"$share/g/a/b", "a/b"},
		{"$share/g/#", ""},
	}
	for _, tt := range tests {
		if got := LiteralPrefix(tt.filter); got != tt.want {
			t.Errorf("LiteralPrefix(%q) = %q, want %q", tt.filter, got, tt.want)
		}
	}
	// Every name a filter matches starts with its literal prefix.
	for _, f := range genFilters([]string{"a", "", "+", "#"}, 3) {
		p := LiteralPrefix(f)
		for _, n := range genNames([]string{"a", "", "b"}, 4) {
			if Match(f, n) && !strings.HasPrefix(n, p) {
				t.Errorf("Match(%q, %q) but LiteralPrefix is %q", f, n, p)
			}
		}
	}
}

// refMatch is a second, deliberately simple implementation of Match.
func refMatch(filter, name string) bool {
	if _, inner, ok := IsShared(filter); ok {
		filter = inner
	}
	fl, nl := strings.Split(filter, "/"), strings.Split(name, "/")
	if strings.HasPrefix(nl[0], "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i == len(nl) {
			return false
		}
		if f != "+" && f != nl[i] {
			return false
		}
	}
	return len(fl) == len(nl)
}

// genFilters returns every valid filter of 1..depth levels drawn from levels.
func genFilters(levels []string, depth int) []string {
	var out []string
	for _, p := range genPaths(levels, depth) {
		if ValidateFilter(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// genNames returns every valid name of 1..depth levels drawn from levels.
func genNames(levels []string, depth int) []string {
	var out []string
	for _, p := range genPaths(levels, depth) {
		if ValidateName(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// genPaths returns every path of 1..depth levels drawn from levels.
func genPaths(levels []string, depth int) []string {
	var out []string
	var rec func(prefix string, d int)
	rec = func(prefix string, d int) {
		for _, l := range levels {
			p := l
			if d > 0 {
				p = prefix + "/" + l
			}
			out = append(out, p)
			if d+1 < depth {
				rec(p, d+1)
			}
		}
	}
	rec("", 0)
	return out
}
