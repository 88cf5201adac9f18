package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var updateReference = flag.Bool("update", false, "rewrite the configuration reference in docs/operations.md")

const operationsDoc = "../../docs/operations.md"

// docs/operations.md holds the reference ReferenceSection generates from
// the Config struct and its comments; regenerate it with
//
//	go test ./internal/config -run Reference -update
func TestReferenceUpToDate(t *testing.T) {
	want, err := ReferenceSection(".")
	if err != nil {
		t.Fatal(err)
	}
	if *updateReference {
		if err := UpdateReference(operationsDoc, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := CurrentReference(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("docs/operations.md's configuration reference differs from the code at line %d of the section:\n doc:  %s\n code: %s\nregenerate it: go test ./internal/config -run Reference -update", i+1, g, w)
			}
		}
	}
}

// Every key of the struct is in the reference, with a description, and
// every environment variable and flag is named there.
func TestReferenceCoversEverything(t *testing.T) {
	ref, err := ReferenceSection(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		i := strings.Index(ref, "| `"+k+"` |")
		if i < 0 {
			t.Errorf("key %s is missing from the reference", k)
			continue
		}
		row := ref[i:]
		row = row[:strings.Index(row, "\n")]
		if strings.HasSuffix(row, "|  |") {
			t.Errorf("key %s has no description (a doc comment on its field): %s", k, row)
		}
	}
	for _, s := range settings {
		for _, name := range []string{s.env, s.flag} {
			if name != "" && !strings.Contains(ref, name) {
				t.Errorf("%s (key %s) is missing from the reference", name, s.key)
			}
		}
	}
	if len(Keys()) < 50 {
		t.Fatalf("Keys() found only %d keys", len(Keys()))
	}
}

// The reference parses the package's own files, so it must find a comment
// shared by two fields (CertFile and KeyFile) on both.
func TestReferenceSharedComments(t *testing.T) {
	docs, _, err := fieldDocs(".")
	if err != nil {
		t.Fatal(err)
	}
	if d := docs["TLS"]["KeyFile"]; !strings.Contains(d, "CertFile and KeyFile") {
		t.Fatalf("TLS.KeyFile's doc = %q", d)
	}
	if _, err := os.Stat(operationsDoc); err != nil {
		t.Fatal(err)
	}
}
