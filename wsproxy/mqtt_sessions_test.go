package wsproxy

import (
	"fmt"
	"slices"
	"testing"
)

// What the proxy remembers of broker sessions: claimed, updated, kept or
// forgotten at the end, never ended by a connection that was taken over,
// and bounded per identity and per session.
func TestGrants(t *testing.T) {
	var g grants
	a, b := &mqttConn{}, &mqttConn{}
	if got := g.claim("key:alice", "s", a, false); len(got) != 0 {
		t.Fatalf("a new session: %v", got)
	}
	g.update("key:alice", "s", []string{"x/#", "y"}, false)
	g.update("key:alice", "s", []string{"y"}, true)
	// b takes the session over; a's end does not forget it.
	if got := g.claim("key:alice", "s", b, false); !slices.Equal(got, []string{"x/#"}) {
		t.Fatalf("resumed: %v, want [x/#]", got)
	}
	g.release("key:alice", "s", a, false, 0)
	g.release("key:alice", "s", b, true, 0)
	if got := g.claim("key:bob", "s", a, false); len(got) != 0 {
		t.Fatalf("another identity's session of the same id: %v", got)
	}
	if got := g.claim("key:alice", "s", a, false); !slices.Equal(got, []string{"x/#"}) {
		t.Fatalf("kept: %v, want [x/#]", got)
	}
	g.release("key:alice", "s", a, false, 0) // a session that ends with its connection
	if got := g.claim("key:alice", "s", a, false); len(got) != 0 {
		t.Fatalf("after a session without expiry: %v", got)
	}
	g.update("key:alice", "s", []string{"x/#"}, false)
	if got := g.claim("key:alice", "s", a, true); len(got) != 0 {
		t.Fatalf("a clean start: %v", got)
	}

	for i := range maxFiltersPerSession + 10 {
		g.update("key:alice", "s", []string{fmt.Sprint(i)}, false)
	}
	if n := len(g.m["key:alice"]["s"].filters); n != maxFiltersPerSession {
		t.Errorf("%d filters remembered, want %d", n, maxFiltersPerSession)
	}
	for i := range maxSessionsPerIdentity + 10 {
		g.claim("key:carol", fmt.Sprint(i), a, false)
	}
	if n := len(g.m["key:carol"]); n != maxSessionsPerIdentity {
		t.Errorf("%d sessions remembered, want %d", n, maxSessionsPerIdentity)
	}
	if _, ok := g.m["key:carol"][fmt.Sprint(maxSessionsPerIdentity+9)]; !ok {
		t.Error("the newest session was evicted")
	}
}
