package config

// The configuration reference of docs/operations.md is generated from the
// Go sources of this package by its test (reference_test.go): the parsing
// lives here, in a test file, so that it is not in the binary.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// Reference markers delimit the generated configuration reference in
// docs/operations.md; ReferenceSection renders what goes between them.
const (
	ReferenceBegin = "<!-- BEGIN CONFIG REFERENCE: generated from internal/config by `go test ./internal/config -run Reference -update`; do not edit by hand -->"
	ReferenceEnd   = "<!-- END CONFIG REFERENCE -->"
)

// Keys returns every YAML key of Config, dotted as in error messages, with
// "[]" after a list of mappings (mqtt.brokers[].url), sorted.
func Keys() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			key := joinKey(prefix, name)
			switch {
			case isSection(f.Type):
				walk(f.Type, key)
			case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()):
				walk(f.Type.Elem(), key+"[]")
			default:
				out = append(out, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	slices.Sort(out)
	return out
}

func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// fieldDocs reads the doc comments of the struct types declared in the Go
// files of dir (tests excluded): type name -> field name -> comment, and
// type name -> the type's own comment. A field without a comment of its
// own shares the comment of the field on the line above it, as in
//
//	// CertFile and KeyFile are ...
//	CertFile string
//	KeyFile  string
func fieldDocs(dir string) (map[string]map[string]string, map[string]string, error) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	fields := map[string]map[string]string{}
	types := map[string]string{}
	found := false
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				found = found || ts.Name.Name == "Config"
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				types[ts.Name.Name] = doc.Text()
				m := map[string]string{}
				fields[ts.Name.Name] = m
				prevDoc, prevLine := "", -10
				for _, fl := range st.Fields.List {
					line := fset.Position(fl.Pos()).Line
					text := fl.Doc.Text()
					if text == "" && fl.Comment != nil {
						text = fl.Comment.Text()
					}
					if text == "" && line == prevLine+1 {
						text = prevDoc
					}
					for _, n := range fl.Names {
						m[n.Name] = text
					}
					prevDoc, prevLine = text, fset.Position(fl.End()).Line
				}
			}
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("no type Config in the Go files of %s", dir)
	}
	return fields, types, nil
}

// ReferenceSection renders the configuration reference of docs/operations.md
// from the Config struct: every YAML key with its type, default, environment
// variable and flag, and the doc comment of its field, read from the Go
// files in srcDir (the directory of this package). It starts with
// ReferenceBegin and ends with ReferenceEnd and a newline.
func ReferenceSection(srcDir string) (string, error) {
	docs, typeDocs, err := fieldDocs(srcDir)
	if err != nil {
		return "", err
	}
	byKey := map[string]setting{}
	for _, s := range settings {
		byKey[s.key] = s
	}
	var b strings.Builder
	b.WriteString(ReferenceBegin + "\n\n")
	b.WriteString("Every key of the YAML file (`--config` or `MQTTBRIDGE_CONFIG`), as `Load` reads it. " +
		"Precedence, highest first: flags, `MQTTBRIDGE_*` environment variables, the file, defaults; an empty " +
		"variable counts as unset. Durations are Go durations (`500ms`, `1h30m`); sizes are bytes or take a unit " +
		"(`B`, `KiB`, `MiB`, `GiB`, `kB`, `MB`, `GB`). `[]` marks a list of mappings.\n")

	def := reflect.ValueOf(Default())
	var section func(t reflect.Type, v reflect.Value, prefix, title, intro string)
	section = func(t reflect.Type, v reflect.Value, prefix, title, intro string) {
		fmt.Fprintf(&b, "\n### %s\n\n", title)
		if intro = oneLine(intro); intro != "" {
			b.WriteString(intro + "\n\n")
		}
		b.WriteString("| key | type | default | environment / flag | description |\n|---|---|---|---|---|\n")
		type sub struct {
			t      reflect.Type
			v      reflect.Value
			key    string
			intro  string
			isList bool
		}
		var subs []sub
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			key := joinKey(prefix, name)
			var fv reflect.Value
			if v.IsValid() {
				fv = v.Field(i)
			}
			doc := docs[t.Name()][f.Name]
			switch {
			case isSection(f.Type):
				subs = append(subs, sub{f.Type, fv, key, sectionDoc(doc, typeDocs[f.Type.Name()]), false})
				continue
			case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()):
				subs = append(subs, sub{f.Type.Elem(), reflect.Value{}, key + "[]", sectionDoc(doc, typeDocs[f.Type.Elem().Name()]), true})
				continue
			}
			if strings.TrimSpace(doc) == "" && strings.TrimSpace(typeDocs[t.Name()]) != "" {
				doc = "See the section's description."
			}
			where := ""
			if s, ok := byKey[key]; ok {
				var parts []string
				if s.env != "" {
					parts = append(parts, "`"+s.env+"`")
				}
				if s.flag != "" {
					parts = append(parts, "`--"+s.flag+"`")
				}
				where = strings.Join(parts, "<br>")
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", key, typeName(f.Type), defaultText(key, fv), where, cell(doc))
		}
		for _, s := range subs {
			title := "`" + s.key + "`"
			if s.isList {
				title += " (list)"
			}
			section(s.t, s.v, s.key, title, s.intro)
		}
	}
	root := reflect.TypeFor[Config]()
	// The top-level scalars first, then each section in struct order.
	section(root, def, "", "top level", "")
	b.WriteString("\n" + ReferenceEnd + "\n")
	return b.String(), nil
}

// sectionDoc is the comment of a section: its type's, else its field's
// (field comments of sections mostly point to source files).
func sectionDoc(field, typ string) string {
	if strings.TrimSpace(typ) != "" {
		return typ
	}
	return field
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func cell(s string) string { return strings.ReplaceAll(oneLine(s), "|", `\|`) }

func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case byteSizeType:
		return "size"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Key()) + " to " + typeName(t.Elem())
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}

// defaultText renders the default of one key; v is invalid inside lists.
func defaultText(key string, v reflect.Value) string {
	if key == "instance_id" {
		return "random, 8 hex characters"
	}
	if !v.IsValid() {
		return ""
	}
	if v.IsZero() {
		if v.Kind() == reflect.Bool {
			return "`false`"
		}
		return ""
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return "`" + s.String() + "`"
	}
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprintf("%q", v.Index(i).Interface())
		}
		return "`[" + strings.Join(parts, ", ") + "]`"
	case reflect.String:
		return fmt.Sprintf("`%q`", v.String())
	}
	return fmt.Sprintf("`%v`", v.Interface())
}

// UpdateReference replaces the text between the markers in the file at
// docPath with section, or reports that the markers are missing.
func UpdateReference(docPath, section string) error {
	data, err := os.ReadFile(docPath)
	if err != nil {
		return err
	}
	i := strings.Index(string(data), ReferenceBegin)
	j := strings.Index(string(data), ReferenceEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q section", docPath, ReferenceBegin, ReferenceEnd)
	}
	out := string(data[:i]) + section + strings.TrimPrefix(string(data[j+len(ReferenceEnd):]), "\n")
	return os.WriteFile(docPath, []byte(out), 0o644)
}

// CurrentReference returns the section between the markers in the file at
// docPath, markers included, as ReferenceSection renders it.
func CurrentReference(docPath string) (string, error) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		return "", err
	}
	i := strings.Index(string(data), ReferenceBegin)
	j := strings.Index(string(data), ReferenceEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("%s: no %q ... %q section", docPath, ReferenceBegin, ReferenceEnd)
	}
	return string(data[i:j+len(ReferenceEnd)]) + "\n", nil
}
