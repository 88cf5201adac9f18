package acl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Pattern placeholders; each must be a whole level.
const (
	UserLevel   = "%u" // the identity's name
	ClientLevel = "%c" // the identity's client id
)

// ACL authorizes by the identity's Rules. The zero value is ready.
type ACL struct{}

var _ bridge.PartialAuthorizer = ACL{}

// Authorize allows action on name or filter t when id's rules of that
// action allow every topic t can match.
func (ACL) Authorize(_ context.Context, id bridge.Identity, action bridge.Action, t string) error {
	rules, err := expandAll(id, action)
	if err != nil {
		return err
	}
	if action == bridge.ActionSubscribe {
		if topic.CoveredBy(t, rules) {
			return nil
		}
	} else {
		for _, r := range rules {
			if topic.Match(r, t) {
				return nil
			}
		}
	}
	return denied(id, action, t)
}

// AuthorizeSome allows when id's rules of action allow some topic that
// filter can match.
func (ACL) AuthorizeSome(_ context.Context, id bridge.Identity, action bridge.Action, filter string) error {
	rules, err := expandAll(id, action)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if topic.Overlap(r, filter) {
			return nil
		}
	}
	return denied(id, action, filter)
}

func denied(id bridge.Identity, action bridge.Action, t string) error {
	if len(t) > 200 {
		t = t[:200] + "…"
	}
	who := "the anonymous caller"
	if id.Name != "" {
		who = fmt.Sprintf("identity %q", id.Name)
	}
	return bridge.Errorf(bridge.ECodeForbidden, "%s may not %s %q", who, action, t)
}

// expandAll returns id's rules of action with %u and %c substituted,
// dropping rules whose placeholder has no usable value.
func expandAll(id bridge.Identity, action bridge.Action) ([]string, error) {
	if err := CheckName(id.Name); id.Name != "" && err != nil {
		return nil, bridge.Errorf(bridge.ECodeForbidden, "the identity name cannot be used: %v", err)
	}
	patterns := id.Rules.For(action)
	out := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if r, ok := Expand(p, id.Name, id.ClientID); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Expand substitutes name for every %u level and clientID for every %c
// level of pattern. ok is false, and the rule must be ignored, when a
// placeholder's value is empty or not usable as a level (CheckName), or
// when it would make the first level a $ level.
func Expand(pattern, name, clientID string) (string, bool) {
	if !strings.Contains(pattern, "%") {
		return pattern, true
	}
	levels := strings.Split(pattern, "/")
	for i, l := range levels {
		var v string
		switch l {
		case UserLevel:
			v = name
		case ClientLevel:
			v = clientID
		default:
			continue
		}
		if CheckName(v) != nil || i == 0 && strings.HasPrefix(v, "$") {
			return "", false
		}
		levels[i] = v
	}
	return strings.Join(levels, "/"), true
}

// Errors of CheckName.
var (
	ErrEmptyName    = errors.New("must not be empty")
	ErrNameWildcard = errors.New("must not contain +, #, / or U+0000")
)

// CheckName checks that an identity name or client id can stand in a
// topic level: not empty, without +, #, / and U+0000, valid UTF-8 of at
// most 65535 bytes.
func CheckName(s string) error {
	switch {
	case s == "":
		return ErrEmptyName
	case strings.ContainsAny(s, "+#/\x00"):
		return ErrNameWildcard
	}
	return topic.ValidateName(s)
}

// ValidatePattern checks a rule pattern: a valid MQTT filter (not a shared
// subscription) once its placeholders are substituted, with %u and %c only
// as whole levels.
func ValidatePattern(p string) error {
	if _, _, shared := topic.IsShared(p); shared {
		return errors.New("a rule cannot be a shared subscription ($share/...)")
	}
	levels := strings.Split(p, "/")
	for i, l := range levels {
		switch {
		case l == UserLevel || l == ClientLevel:
			levels[i] = "x"
		case strings.Contains(l, UserLevel) || strings.Contains(l, ClientLevel):
			return fmt.Errorf("%%u and %%c must be whole levels, as in devices/%%u/#; level %q is not", l)
		}
	}
	return topic.ValidateFilter(strings.Join(levels, "/"))
}

// ValidateRules checks every pattern of r; the error names the action and
// the index.
func ValidateRules(r bridge.Rules) error {
	var errs []error
	for _, a := range []bridge.Action{bridge.ActionPublish, bridge.ActionSubscribe, bridge.ActionRequest} {
		for i, p := range r.For(a) {
			if err := ValidatePattern(p); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d] %q: %w", a, i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}
