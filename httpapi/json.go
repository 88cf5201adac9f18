package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"

	"github.com/gin-gonic/gin"
	ginjson "github.com/gin-gonic/gin/codec/json"
)

// Responses are JSON read by programs and people and never embedded in
// HTML (they carry X-Content-Type-Options: nosniff): '<', '>' and '&' are
// written as they are, not as \u003c, \u003e and \u0026 as gin's default
// codec would.
func init() { ginjson.API = plainJSON{ginjson.API} }

type plainJSON struct{ ginjson.Core }

func (plainJSON) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decodeStrictJSON decodes one JSON value, refusing unknown fields; its
// errors name the field and what it wants, in the API's words.
func decodeStrictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return invalid("invalid JSON body: more than one JSON value")
	}
	return nil
}

// decodeOptionalJSON decodes the request's body into v when it has one
// (at most limit bytes), strictly; an empty body leaves v as it is.
func decodeOptionalJSON(c *gin.Context, limit int64, v any) error {
	if c.Request.ContentLength == 0 {
		return nil
	}
	body, err := readBody(c, limit)
	if err != nil || len(body) == 0 {
		return err
	}
	return decodeStrictJSON(body, v)
}

// jsonError says what is wrong with a JSON body without Go's type names.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return invalid("the JSON body must be %s, not %s", wants(te.Type), an(te.Value))
		}
		if field == "qos" || strings.HasSuffix(field, ".qos") {
			return invalid("%s must be 0, 1 or 2, not %s", field, an(te.Value))
		}
		return invalid("%s must be %s, not %s", field, wants(te.Type), an(te.Value))
	case errors.As(err, &se):
		return invalid("invalid JSON body at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return invalid("the body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("the JSON body ends too early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return invalid("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// wants names what a Go type accepts in JSON.
func wants(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number from 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		if e := t.Elem(); e.Kind() == reflect.Struct || e.Kind() == reflect.Map {
			return "an array of objects"
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another JSON type"
}

// an puts an article before a JSON kind: "a string", "an object".
func an(kind string) string {
	switch kind {
	case "array", "object":
		return "an " + kind
	case "bool":
		return "true or false"
	}
	return "a " + kind
}
