package origin

import (
	"net/http/httptest"
	"testing"
)

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		origin  string
		allowed []string
		want    bool
	}{
		{"", nil, true},
		{"http://bridge.example:8080", nil, true}, // the server's own
		{"http://localhost:3000", nil, true},
		{"http://127.0.0.1:3000", nil, true},
		{"https://evil.example", nil, false},
		{"https://app.example", []string{"https://app.example"}, true},
		{"https://APP.example", []string{"https://app.example"}, true},
		{"https://app.example.evil", []string{"https://app.example"}, false},
		{"https://any.example", []string{"*"}, true},
		{"null", nil, false},
	} {
		r := httptest.NewRequest("GET", "http://bridge.example:8080/v1/ws", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := Allowed(r, c.allowed); got != c.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", c.origin, c.allowed, got, c.want)
		}
	}
}
