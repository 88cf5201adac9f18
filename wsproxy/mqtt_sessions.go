package wsproxy

import (
	"sync"
	"time"
)

// Bounds of what the proxy remembers of broker sessions.
const (
	maxSessionsPerIdentity = 1024 // broker sessions of one identity; the least recently used goes
	maxFiltersPerSession   = 1024 // filters of one session; more are not remembered
)

// grants remembers, in this process, the filters the proxy passed on to
// the broker in SUBSCRIBE packets of each broker session (its broker client
// id), so that a connection that resumes the session under rules that no
// longer allow some of them unsubscribes those. The broker cannot be asked
// for a session's subscriptions; what is not remembered here (after a
// restart, on another instance, over maxFiltersPerSession) stays
// subscribed, and only the check of every delivery keeps it from the
// client.
type grants struct {
	mu sync.Mutex
	m  map[string]map[string]*grant // identity key → broker client id → grant
}

type grant struct {
	owner   *mqttConn // the connection holding the session; nil once it ended
	filters map[string]struct{}
	expires time.Time // once owner is nil; zero: never
	used    time.Time
}

// claim makes c the holder of session sid of identity key and returns the
// filters remembered for it; with fresh (a clean start, or no session
// present at the broker) it forgets them first.
func (g *grants) claim(key, sid string, c *mqttConn, fresh bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	sessions := g.m[key]
	if sessions == nil {
		if g.m == nil {
			g.m = map[string]map[string]*grant{}
		}
		sessions = map[string]*grant{}
		g.m[key] = sessions
	}
	gr := sessions[sid]
	if gr == nil || fresh || (gr.owner == nil && !gr.expires.IsZero() && now.After(gr.expires)) {
		if gr == nil && len(sessions) >= maxSessionsPerIdentity {
			evict(sessions)
		}
		gr = &grant{filters: map[string]struct{}{}}
		sessions[sid] = gr
	}
	gr.owner, gr.used = c, now
	out := make([]string, 0, len(gr.filters))
	for f := range gr.filters {
		out = append(out, f)
	}
	return out
}

// evict removes the least recently used session.
func evict(sessions map[string]*grant) {
	var oldest string
	var at time.Time
	for sid, gr := range sessions {
		if oldest == "" || gr.used.Before(at) {
			oldest, at = sid, gr.used
		}
	}
	delete(sessions, oldest)
}

// update adds (or, with remove, forgets) filters of session sid.
func (g *grants) update(key, sid string, filters []string, remove bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.m[key][sid]
	if gr == nil {
		return
	}
	for _, f := range filters {
		switch {
		case remove:
			delete(gr.filters, f)
		case len(gr.filters) < maxFiltersPerSession:
			gr.filters[f] = struct{}{}
		}
	}
}

// release ends c's hold on session sid: the broker keeps the session for
// ttl (0: never expires), or with keep false not at all.
func (g *grants) release(key, sid string, c *mqttConn, keep bool, ttl time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sessions := g.m[key]
	gr := sessions[sid]
	if gr == nil || gr.owner != c {
		return // another connection took the session over
	}
	gr.owner, gr.used = nil, time.Now()
	gr.expires = time.Time{}
	if ttl > 0 {
		gr.expires = gr.used.Add(ttl)
	}
	if !keep {
		delete(sessions, sid)
		if len(sessions) == 0 {
			delete(g.m, key)
		}
	}
}
