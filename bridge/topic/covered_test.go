package topic

import (
	"strings"
	"testing"
)

func TestCoveredBy(t *testing.T) {
	for _, c := range []struct {
		filter string
		by     string // filters separated by spaces
		want   bool
	}{
		{"a/b", "", false},
		{"a/b", "a/b", true},
		{"a/b", "a/+", true},
		{"a/b", "#", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b a/c", false},
		{"a/+", "a/+", true},
		{"a/+", "a/#", true},
		{"a/#", "a/+", false},
		{"a/#", "a a/+/#", true},
		{"a/#", "a/+/#", false},
		{"a/#", "a", false},
		{"a/#", "a/#", true},
		{"#", "+ +/+/#", true},
		{"#", "+/#", true},
		{"#", "+", false},
		{"+/#", "+/#", true},
		{"$SYS/x", "#", false},
		{"$SYS/x", "+/x", false},
		{"$SYS/x", "$SYS/#", true},
		{"$SYS/#", "# $SYS/+", false},
		{"$SYS/#", "$SYS $SYS/+/#", true},
		{"#", "$SYS/#", false},
		{"+/x", "+/x", true},
		{"+/x", "a/x", false},
		{"a//b", "a/+/b", true},
		{"a/+/b", "a//b", false},
		{"devices/alice/#", "devices/alice devices/alice/+ devices/alice/+/+/#", true},
		{"devices/alice/#", "devices/alice devices/alice/+ devices/alice/+/+", false},
		{"$share/g/a/#", "a/#", true},
		{"a/b", "$share/g/a/+", true},
	} {
		var by []string
		if c.by != "" {
			by = strings.Split(c.by, " ")
		}
		if got := CoveredBy(c.filter, by); got != c.want {
			t.Errorf("CoveredBy(%q, %q) = %v, want %v", c.filter, by, got, c.want)
		}
	}
}

// CoveredBy is sound: when it holds, every name the filter matches is
// matched by one of the filters; and it agrees with Covers for one filter.
func FuzzCoveredBy(f *testing.F) {
	f.Add("a/#", "a\na/+/#", "a/b/c")
	f.Add("#", "+\n+/+/#", "x")
	f.Add("$SYS/#", "#\n$SYS", "$SYS/x")
	f.Add("+/#", "+/+\n+", "a")
	f.Add("a/+/b", "a//b\na/+/#", "a//b")
	f.Fuzz(func(t *testing.T, filter, filters, name string) {
		if ValidateFilter(filter) != nil {
			return
		}
		var by []string
		for i, fl := range strings.Split(filters, "\n") {
			if i == 16 {
				break
			}
			if ValidateFilter(fl) == nil {
				by = append(by, fl)
			}
		}
		covered := CoveredBy(filter, by)
		for _, fl := range by {
			if Covers(fl, filter) && !covered {
				t.Fatalf("Covers(%q, %q) but not CoveredBy(%[2]q, %q)", fl, filter, by)
			}
		}
		if !covered {
			return
		}
		// The fuzzed name, and a name the filter surely matches.
		for _, n := range []string{name, witness(filter, filter)} {
			if ValidateName(n) != nil || !Match(filter, n) {
				continue
			}
			matched := false
			for _, fl := range by {
				matched = matched || Match(fl, n)
			}
			if !matched {
				t.Fatalf("CoveredBy(%q, %q), but no filter matches %q", filter, by, n)
			}
		}
	})
}
