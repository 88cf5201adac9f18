// Package origin decides whether a browser Origin may open a WebSocket or
// an SSE stream: the one rule that wsproxy and httpapi share.
package origin

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Allowed admits requests without Origin (not from a browser), the
// server's own origin, localhost and loopback origins, and the allowed
// ones: exact origins like "https://app.example.com", or "*" for any.
func Allowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	switch host := u.Hostname(); {
	case host == "localhost", net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback():
		return true
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
