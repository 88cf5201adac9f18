package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's configuration table names exactly the flags --help lists,
// and is one table (a blank line inside would end it and print the rest as
// raw pipes).
func TestREADMEFlagTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("README.md has no Configuration section")
	}
	section := readme[start+1:]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var table []string
	ended := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "|") && ended:
			t.Errorf("a table row after the configuration table ended: %s", line)
		case strings.HasPrefix(line, "|"):
			table = append(table, line)
		case len(table) > 0:
			ended = true
		}
	}
	if n := strings.Count(section, "\n|---|"); n != 1 {
		t.Errorf("the configuration section has %d tables, want 1", n)
	}
	inTable := map[string]bool{}
	for _, line := range table {
		if cell := strings.SplitN(line, "|", 3); len(cell) == 3 {
			for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cell[1], -1) {
				inTable[m[1]] = true
			}
		}
	}
	want := []string{"config"}
	for _, s := range settings {
		if s.flag != "" {
			want = append(want, s.flag)
		}
	}
	for _, f := range want {
		if !inTable[f] {
			t.Errorf("--%s is in --help but not in the README's configuration table", f)
		}
		delete(inTable, f)
	}
	for f := range inTable {
		t.Errorf("--%s is in the README's configuration table but is no flag", f)
	}
	if !slices.Contains(want, "http-addr") {
		t.Error("no flags found")
	}
}
