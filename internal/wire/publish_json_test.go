package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// AppendJSON writes what encoding/json (without HTML escaping) writes.
func TestPublishResponseAppendJSON(t *testing.T) {
	rc0, rc135 := 0, 135
	for _, r := range []PublishResponse{
		{Topic: "bench/p1", QoS: 0},
		{Topic: "a/b", QoS: 1, ReasonCode: &rc0, Reason: "success"},
		{Topic: "a/b", QoS: 2, ReasonCode: &rc135, Reason: "not authorized: no <way> & \"never\""},
		{Topic: "quote\"back\\slash\ttab", QoS: 1},
		{Topic: "ünï/códe/\u2028/\x7f", QoS: 0},
		{Topic: "bad\xffutf8", QoS: 0},
		{Topic: "", QoS: 0},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON([]byte("x")); string(got) != "x"+string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Errorf("%+v:\n got %s\nwant x%s", r, got, want.Bytes())
		}
	}
}
