package acl

import (
	"strings"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

func TestExpand(t *testing.T) {
	for _, c := range []struct {
		pattern, name, client string
		want                  string // "" when the rule is ignored
	}{
		{"devices/%u/#", "alice", "", "devices/alice/#"},
		{"devices/%c/#", "alice", "c1", "devices/c1/#"},
		{"%u/%c", "alice", "c1", "alice/c1"},
		{"%u", "alice", "", "alice"},
		{"devices/%u%c/#", "alice", "c1", "devices/%u%c/#"}, // not whole levels: literal
		{"devices/x%u", "alice", "", "devices/x%u"},
		{"devices/%u/%u", "bob", "", "devices/bob/bob"},
		{"devices/%c/#", "alice", "", ""},      // no client id
		{"devices/%u/#", "", "c1", ""},         // anonymous
		{"devices/%u/#", "a+b", "", ""},        // a wildcard in the name
		{"devices/%u/#", "a#", "", ""},         // a wildcard in the name
		{"devices/%u/#", "a/b", "", ""},        // a level separator in the name
		{"devices/%u/#", "a\x00", "", ""},      // U+0000
		{"devices/%c/#", "alice", "c/1", ""},   // a level separator in the client id
		{"%u/#", "$SYS", "", ""},               // would name a $ topic
		{"devices/%u", "$x", "", "devices/$x"}, // not the first level: harmless
		{"plain/#", "", "", "plain/#"},
	} {
		got, ok := Expand(c.pattern, c.name, c.client)
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("Expand(%q, %q, %q) = %q, want %q", c.pattern, c.name, c.client, got, c.want)
		}
	}
}

func id(name, client string, r bridge.Rules) bridge.Identity {
	return bridge.Identity{Name: name, ClientID: client, Rules: &r}
}

func TestAuthorize(t *testing.T) {
	alice := id("alice", "web-1", bridge.Rules{
		Publish:   []string{"devices/%u/cmd/+", "clients/%c/#"},
		Subscribe: []string{"devices/%u/#", "public/#", "$SYS/broker/+", "shared", "shared/+/#"},
		Request:   []string{"rpc/%u/+"},
	})
	sub, pub, req := bridge.ActionSubscribe, bridge.ActionPublish, bridge.ActionRequest
	for _, c := range []struct {
		who    bridge.Identity
		action bridge.Action
		topic  string
		want   bool
	}{
		{alice, pub, "devices/alice/cmd/on", true},
		{alice, pub, "devices/bob/cmd/on", false},
		{alice, pub, "devices/alice/cmd", false},
		{alice, pub, "devices/alice/cmd/on/x", false},
		{alice, pub, "clients/web-1/x/y", true},
		{alice, pub, "clients/web-2/x", false},
		{alice, pub, "public/x", false}, // subscribe does not grant publish
		{alice, sub, "devices/alice/temp", true},
		{alice, sub, "devices/alice/#", true},
		{alice, sub, "devices/alice", true},
		{alice, sub, "devices/+/temp", false}, // reaches other devices
		{alice, sub, "devices/#", false},
		{alice, sub, "#", false},
		{alice, sub, "public/+/x", true},
		{alice, sub, "$SYS/broker/load", true},
		{alice, sub, "$SYS/broker/+", true},
		{alice, sub, "$SYS/broker/#", false}, // also $SYS/broker and deeper
		{alice, sub, "$SYS/other", false},
		{alice, sub, "shared/#", true}, // shared and shared/+/# together, neither alone
		{alice, sub, "$share/g/public/#", true},
		{alice, sub, "$share/g/devices/#", false},
		{alice, req, "rpc/alice/reboot", true},
		{alice, req, "rpc/bob/reboot", false},
		{alice, pub, "rpc/alice/reboot", false},
		// No client id: %c rules grant nothing.
		{id("alice", "", *alice.Rules), pub, "clients//x", false},
		{id("alice", "", *alice.Rules), pub, "devices/alice/cmd/on", true},
		// Names that cannot stand in a level are refused outright.
		{id("a+b", "", bridge.Rules{Publish: []string{"#"}}), pub, "x", false},
		{id("a/b", "", bridge.Rules{Subscribe: []string{"public/#"}}), sub, "public/x", false},
		{id("a\x00", "", bridge.Rules{Publish: []string{"#"}}), pub, "x", false},
		// Deny by default: no rules, nil rules, the anonymous caller.
		{id("bob", "", bridge.Rules{}), pub, "x", false},
		{bridge.Identity{Name: "bob"}, sub, "x", false},
		{bridge.Identity{}, sub, "x", false},
		// # does not reach $ topics; a rule naming them does.
		{id("bob", "", bridge.Rules{Subscribe: []string{"#"}}), sub, "$SYS/x", false},
		{id("bob", "", bridge.Rules{Subscribe: []string{"#"}}), sub, "a/b", true},
		{id("bob", "", bridge.Rules{Subscribe: []string{"+/#"}}), sub, "$x/y", false},
		{id("bob", "", bridge.Rules{Publish: []string{"#"}}), pub, "$share/g/x", false},
		// A %u first level never names a $ topic.
		{id("$SYS", "", bridge.Rules{Subscribe: []string{"%u/#"}}), sub, "$SYS/x", false},
	} {
		err := ACL{}.Authorize(t.Context(), c.who, c.action, c.topic)
		if got := err == nil; got != c.want {
			t.Errorf("%q %s %q: allowed %v, want %v (err %v)", c.who.Name, c.action, c.topic, got, c.want, err)
		}
		if err != nil && bridge.ErrorCode(err) != bridge.ECodeForbidden {
			t.Errorf("%q %s %q: error code %q, want forbidden", c.who.Name, c.action, c.topic, bridge.ErrorCode(err))
		}
	}
}

func TestAuthorizeSome(t *testing.T) {
	alice := id("alice", "", bridge.Rules{Subscribe: []string{"devices/%u/#", "$SYS/x"}})
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{"#", true},
		{"devices/+/temp", true},
		{"devices/bob/#", false},
		{"other/#", false},
		{"$SYS/#", true},
		{"+/x", false}, // does not reach $SYS/x
	} {
		err := ACL{}.AuthorizeSome(t.Context(), alice, bridge.ActionSubscribe, c.filter)
		if got := err == nil; got != c.want {
			t.Errorf("AuthorizeSome(%q) allowed %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestValidatePattern(t *testing.T) {
	for _, c := range []struct {
		pattern string
		ok      bool
	}{
		{"devices/%u/#", true},
		{"%c/+/x", true},
		{"#", true},
		{"$SYS/#", true},
		{"a/#/b", false},
		{"a+", false},
		{"x%u/#", false},
		{"devices/%u%c", false},
		{"$share/g/#", false},
		{"", false},
	} {
		if err := ValidatePattern(c.pattern); (err == nil) != c.ok {
			t.Errorf("ValidatePattern(%q) = %v, want ok %v", c.pattern, err, c.ok)
		}
	}
	err := ValidateRules(bridge.Rules{Publish: []string{"ok/#"}, Subscribe: []string{"a", "b/#/c"}})
	if err == nil || !strings.Contains(err.Error(), "subscribe[1]") {
		t.Errorf("ValidateRules: %v, want an error naming subscribe[1]", err)
	}
}

// A valid pattern expands into a valid filter with the same number of
// levels, whatever the name and client id: they can never inject a
// wildcard, a level or a $ topic, and Authorize never allows a topic that
// no expanded rule matches.
func FuzzPattern(f *testing.F) {
	f.Add("devices/%u/#", "alice", "c1", "devices/alice/x")
	f.Add("%u/%c", "a+b", "c/1", "a/b")
	f.Add("%u/#", "$SYS", "", "$SYS/x")
	f.Add("x/%c/+", "", "#", "x/#/y")
	f.Fuzz(func(t *testing.T, pattern, name, client, name2 string) {
		if ValidatePattern(pattern) != nil {
			return
		}
		got, ok := Expand(pattern, name, client)
		if !ok {
			return
		}
		if err := topic.ValidateFilter(got); err != nil {
			t.Fatalf("Expand(%q, %q, %q) = %q, an invalid filter: %v", pattern, name, client, got, err)
		}
		if strings.Count(got, "/") != strings.Count(pattern, "/") {
			t.Fatalf("Expand(%q, %q, %q) = %q: the levels changed", pattern, name, client, got)
		}
		if strings.HasPrefix(got, "$") && !strings.HasPrefix(pattern, "$") {
			t.Fatalf("Expand(%q, %q, %q) = %q: a $ topic from a placeholder", pattern, name, client, got)
		}
		if topic.ValidateName(name2) != nil {
			return
		}
		who := id(name, client, bridge.Rules{Publish: []string{pattern}})
		if (ACL{}).Authorize(t.Context(), who, bridge.ActionPublish, name2) == nil && !topic.Match(got, name2) {
			t.Fatalf("%q may publish to %q, which %q does not match", name, name2, got)
		}
	})
}
