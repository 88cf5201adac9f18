package bridge

import "context"

// Action is what an identity wants to do with a topic or filter.
type Action string

const (
	ActionPublish   Action = "publish"   // publish to a topic name; delete a retained value
	ActionSubscribe Action = "subscribe" // read last values, history, streams of a filter
	ActionRequest   Action = "request"   // MQTT v5 request/response on a topic
)

// Identity is who is calling. The zero Identity is the anonymous caller.
type Identity struct {
	// Name is the identity's name (API key name, JWT subject, ...).
	Name string
	// ClientID is the client id of a connection, when there is one.
	ClientID string
}

// Authorizer decides whether an identity may perform an action on a topic
// name or filter. Every operation of the Bridge calls it; it returns nil or
// an *Error with ECodeForbidden saying why.
type Authorizer interface {
	Authorize(ctx context.Context, id Identity, action Action, topic string) error
}

// AllowAll is the Authorizer used until authentication is configured.
type AllowAll struct{}

// Authorize allows everything.
func (AllowAll) Authorize(context.Context, Identity, Action, string) error { return nil }

var _ Authorizer = AllowAll{}
