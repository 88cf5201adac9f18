package bridge

import "context"

// Authorize asks the Bridge's authorizer whether id may do action on a
// topic name or filter. The Bridge's own operations call it themselves;
// consumers of the bridge that act on messages outside them (the webhook
// dead-letter endpoints) use it.
func (b *Bridge) Authorize(ctx context.Context, id Identity, action Action, topic string) error {
	return b.cfg.Authorizer.Authorize(ctx, id, action, topic)
}
