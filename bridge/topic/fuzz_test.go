package topic

import (
	"slices"
	"strings"
	"testing"
)

// seeds are names and filters every fuzz target starts from.
var seeds = []string{
	"a", "a/b", "/", "//", "a//b", "+", "#", "a/+", "a/#", "+/+", "/#", "+/#",
	"a/#/b", "a+", "#a", "a#", "$SYS", "$SYS/#", "$SYS/x", "$a/x", "+/x",
	"$share/g/a/+", "$share/g/#", "$share//x", "$share/g", "$share/g/",
	"$share/g+/x", "$share/g/$share/h/x", "a\x00", "\xff", "\xed\xa0\x80",
	"é/ü", "\x01", "",
}

func FuzzValidateName(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		if err != nil {
			return
		}
		if strings.HasPrefix(name, sharePrefix) {
			// Legal as a name, but as a filter $share/ has a meaning of
			// its own; the properties below do not hold for it.
			return
		}
		if ferr := ValidateFilter(name); ferr != nil {
			t.Fatalf("valid name %q is not a valid filter: %v", name, ferr)
		}
		if !Match(name, name) {
			t.Fatalf("Match(%q, %q) = false", name, name)
		}
		if !Overlap(name, name) {
			t.Fatalf("Overlap(%q, %q) = false", name, name)
		}
		if p := LiteralPrefix(name); p != name {
			t.Fatalf("LiteralPrefix(%q) = %q, want the whole name", name, p)
		}
	})
}

func FuzzValidateFilter(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		err := ValidateFilter(filter)
		// Whatever the verdict, nothing may panic.
		_, inner, shared := IsShared(filter)
		LiteralPrefix(filter)
		Match(filter, filter)
		Overlap(filter, filter)
		if err != nil {
			return
		}
		if shared {
			if inner == "" || validateString(inner) != nil || validatePlacement(inner) != nil {
				t.Fatalf("valid shared filter %q has invalid inner filter %q", filter, inner)
			}
		}
		if !Overlap(filter, filter) {
			t.Fatalf("Overlap(%q, %q) = false", filter, filter)
		}
		// A valid filter matches the name that replaces its wildcards.
		if w := witness(filter, filter); ValidateName(w) != nil || !Match(filter, w) {
			t.Fatalf("filter %q does not match %q", filter, w)
		}
	})
}

func FuzzMatchTrie(f *testing.F) {
	f.Add("a/+\na/#\n#\n+/b\n$SYS/#", "a/b")
	f.Add("#\n+/x\n$share/g/+/x", "$a/x")
	f.Add("a//b\na/+/b\na/#", "a//b")
	f.Add("a/#\na/+\na", "a")
	f.Add("+/+\n/#\n+", "/")
	f.Add("$share/g/a\n$share/h/a\na", "a")
	f.Fuzz(func(t *testing.T, filters, name string) {
		if ValidateName(name) != nil {
			return
		}
		tr := NewTrie[int]()
		held := map[pair]bool{}
		for i, fl := range strings.Split(filters, "\n") {
			if i == 64 {
				break
			}
			if ValidateFilter(fl) != nil {
				continue
			}
			p := pair{fl, i % 3}
			tr.Add(p.filter, p.value)
			held[p] = true
			if m, r := Match(fl, name), refMatch(fl, name); m != r {
				t.Fatalf("Match(%q, %q) = %v, reference says %v", fl, name, m, r)
			}
		}
		check := func(when string) {
			t.Helper()
			got, want := trieMatches(tr, name), bruteMatches(held, name)
			if !slices.Equal(got, want) {
				t.Fatalf("%s: Trie.Match(%q) = %v, Match says %v", when, name, got, want)
			}
			if tr.Len() != len(held) {
				t.Fatalf("%s: Len = %d, want %d", when, tr.Len(), len(held))
			}
		}
		check("after Add")
		for p := range held {
			if len(p.filter)%2 == 0 {
				if !tr.Remove(p.filter, p.value) {
					t.Fatalf("Remove(%q, %d) = false", p.filter, p.value)
				}
				delete(held, p)
			}
		}
		check("after Remove")
	})
}

func FuzzOverlap(f *testing.F) {
	f.Add("#", "$SYS/#", "$SYS/x")
	f.Add("+/x", "$a/x", "$a/x")
	f.Add("a/#", "+/b", "a/b")
	f.Add("a/#", "a", "a")
	f.Add("/#", "+", "/")
	f.Add("+/+", "/#", "/")
	f.Add("$share/g/a/+", "a/#", "a/b")
	f.Fuzz(func(t *testing.T, a, b, name string) {
		if ValidateFilter(a) != nil || ValidateFilter(b) != nil {
			return
		}
		ab, ba := Overlap(a, b), Overlap(b, a)
		if ab != ba {
			t.Fatalf("Overlap(%q, %q) = %v but Overlap(%q, %q) = %v", a, b, ab, b, a, ba)
		}
		if ab {
			// Overlap must be able to show a common name.
			w := witness(a, b)
			if ValidateName(w) != nil || !Match(a, w) || !Match(b, w) {
				t.Fatalf("Overlap(%q, %q) = true, but witness %q is not matched by both", a, b, w)
			}
		}
		if ValidateName(name) != nil {
			return
		}
		ma, mb := Match(a, name), Match(b, name)
		if ma && mb && !ab {
			t.Fatalf("both %q and %q match %q, but Overlap = false", a, b, name)
		}
		if ma && !strings.HasPrefix(name, LiteralPrefix(a)) {
			t.Fatalf("Match(%q, %q), but LiteralPrefix = %q", a, name, LiteralPrefix(a))
		}
		if ma && !strings.HasPrefix(name, sharePrefix) && !Overlap(a, name) {
			t.Fatalf("Match(%q, %q) but Overlap(%[1]q, %[2]q) = false", a, name)
		}
	})
}

// witness builds a topic name that both valid filters match when they
// overlap: literal levels where either filter has one, a fresh level "w"
// where both have +, and the other filter's levels (wildcards made "w") after
// a #. It assumes Overlap(a, b); otherwise the result means nothing.
func witness(a, b string) string {
	la, lb := strings.Split(plain(a), "/"), strings.Split(plain(b), "/")
	var out []string
	fill := func(levels []string) {
		for _, l := range levels {
			switch l {
			case "#":
			case "+":
				out = append(out, "w")
			default:
				out = append(out, l)
			}
		}
	}
	for i := 0; i < len(la) && i < len(lb); i++ {
		x, y := la[i], lb[i]
		switch {
		case x == "#" || y == "#":
			if x == "#" {
				fill(lb[i:])
			} else {
				fill(la[i:])
			}
			if w := strings.Join(out, "/"); w != "" {
				return w
			}
			// # may take one more level; the empty string is no name.
			return strings.Join(append(out, "w"), "/")
		case x == "+" && y == "+":
			out = append(out, "w")
		case x == "+":
			out = append(out, y)
		default:
			out = append(out, x)
		}
	}
	return strings.Join(out, "/")
}
