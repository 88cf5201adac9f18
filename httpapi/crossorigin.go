package httpapi

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// trustOrigins makes the CSRF check of crossOrigin from the CORS
// configuration: the exact allowed origins are trusted; "*" is handled by
// crossOrigin.
func (s *Server) trustOrigins(cfg CORS) {
	s.protect = http.NewCrossOriginProtection()
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			s.anyOrigin = !cfg.AllowCredentials
			continue
		}
		// Browsers send the origin in lower case; CORS compares without case.
		if err := s.protect.AddTrustedOrigin(strings.ToLower(o)); err != nil {
			s.log.Warn("http.cors.allowed_origins: not an origin, never trusted", "origin", o, "err", err)
		}
	}
}

// crossOrigin refuses, before authentication and before anything is sent,
// a state-changing request (any method but GET, HEAD and OPTIONS) that a
// browser sends from another origin not in CORS.AllowedOrigins: a page on
// another site must not publish with the credentials the browser adds by
// itself (a client certificate, a cookie of a proxy in front), nor to a
// bridge without authentication on the user's network. Browsers tell the
// request by Sec-Fetch-Site, older ones by Origin; requests with neither
// (curl, servers) pass. With "*" a request from any origin passes when the
// browser had to send a preflight for it first, as the browser then adds
// no credentials of its own.
func (s *Server) crossOrigin(c *gin.Context) {
	if err := s.protect.Check(c.Request); err != nil && !(s.anyOrigin && preflighted(c.Request)) {
		s.fail(c, bridge.Errorf(bridge.ECodeForbidden, "a cross-origin %s from a browser is refused: the origin %s is not in http.cors.allowed_origins",
			knownMethod(c.Request.Method), strconv.Quote(c.GetHeader("Origin"))))
		return
	}
	c.Next()
}

// preflighted reports whether a browser sends r only after a CORS
// preflight: a method other than POST, a credential that only a script
// sets (X-API-Key, Authorization: Bearer), or a body type that a form
// cannot send.
func preflighted(r *http.Request) bool {
	if r.Method != http.MethodPost || r.Header.Get("X-API-Key") != "" {
		return true
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		return true
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return false
	}
	return true
}
