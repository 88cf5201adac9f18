package bridge_test

import (
	"strings"
	"testing"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Key tells identities of different kinds and issuers apart, never holds
// a character that would end it early in "<key>/<client id>", and reads
// back one way even when names hold ':' or '@'.
func TestIdentityKey(t *testing.T) {
	ids := []struct {
		id   bridge.Identity
		want string
	}{
		{bridge.Identity{}, "anonymous"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindAPIKey}, "key:alice"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindJWT}, "jwt:alice"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindCert}, "cert:alice"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindJWT, Issuer: "https://a.example/"}, "jwt@https%3A%2F%2Fa.example%2F:alice"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindJWT, Issuer: "https://b.example/"}, "jwt@https%3A%2F%2Fb.example%2F:alice"},
		// Separators in names and issuers cannot forge another's key.
		{bridge.Identity{Name: "key:alice", Kind: bridge.KindJWT}, "jwt:key:alice"},
		{bridge.Identity{Name: "b:alice", Kind: bridge.KindJWT, Issuer: "a"}, "jwt@a:b:alice"},
		{bridge.Identity{Name: "alice", Kind: bridge.KindJWT, Issuer: "a:b"}, "jwt@a%3Ab:alice"},
		{bridge.Identity{Name: "anonymous", Kind: bridge.KindAPIKey}, "key:anonymous"},
		{bridge.Identity{Name: "x", Kind: bridge.KindJWT, Issuer: "%41/+#@é"}, "jwt@%2541%2F%2B%23%40%C3%A9:x"},
	}
	seen := map[string]bridge.Identity{}
	for _, c := range ids {
		k := c.id.Key()
		if k != c.want {
			t.Errorf("%+v: key %q, want %q", c.id, k, c.want)
		}
		if other, dup := seen[k]; dup {
			t.Errorf("%+v and %+v share the key %q", c.id, other, k)
		}
		seen[k] = c.id
		if strings.ContainsAny(k, "/+#") {
			t.Errorf("key %q holds '/', '+' or '#'", k)
		}
	}
}
