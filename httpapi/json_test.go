package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// A JSON body of the wrong shape gets an error that names the field and
// what it wants, in the API's words (no Go struct or type names), and no
// error body escapes '<' as \u003c.
func TestJSONErrorsSayWhatToDo(t *testing.T) {
	e := newEnv(t, true)
	for body, want := range map[string]string{
		`{"topic":"demo/a","payload":"x","qos":"1"}`: `qos must be 0, 1 or 2, not a string`,
		`{"topic":5}`: `topic must be a string, not a number`,
		`{"topic":"demo/a","payload":"x","retain":"yes"}`:                             `retain must be true or false, not a string`,
		`{"topic":"demo/a","payload":"x","properties":{"user_properties":{"a":"b"}}}`: `properties.user_properties must be an array of objects, not an object`,
		`[1]`: `the JSON body must be an object, not an array`,
		`{"topic":"demo/a","payload":"x","color":"red"}`: `unknown field \"color\"`,
		`{"topic":"demo/a",`:                             `the JSON body ends too early`,
		`{"topic":"demo/<b>/#","payload":"x"}`:           `\"demo/<b>/#\"`,
	} {
		resp, got := e.v.DoInvalid(t, e.srv.Client(), e.req(t, http.MethodPost, "/v1/publish", []byte(body), "Content-Type", "application/json"))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(got), want) {
			t.Errorf("%s: %d %s, want 400 with %q", body, resp.StatusCode, got, want)
		}
		if strings.Contains(string(got), "Go ") || strings.Contains(string(got), `\u003c`) {
			t.Errorf("%s: %s", body, got)
		}
	}
}
