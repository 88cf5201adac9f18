package bridge

import "context"

// BatchOutcome is what became of one message of a batch: the broker's
// answer, or why it was not published.
type BatchOutcome struct {
	Result PublishResult
	Err    error
}

// BatchRefused is PublishBatch's error when it published nothing: Errs
// holds each message's refusal by index (nil for those that passed).
type BatchRefused struct{ Errs []error }

func (e *BatchRefused) Error() string {
	return "the batch was refused and nothing was published"
}

// PublishBatch publishes msgs in order, all or nothing at the checks: every
// message is checked (CheckPublish) before any is sent, together with
// invalid, the refusals the caller made itself (a message it could not
// decode; nil, or one error or nil per message). When any is refused,
// nothing is published and the error is a *BatchRefused. Otherwise each
// message is published in turn (Publish), and the outcomes hold each
// answer: the failure of one (the broker, the rate) does not stop the rest.
func (b *Bridge) PublishBatch(ctx context.Context, id Identity, msgs []Message, invalid []error) ([]BatchOutcome, error) {
	errs := make([]error, len(msgs))
	refused := false
	for i := range msgs {
		if i < len(invalid) && invalid[i] != nil {
			errs[i] = invalid[i]
		} else {
			errs[i] = b.CheckPublish(ctx, id, msgs[i])
		}
		refused = refused || errs[i] != nil
	}
	if refused {
		return nil, &BatchRefused{Errs: errs}
	}
	out := make([]BatchOutcome, len(msgs))
	for i, msg := range msgs {
		out[i].Result, out[i].Err = b.Publish(ctx, id, msg)
	}
	return out, nil
}
