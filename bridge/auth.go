package bridge

import (
	"context"
	"time"
)

// Action is what an identity wants to do with a topic or filter.
type Action string

const (
	ActionPublish   Action = "publish"   // publish to a topic name; delete a retained value
	ActionSubscribe Action = "subscribe" // read last values, history, streams of a filter
	ActionRequest   Action = "request"   // MQTT v5 request/response on a topic
)

// Identity kinds: how an identity authenticated. Names of different kinds
// never share state (see Identity.Key).
const (
	KindAPIKey = "key"  // an API key; Name is the key's configured name
	KindJWT    = "jwt"  // a JSON Web Token; Name is its name claim
	KindCert   = "cert" // a TLS client certificate; Name is its common name
)

// Identity is who is calling. The zero Identity is the anonymous caller.
type Identity struct {
	// Name is the identity's name (API key name, JWT subject, ...); %u in
	// rules.
	Name string
	// Kind is how it authenticated (KindAPIKey, KindJWT, KindCert); empty
	// for the anonymous caller.
	Kind string
	// Issuer qualifies Kind where names of one kind come from several
	// authorities: a JWT's iss when the bridge accepts tokens of any
	// issuer; empty otherwise.
	Issuer string
	// ClientID is the client id of a connection, when there is one.
	ClientID string
	// Rules are the identity's topic permissions, as the authenticator
	// found them (nil: none). The Authorizer reads them; AllowAll ignores
	// them.
	Rules *Rules
	// Expires is when the credentials expire; zero means never. Long-lived
	// connections end then.
	Expires time.Time
}

// IsAnonymous reports whether id is the zero Identity's caller: no name.
func (id Identity) IsAnonymous() bool { return id.Name == "" }

// Key names the identity wherever a name keys state (broker client ids of
// /mqtt, tickets, connection and rate limits): "<kind>:<name>", or
// "<kind>@<issuer>:<name>" with an issuer, and "anonymous" for the
// anonymous caller. Two identities of different kinds (an API key and a JWT
// subject of the same name) or of different issuers never share a key.
//
// The encoding is injective and holds no '/', '+' or '#': the kind is one
// of a closed set of letters, the issuer is percent-encoded (every byte but
// A-Z a-z 0-9 - . _ ~), and names cannot hold '/', '+' or '#' (a name may
// hold ':' or '@': it is always last). So "<key>/<anything>" is a key
// followed by what comes after its first '/'.
func (id Identity) Key() string {
	if id.IsAnonymous() {
		return "anonymous"
	}
	if id.Issuer != "" {
		return id.Kind + "@" + escapeIssuer(id.Issuer) + ":" + id.Name
	}
	return id.Kind + ":" + id.Name
}

// escapeIssuer percent-encodes every byte of s but the unreserved ones of
// RFC 3986.
func escapeIssuer(s string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

// Rules are topic permissions: MQTT filters per action, which may use %u
// (the identity's name) and %c (its client id) as whole levels, e.g.
// devices/%u/#.
type Rules struct {
	Publish   []string `json:"publish,omitempty" yaml:"publish"`
	Subscribe []string `json:"subscribe,omitempty" yaml:"subscribe"`
	Request   []string `json:"request,omitempty" yaml:"request"`
}

// For returns the patterns of one action.
func (r *Rules) For(a Action) []string {
	if r == nil {
		return nil
	}
	switch a {
	case ActionPublish:
		return r.Publish
	case ActionSubscribe:
		return r.Subscribe
	case ActionRequest:
		return r.Request
	}
	return nil
}

// Authorizer decides whether an identity may perform an action on a topic
// name or filter. Every operation of the Bridge calls it; it returns nil or
// an *Error with ECodeForbidden saying why. For a filter it allows only
// when every topic the filter can match is allowed.
type Authorizer interface {
	Authorize(ctx context.Context, id Identity, action Action, topic string) error
}

// PartialAuthorizer is an Authorizer that can also tell whether an
// identity may act on some (not necessarily every) topic a filter matches.
// Bridge.List uses it to refuse at once a filter that reaches nothing
// allowed; without it, List checks every topic it finds.
type PartialAuthorizer interface {
	Authorizer
	// AuthorizeSome returns nil when some topic the filter matches may be
	// allowed, else an *Error with ECodeForbidden.
	AuthorizeSome(ctx context.Context, id Identity, action Action, filter string) error
}

// AllowAll is the Authorizer used until authentication is configured.
type AllowAll struct{}

// Authorize allows everything.
func (AllowAll) Authorize(context.Context, Identity, Action, string) error { return nil }

var _ Authorizer = AllowAll{}

// Limiter rate-limits what an identity does. The Bridge calls Allow for
// every publish (REST, batch items, WebSocket frames alike) and every
// request, after the operation's checks and before it is sent, and with
// ActionSubscribe for every read (Last, each List page, each Connect)
// after its checks and before the store is asked; a refusal is an *Error
// with ECodeRateLimited and RetryAfter set.
type Limiter interface {
	Allow(id Identity, action Action) error
}

// NoLimit is the Limiter that allows everything.
type NoLimit struct{}

// Allow allows.
func (NoLimit) Allow(Identity, Action) error { return nil }

var _ Limiter = NoLimit{}
