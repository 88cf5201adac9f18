package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"time"
)

//go:embed index.html client.js client.d.ts console.js console.css
var files embed.FS

// asset is one served file with its precomputed headers.
type asset struct {
	name        string
	contentType string
	etag        string
	body        []byte
}

// routes maps each served path to its file. Everything else is 404.
var routes = map[string]string{
	"/":            "index.html",
	"/client.js":   "client.js",
	"/client.d.ts": "client.d.ts",
	"/console.js":  "console.js",
	"/console.css": "console.css",
}

var contentTypes = map[string]string{
	"index.html":  "text/html; charset=utf-8",
	"client.js":   "text/javascript; charset=utf-8",
	"console.js":  "text/javascript; charset=utf-8",
	"client.d.ts": "text/plain; charset=utf-8",
	"console.css": "text/css; charset=utf-8",
}

// csp keeps the console to its own files: no inline script or style, no
// other origin, WebSocket only to the page's own host.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Paths lists the paths Handler serves, for mounting it in a router.
func Paths() []string {
	return []string{"/", "/client.js", "/client.d.ts", "/console.js", "/console.css"}
}

// Options configure the console.
type Options struct {
	// SignIn makes the console ask for an API key or a JWT before it
	// connects (authentication with API keys or JWTs is on): the page is
	// served as <html data-auth="required">.
	SignIn bool
}

// Handler serves the console at / and its files (client.js, client.d.ts,
// console.js, console.css) for GET and HEAD, with Cache-Control: no-cache
// and a strong ETag (If-None-Match answers 304). Other paths are 404.
func Handler(opts Options) http.Handler {
	assets := make(map[string]*asset, len(routes))
	for path, name := range routes {
		body, err := files.ReadFile(name)
		if err != nil {
			panic("web: embedded file missing: " + name) // a build error, caught by the tests
		}
		if name == "index.html" && opts.SignIn {
			body = bytes.Replace(body, []byte(`<html lang="en">`), []byte(`<html lang="en" data-auth="required">`), 1)
		}
		sum := sha256.Sum256(body)
		assets[path] = &asset{
			name:        name,
			contentType: contentTypes[name],
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
			body:        body,
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if a.name == "index.html" {
			h.Set("Content-Security-Policy", csp)
			h.Set("Referrer-Policy", "no-referrer")
		}
		// ServeContent answers If-None-Match with 304, and HEAD and Range.
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}
