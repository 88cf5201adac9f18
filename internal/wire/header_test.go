package wire

import (
	"net/url"
	"testing"
)

func TestHeaderEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"sensors/a/temp": "sensors/a/temp",
		"a b":            "a%20b",
		"%,=\"":          "%25%2C%3D%22",
		"caf\u00e9/x":    "caf%C3%A9/x",
		"ok/then\x7f":    "ok/then%7F",
		"k=v,w":          "k%3Dv%2Cw",
	} {
		got := HeaderEscape(in)
		if got != want {
			t.Errorf("HeaderEscape(%q) = %q, want %q", in, got, want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != in {
			t.Errorf("PathUnescape(%q) = %q, %v; want %q", got, back, err, in)
		}
	}
}
