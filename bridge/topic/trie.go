package topic

import "strings"

// Trie holds a set of (filter, value) pairs and finds those whose filter
// matches a topic name. Filters are split into levels; + and # levels have
// their own branches, so Match walks only the branches the name can reach.
//
// A $share/{group}/{filter} is stored under its inner filter and matches like
// it; Match reports it with the filter as it was added.
//
// Filters are assumed valid (ValidateFilter); an invalid one is stored
// without error and matches nothing sensible.
//
// A Trie is not safe for concurrent use: callers hold a lock around Add,
// Remove and Match. The zero value is an empty trie ready to use.
type Trie[V comparable] struct {
	root node[V]
	n    int
}

type entry[V comparable] struct {
	filter string
	value  V
}

type node[V comparable] struct {
	children map[string]*node[V] // literal levels, created on first use
	plus     *node[V]            // the + level
	hash     *node[V]            // the # level (a leaf in valid filters)
	entries  []entry[V]          // pairs whose filter ends at this node
	// index locates an entry in entries once there are many, so Add and
	// Remove stay O(1) when thousands of values share one filter.
	index map[entry[V]]int
}

// indexFrom is the number of entries at one node from which an index map is
// kept; below it a linear scan is cheaper.
const indexFrom = 16

// NewTrie returns an empty trie.
func NewTrie[V comparable]() *Trie[V] {
	return &Trie[V]{}
}

// Len is the number of (filter, value) pairs held.
func (t *Trie[V]) Len() int { return t.n }

// Add stores the pair (filter, v). Adding a pair that is already held does
// nothing.
func (t *Trie[V]) Add(filter string, v V) {
	n := &t.root
	rest := plain(filter)
	for more := true; more; {
		var level string
		level, rest, more = cut(rest)
		n = n.child(level)
	}
	if n.add(entry[V]{filter, v}) {
		t.n++
	}
}

// Remove deletes the pair (filter, v) and reports whether it was held.
// Nodes left empty are freed.
func (t *Trie[V]) Remove(filter string, v V) bool {
	if t.root.remove(plain(filter), entry[V]{filter, v}) {
		t.n--
		return true
	}
	return false
}

// Match calls fn once for every held (filter, value) pair whose filter
// matches name (see the package function Match, including the $ rule). The
// same value held under two matching filters is reported once per filter;
// callers that want each value once dedup. The order is unspecified. fn must
// not modify the trie. Match itself does not allocate.
func (t *Trie[V]) Match(name string, fn func(filter string, v V)) {
	n := &t.root
	level, rest, more := cut(name)
	if !strings.HasPrefix(level, "$") {
		// The $ rule: wildcards in the first level never match $ names.
		if n.hash != nil {
			n.hash.emit(fn)
		}
		if n.plus != nil {
			n.plus.match(rest, more, fn)
		}
	}
	if c := n.children[level]; c != nil {
		c.match(rest, more, fn)
	}
}

// match visits n, reached by the levels before name: name holds the levels
// left, and more says whether there is one (name "" with more is one empty
// level).
func (n *node[V]) match(name string, more bool, fn func(string, V)) {
	if n.hash != nil {
		// # matches its parent level and any number of children.
		n.hash.emit(fn)
	}
	if !more {
		n.emit(fn)
		return
	}
	level, rest, more := cut(name)
	if n.plus != nil {
		n.plus.match(rest, more, fn)
	}
	if c := n.children[level]; c != nil {
		c.match(rest, more, fn)
	}
}

func (n *node[V]) emit(fn func(string, V)) {
	for _, e := range n.entries {
		fn(e.filter, e.value)
	}
}

// get returns the child for level, or nil.
func (n *node[V]) get(level string) *node[V] {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.children[level]
}

// set stores c as the child for level; nil removes it.
func (n *node[V]) set(level string, c *node[V]) {
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if c != nil {
			if n.children == nil {
				n.children = make(map[string]*node[V])
			}
			n.children[level] = c
			return
		}
		delete(n.children, level)
		if len(n.children) == 0 {
			n.children = nil
		}
	}
}

// child returns the child for level, creating it.
func (n *node[V]) child(level string) *node[V] {
	c := n.get(level)
	if c == nil {
		c = &node[V]{}
		n.set(level, c)
	}
	return c
}

func (n *node[V]) empty() bool {
	return len(n.entries) == 0 && n.children == nil && n.plus == nil && n.hash == nil
}

// remove deletes e from the node that the levels of path lead to from n,
// freeing nodes left empty on the way back, and reports whether e was held.
func (n *node[V]) remove(path string, e entry[V]) bool {
	level, rest, more := cut(path)
	c := n.get(level)
	if c == nil {
		return false
	}
	var ok bool
	if more {
		ok = c.remove(rest, e)
	} else {
		ok = c.removeEntry(e)
	}
	if ok && c.empty() {
		n.set(level, nil)
	}
	return ok
}

func (n *node[V]) removeEntry(e entry[V]) bool {
	i := n.find(e)
	if i < 0 {
		return false
	}
	last := len(n.entries) - 1
	if i != last {
		n.entries[i] = n.entries[last]
		if n.index != nil {
			n.index[n.entries[i]] = i
		}
	}
	n.entries[last] = entry[V]{} // let the value be collected
	n.entries = n.entries[:last]
	if n.index != nil {
		delete(n.index, e)
		if len(n.entries) < indexFrom/2 {
			n.index = nil
		}
	}
	return true
}

func (n *node[V]) add(e entry[V]) bool {
	if n.find(e) >= 0 {
		return false
	}
	n.entries = append(n.entries, e)
	if n.index != nil {
		n.index[e] = len(n.entries) - 1
	} else if len(n.entries) >= indexFrom {
		n.index = make(map[entry[V]]int, len(n.entries))
		for i, e := range n.entries {
			n.index[e] = i
		}
	}
	return true
}

func (n *node[V]) find(e entry[V]) int {
	if n.index != nil {
		if i, ok := n.index[e]; ok {
			return i
		}
		return -1
	}
	for i, x := range n.entries {
		if x == e {
			return i
		}
	}
	return -1
}
