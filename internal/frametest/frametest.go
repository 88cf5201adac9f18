// Package frametest checks WebSocket frames against asyncapi.yaml in
// tests: one JSON Schema per frame type and direction, compiled from the
// document's operations (action send: client→server frames, receive:
// server→client frames), selected by the frame's "type".
package frametest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// docURL is where the document lives for the schema compiler; the schemas'
// "#/components/..." references resolve against it.
const docURL = "mem:///asyncapi.json"

// Validator holds the compiled frame schemas. It is safe for concurrent use.
type Validator struct {
	server map[string]*jsonschema.Schema // by type: receive operations
	client map[string]*jsonschema.Schema // by type: send operations
}

// New compiles the frame schemas of an AsyncAPI 3 document (YAML or JSON),
// failing tb when the document is unusable.
func New(tb testing.TB, asyncapi []byte) *Validator {
	tb.Helper()
	v, err := compile(asyncapi)
	if err != nil {
		tb.Fatalf("frametest: asyncapi document: %v", err)
		return nil
	}
	return v
}

// Server checks a frame the server sent.
func (v *Validator) Server(tb testing.TB, frame []byte) {
	tb.Helper()
	if err := check(v.server, frame); err != nil {
		tb.Errorf("frametest: server→client frame %s\n%v", clip(frame), err)
	}
}

// Client checks a frame the client sends.
func (v *Validator) Client(tb testing.TB, frame []byte) {
	tb.Helper()
	if err := check(v.client, frame); err != nil {
		tb.Errorf("frametest: client→server frame %s\n%v", clip(frame), err)
	}
}

// ServerTypes and ClientTypes list the frame types of each direction.
func (v *Validator) ServerTypes() []string { return slices.Sorted(maps.Keys(v.server)) }
func (v *Validator) ClientTypes() []string { return slices.Sorted(maps.Keys(v.client)) }

func check(schemas map[string]*jsonschema.Schema, frame []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(frame))
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	obj, ok := inst.(map[string]any)
	if !ok {
		return errors.New("not a JSON object")
	}
	typ, ok := obj["type"].(string)
	if !ok {
		return errors.New(`no string "type"`)
	}
	sch := schemas[typ]
	if sch == nil {
		return fmt.Errorf("unknown frame type %q in this direction (known: %s)", typ, strings.Join(slices.Sorted(maps.Keys(schemas)), ", "))
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("does not match the %q schema: %v", typ, err)
	}
	return nil
}

// clip shortens a frame for a failure message.
func clip(frame []byte) string {
	const max = 2000
	if len(frame) <= max {
		return string(frame)
	}
	return fmt.Sprintf("%s… (%d bytes)", frame[:max], len(frame))
}

// doc is a parsed AsyncAPI document in JSON form.
type doc struct{ root any }

func compile(asyncapi []byte) (*Validator, error) {
	var y any
	if err := yaml.Unmarshal(asyncapi, &y); err != nil {
		return nil, err
	}
	// Through JSON, so that the compiler sees the numbers and maps it
	// expects.
	j, err := json.Marshal(jsonify(y))
	if err != nil {
		return nil, err
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	d := doc{root}
	if v, _ := d.get("/asyncapi").(string); !strings.HasPrefix(v, "3.") {
		return nil, fmt.Errorf("asyncapi version %q, want 3.x", v)
	}

	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7) // AsyncAPI schemas are a superset of draft 7
	c.AssertFormat()
	c.AssertContent()
	if err := c.AddResource(docURL, root); err != nil {
		return nil, err
	}

	v := &Validator{server: map[string]*jsonschema.Schema{}, client: map[string]*jsonschema.Schema{}}
	seen := map[string]string{} // direction+type → payload pointer
	ops, _ := d.get("/operations").(map[string]any)
	if len(ops) == 0 {
		return nil, errors.New("no operations")
	}
	for _, name := range slices.Sorted(maps.Keys(ops)) {
		opPtr := "/operations/" + escape(name)
		op, opPtr, err := d.deref(opPtr)
		if err != nil {
			return nil, err
		}
		opObj, _ := op.(map[string]any)
		var dir map[string]*jsonschema.Schema
		switch action := opObj["action"]; action {
		case "send":
			dir = v.client
		case "receive":
			dir = v.server
		default:
			return nil, fmt.Errorf("%s: action %v, want send or receive", opPtr, action)
		}
		msgPtrs, err := d.operationMessages(opPtr, opObj)
		if err != nil {
			return nil, err
		}
		for _, mp := range msgPtrs {
			msg, mp, err := d.deref(mp)
			if err != nil {
				return nil, err
			}
			msgObj, _ := msg.(map[string]any)
			if _, ok := msgObj["payload"]; !ok {
				return nil, fmt.Errorf("%s: message without payload", mp)
			}
			if sf, ok := msgObj["schemaFormat"].(string); ok && !strings.HasPrefix(sf, "application/vnd.aai.asyncapi") && !strings.HasPrefix(sf, "application/schema+") {
				return nil, fmt.Errorf("%s: schemaFormat %q is not JSON Schema", mp, sf)
			}
			_, pp, err := d.deref(mp + "/payload")
			if err != nil {
				return nil, err
			}
			typ, err := d.frameType(pp)
			if err != nil {
				return nil, err
			}
			key := opObj["action"].(string) + " " + typ
			if prev, ok := seen[key]; ok {
				if prev == pp {
					continue
				}
				return nil, fmt.Errorf("two %s schemas for frame type %q: %s and %s", opObj["action"], typ, prev, pp)
			}
			seen[key] = pp
			sch, err := c.Compile(docURL + "#" + pp)
			if err != nil {
				return nil, fmt.Errorf("%s (type %q): %v", pp, typ, err)
			}
			dir[typ] = sch
		}
	}
	if len(v.server) == 0 || len(v.client) == 0 {
		return nil, fmt.Errorf("want frames in both directions, have %d server→client and %d client→server types", len(v.server), len(v.client))
	}
	return v, nil
}

// operationMessages returns the pointers of an operation's messages: its
// "messages", or else every message of its channel.
func (d doc) operationMessages(opPtr string, op map[string]any) ([]string, error) {
	if list, ok := op["messages"].([]any); ok && len(list) > 0 {
		ptrs := make([]string, len(list))
		for i := range list {
			ptrs[i] = opPtr + "/messages/" + strconv.Itoa(i)
		}
		return ptrs, nil
	}
	ch, chPtr, err := d.deref(opPtr + "/channel")
	if err != nil {
		return nil, err
	}
	msgs, _ := ch.(map[string]any)["messages"].(map[string]any)
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%s: no messages, and neither has its channel %s", opPtr, chPtr)
	}
	var ptrs []string
	for _, k := range slices.Sorted(maps.Keys(msgs)) {
		ptrs = append(ptrs, chPtr+"/messages/"+escape(k))
	}
	return ptrs, nil
}

// frameType is the "type" a payload schema requires: properties.type's
// const, or its enum of one.
func (d doc) frameType(payloadPtr string) (string, error) {
	p, pp, err := d.deref(payloadPtr)
	if err != nil {
		return "", err
	}
	if req, _ := p.(map[string]any)["required"].([]any); !slices.Contains(req, any("type")) {
		return "", fmt.Errorf("%s: the payload schema does not require \"type\"", pp)
	}
	t, tp, err := d.deref(pp + "/properties/type")
	if err != nil {
		return "", fmt.Errorf("%s: the payload schema has no \"type\" property: %v", pp, err)
	}
	tm, _ := t.(map[string]any)
	if s, ok := tm["const"].(string); ok {
		return s, nil
	}
	if e, _ := tm["enum"].([]any); len(e) == 1 {
		if s, ok := e[0].(string); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("%s: want a string const (or an enum of one)", tp)
}

// deref returns the value at a JSON pointer, following "$ref"s to other
// places in the document, and the pointer where it was found.
func (d doc) deref(ptr string) (any, string, error) {
	for range 32 {
		v, err := d.lookup(ptr)
		if err != nil {
			return nil, "", err
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return v, ptr, nil
		}
		ref, ok := obj["$ref"].(string)
		if !ok {
			return v, ptr, nil
		}
		frag, ok := strings.CutPrefix(ref, "#")
		if !ok {
			return nil, "", fmt.Errorf("%s: $ref %q: only references into this document (#/...) are supported", ptr, ref)
		}
		if frag, err = url.PathUnescape(frag); err != nil {
			return nil, "", fmt.Errorf("%s: $ref %q: %v", ptr, ref, err)
		}
		ptr = frag
	}
	return nil, "", fmt.Errorf("%s: $ref chain too long", ptr)
}

// get is lookup without the error.
func (d doc) get(ptr string) any {
	v, _ := d.lookup(ptr)
	return v
}

// lookup resolves a JSON pointer (RFC 6901).
func (d doc) lookup(ptr string) (any, error) {
	if ptr == "" {
		return d.root, nil
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("%q is not a JSON pointer", ptr)
	}
	cur := d.root
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("#%s: no %q", ptr, tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("#%s: no item %q", ptr, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("#%s: %q is inside a scalar", ptr, tok)
		}
	}
	return cur, nil
}

func escape(tok string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
}

// jsonify turns what yaml.v3 decodes into values encoding/json can encode
// (maps with non-string keys).
func jsonify(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonify(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonify(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonify(e)
		}
		return v
	}
	return v
}
