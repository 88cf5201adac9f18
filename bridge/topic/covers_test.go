package topic

import "testing"

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		wide, narrow string
		want         bool
	}{
		{"#", "a/b", true},
		{"#", "#", true},
		{"#", "+/x", true},
		{"#", "$SYS/x", false},
		{"#", "$SYS/#", false},
		{"$SYS/#", "$SYS/broker/+", true},
		{"+/x", "$a/x", false},
		{"+/x", "a/x", true},
		{"+/x", "+/x", true},
		{"a/#", "a", true},
		{"a/#", "a/+/c", true},
		{"a/#", "a/#", true},
		{"a/#", "b/#", false},
		{"a/+", "a/#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"a/b/#", "a/b", true},
		{"a/b/#", "a", false},
		{"a//b", "a/+/b", false},
		{"a/+/b", "a//b", true},
		{"$share/g/a/#", "a/x", true},
		{"a/#", "$share/g/a/x", true},
	} {
		if got := Covers(c.wide, c.narrow); got != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.wide, c.narrow, got, c.want)
		}
	}
}

// If wide covers narrow, every name narrow matches, wide matches too.
func FuzzCovers(f *testing.F) {
	f.Add("a/#", "a/+/c", "a/b/c")
	f.Add("+/x", "$a/x", "$a/x")
	f.Add("a/b/#", "a/b", "a/b")
	f.Fuzz(func(t *testing.T, wide, narrow, name string) {
		if ValidateFilter(wide) != nil || ValidateFilter(narrow) != nil || ValidateName(name) != nil {
			return
		}
		if Covers(wide, narrow) && Match(narrow, name) && !Match(wide, name) {
			t.Fatalf("Covers(%q, %q) but %q matches only the narrow one", wide, narrow, name)
		}
		if Covers(wide, narrow) && !Overlap(wide, narrow) && Match(narrow, name) {
			t.Fatalf("Covers(%q, %q) without Overlap", wide, narrow)
		}
	})
}
