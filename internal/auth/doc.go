// Package auth authenticates HTTP callers: API keys (stored as SHA-256
// hashes), JWTs (golang-jwt, an algorithm allow-list, HMAC secrets, public
// key files or a JWKS URL), TLS client certificates, and one-time tickets
// that it issues itself for browsers. Its Authenticator turns a request
// into a bridge.Identity (name, client id, topic rules, expiry) or an
// *bridge.Error with ECodeUnauthorized (401) or ECodeForbidden (403).
//
// It decides who is calling, never what they may do: the topic rules it
// finds travel in the Identity to the Authorizer (bridge/acl). It must not
// import httpapi, wsproxy or a store, and never logs or returns a
// credential.
package auth
