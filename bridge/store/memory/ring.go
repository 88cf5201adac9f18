package memory

import (
	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/bridge/store/internal/storeutil"
)

// entry is one message of the history and its parsed id.
type entry struct {
	id  storeutil.ID
	msg bridge.Message
}

// ring is the history: a FIFO of entries in a circular buffer that grows
// (doubling, up to a limit) as it fills, so a small history costs little.
// The zero value is empty.
type ring struct {
	buf  []entry
	head int // index of the oldest entry
	n    int // entries in use
}

func (r *ring) len() int { return r.n }

// at returns the i-th oldest entry, 0 ≤ i < len.
func (r *ring) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

// push appends e as the newest entry. limit caps the buffer's growth; it
// must be above len.
func (r *ring) push(e entry, limit int) {
	if r.n == len(r.buf) {
		buf := make([]entry, min(max(16, 2*len(r.buf)), limit))
		for i := range r.n {
			buf[i] = *r.at(i)
		}
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
}

// pop drops the oldest entry, releasing its message. The ring must not be
// empty.
func (r *ring) pop() {
	r.buf[r.head] = entry{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}
