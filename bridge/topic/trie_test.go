package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

type pair struct {
	filter string
	value  int
}

// trieMatches returns what t.Match reports for name, sorted.
func trieMatches(t *Trie[int], name string) []pair {
	var got []pair
	t.Match(name, func(f string, v int) { got = append(got, pair{f, v}) })
	slices.SortFunc(got, comparePairs)
	return got
}

// bruteMatches returns the pairs whose filter matches name, sorted.
func bruteMatches(held map[pair]bool, name string) []pair {
	var want []pair
	for p := range held {
		if Match(p.filter, name) {
			want = append(want, p)
		}
	}
	slices.SortFunc(want, comparePairs)
	return want
}

func comparePairs(a, b pair) int {
	if c := strings.Compare(a.filter, b.filter); c != 0 {
		return c
	}
	return a.value - b.value
}

func TestTrieBasics(t *testing.T) {
	tr := NewTrie[string]()
	tr.Add("a/+", "x")
	tr.Add("a/#", "x")
	tr.Add("a/#", "x") // the same pair again: no change
	tr.Add("a/b", "y")
	tr.Add("#", "z")
	tr.Add("$share/g/a/b", "s")
	tr.Add("$SYS/#", "sys")
	if tr.Len() != 6 {
		t.Fatalf("Len = %d, want 6", tr.Len())
	}
	got := map[string]bool{}
	tr.Match("a/b", func(f, v string) { got[f+"="+v] = true })
	want := map[string]bool{"a/+=x": true, "a/#=x": true, "a/b=y": true, "#=z": true, "$share/g/a/b=s": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Match(a/b) = %v, want %v", got, want)
	}
	got = map[string]bool{}
	tr.Match("$SYS/x", func(f, v string) { got[f+"="+v] = true })
	if want := map[string]bool{"$SYS/#=sys": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Match($SYS/x) = %v, want %v", got, want)
	}
	got = map[string]bool{}
	tr.Match("a", func(f, v string) { got[f+"="+v] = true })
	if want := map[string]bool{"a/#=x": true, "#=z": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Match(a) = %v, want %v", got, want)
	}

	if tr.Remove("a/b", "x") {
		t.Error("Remove of a pair never added reported true")
	}
	if tr.Remove("a/b", "s") {
		t.Error("Remove(a/b, s) removed the shared filter's pair")
	}
	for _, p := range [][2]string{{"a/+", "x"}, {"a/#", "x"}, {"a/b", "y"}, {"#", "z"}, {"$share/g/a/b", "s"}, {"$SYS/#", "sys"}} {
		if !tr.Remove(p[0], p[1]) {
			t.Errorf("Remove(%q, %q) = false", p[0], p[1])
		}
		if tr.Remove(p[0], p[1]) {
			t.Errorf("second Remove(%q, %q) = true", p[0], p[1])
		}
	}
	if tr.Len() != 0 || !tr.root.empty() {
		t.Errorf("after removing everything Len = %d, root empty = %v", tr.Len(), tr.root.empty())
	}
}

// TestTrieManyValues crosses the size at which a node indexes its entries.
func TestTrieManyValues(t *testing.T) {
	tr := NewTrie[int]()
	held := map[pair]bool{}
	for round := range 3 {
		for i := range 3 * indexFrom {
			tr.Add("a/+", i)
			held[pair{"a/+", i}] = true
		}
		for i := 0; i < 3*indexFrom; i += 1 + round {
			if !tr.Remove("a/+", i) {
				t.Fatalf("Remove(a/+, %d) = false", i)
			}
			delete(held, pair{"a/+", i})
			if got, want := trieMatches(tr, "a/b"), bruteMatches(held, "a/b"); !slices.Equal(got, want) {
				t.Fatalf("round %d after removing %d: got %v, want %v", round, i, got, want)
			}
		}
		if tr.Len() != len(held) {
			t.Fatalf("Len = %d, want %d", tr.Len(), len(held))
		}
	}
}

// TestTrieRandom compares the trie with Match over every held filter.
func TestTrieRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	filterLevels := []string{"a", "b", "", "$s", "+", "+", "#"}
	nameLevels := []string{"a", "b", "", "$s", "c"}
	randPath := func(levels []string) string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[rng.IntN(len(levels))]
		}
		return strings.Join(parts, "/")
	}
	for seed := range 20 {
		tr := NewTrie[int]()
		held := map[pair]bool{}
		for range 200 {
			f := randPath(filterLevels)
			if rng.IntN(8) == 0 {
				f = "$share/g" + fmt.Sprint(rng.IntN(2)) + "/" + f
			}
			if ValidateFilter(f) != nil {
				continue
			}
			p := pair{f, rng.IntN(5)}
			if rng.IntN(4) == 0 {
				if got := tr.Remove(p.filter, p.value); got != held[p] {
					t.Fatalf("Remove(%q, %d) = %v, want %v", p.filter, p.value, got, held[p])
				}
				delete(held, p)
			} else {
				tr.Add(p.filter, p.value)
				held[p] = true
			}
		}
		if tr.Len() != len(held) {
			t.Fatalf("seed %d: Len = %d, want %d", seed, tr.Len(), len(held))
		}
		for range 200 {
			name := randPath(nameLevels)
			if ValidateName(name) != nil {
				continue
			}
			if got, want := trieMatches(tr, name), bruteMatches(held, name); !slices.Equal(got, want) {
				t.Fatalf("seed %d: Match(%q) = %v, want %v", seed, name, got, want)
			}
		}
		for p := range held {
			if !tr.Remove(p.filter, p.value) {
				t.Fatalf("Remove(%q, %d) = false", p.filter, p.value)
			}
		}
		if tr.Len() != 0 || !tr.root.empty() {
			t.Fatalf("seed %d: not empty after removing all: Len = %d", seed, tr.Len())
		}
	}
}

func TestTrieMatchDoesNotAllocate(t *testing.T) {
	tr := NewTrie[int]()
	for i, f := range []string{"#", "a/#", "a/+/c", "a/b/c", "+/+/+", "$share/g/a/b/#"} {
		tr.Add(f, i)
	}
	count := 0
	fn := func(string, int) { count++ }
	n := testing.AllocsPerRun(100, func() { tr.Match("a/b/c", fn) })
	if n != 0 {
		t.Errorf("Trie.Match allocates %v times per call", n)
	}
	if count != 101*6 {
		t.Errorf("fn called %d times, want %d", count, 101*6)
	}
}

// BenchmarkTrieMatch matches names against 10,000 filters shaped like a
// plant's telemetry subscriptions.
func BenchmarkTrieMatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	tr := NewTrie[int]()
	for i := range 10_000 {
		site, dev := rng.IntN(50), rng.IntN(200)
		var f string
		switch rng.IntN(10) {
		case 0:
			f = fmt.Sprintf("plant/%d/#", site)
		case 1:
			f = fmt.Sprintf("plant/+/device/%d/temperature", dev)
		case 2:
			f = fmt.Sprintf("plant/%d/device/+/temperature", site)
		default:
			f = fmt.Sprintf("plant/%d/device/%d/%s", site, dev, []string{"temperature", "humidity", "state"}[rng.IntN(3)])
		}
		tr.Add(f, i)
	}
	names := make([]string, 256)
	for i := range names {
		names[i] = fmt.Sprintf("plant/%d/device/%d/temperature", rng.IntN(50), rng.IntN(200))
	}
	matched := 0
	fn := func(string, int) { matched++ }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Match(names[i%len(names)], fn)
		i++
	}
	b.ReportMetric(float64(matched)/float64(i), "matches/op")
}
