package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// after calls After and fails the test on an error. It checks the page
// size and that the ids are above from and increasing.
func after(t testing.TB, s bridge.Store, from string, limit int) []bridge.Message {
	t.Helper()
	msgs, err := s.After(t.Context(), from, limit)
	if err != nil {
		t.Fatalf("After(%s, %d): %v", from, limit, err)
	}
	if len(msgs) > limit {
		t.Fatalf("After(%s, %d) returned %d messages", from, limit, len(msgs))
	}
	prev := parseID(t, from)
	for _, m := range msgs {
		cur := parseID(t, m.ID)
		if !prev.less(cur) {
			t.Fatalf("After(%s, %d): id %s follows %d-%d", from, limit, m.ID, prev.ms, prev.seq)
		}
		prev = cur
	}
	return msgs
}

// afterAll pages through the history after from and returns every message
// and the number of calls. A short page must be the last one.
func afterAll(t testing.TB, s bridge.Store, from string, limit int) ([]bridge.Message, int) {
	t.Helper()
	var all []bridge.Message
	for calls := 1; ; calls++ {
		if calls > 10000 {
			t.Fatalf("After(%s, %d) did not end after %d calls", from, limit, calls)
		}
		msgs := after(t, s, from, limit)
		all = append(all, msgs...)
		if len(msgs) == 0 {
			return all, calls
		}
		from = msgs[len(msgs)-1].ID
		if len(msgs) < limit {
			if more := after(t, s, from, limit); len(more) > 0 {
				t.Fatalf("After(%s, %d) returned %d messages after a short page", from, limit, len(more))
			}
			return all, calls + 1
		}
	}
}

func lastID(t testing.TB, s bridge.Store) string {
	t.Helper()
	id, err := s.LastID(t.Context())
	if err != nil {
		t.Fatalf("LastID: %v", err)
	}
	return id
}

func ids(msgs []bridge.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// requireGap fails unless After(from) reports that the window no longer
// covers from.
func requireGap(t testing.TB, s bridge.Store, from string) {
	t.Helper()
	msgs, err := s.After(t.Context(), from, 1000)
	if err == nil {
		t.Fatalf("After(%s) = %d messages %q, want a gap error", from, len(msgs), ids(msgs))
	}
	var e *bridge.Error
	if !errors.As(err, &e) || e.Code != bridge.ECodeGap || !errors.Is(err, bridge.ErrGap) {
		t.Fatalf("After(%s) error = %v, want bridge.ErrGap (code gap)", from, err)
	}
}

// testHistoryRoundTrip: the history holds every Put, deletes included,
// with the ids Put returned and every field intact, in order.
func testHistoryRoundTrip(t *testing.T, s bridge.Store) {
	if id := lastID(t, s); id != "0-0" {
		t.Fatalf("LastID of an empty store = %s, want 0-0", id)
	}
	if msgs := after(t, s, "0-0", 10); len(msgs) != 0 {
		t.Fatalf("After(0-0) of an empty store = %q", ids(msgs))
	}
	// Received two hours ago (the default age is one hour): the age counts
	// from the id, given when the store records the message.
	old := time.Now().Add(-2 * time.Hour)
	var want []bridge.Message
	for _, in := range []bridge.Message{
		{Topic: "h/a", Payload: allBytes(false), QoS: 2, Retain: true, ReceivedAt: old,
			Properties: bridge.Properties{
				ContentType:     "application/octet-stream",
				PayloadFormat:   ptr(byte(0)),
				MessageExpiry:   ptr(uint32(86400 * 365 * 100)),
				ResponseTopic:   "reply/to",
				CorrelationData: allBytes(true),
				UserProperties:  []bridge.UserProperty{{Key: "b", Value: "1"}, {Key: "a", Value: ""}, {Key: "b", Value: "3"}},
			}},
		{Topic: "h/b", Payload: []byte("b")},
		{Topic: "h/a", Retain: true},                       // deletes h/a
		{Topic: "h/none", Retain: true, Payload: []byte{}}, // deletes nothing
		{Topic: "h/c", QoS: 1},                             // empty, not retained: a value
		{Topic: "h/b", Payload: []byte("b2"), Retain: true},
	} {
		want = append(want, put(t, s, in))
	}
	requireNotFound(t, s, "h/a")
	got := after(t, s, "0-0", 1000)
	if len(got) != len(want) {
		t.Fatalf("After(0-0) = %q, want %q", ids(got), ids(want))
	}
	for i := range want {
		requireEqual(t, fmt.Sprintf("After(0-0)[%d]", i), got[i], want[i])
	}
	if !got[2].IsDelete() || !got[3].IsDelete() || got[4].IsDelete() {
		t.Fatalf("deletes in the history: %v %v %v, want true true false", got[2].IsDelete(), got[3].IsDelete(), got[4].IsDelete())
	}
	last := want[len(want)-1].ID
	if id := lastID(t, s); id != last {
		t.Fatalf("LastID = %s, want the last Put's %s", id, last)
	}
	if msgs := after(t, s, last, 10); len(msgs) != 0 {
		t.Fatalf("After(LastID) = %q, want nothing", ids(msgs))
	}
	if msgs := after(t, s, want[2].ID, 1000); !slices.Equal(ids(msgs), ids(want[3:])) {
		t.Fatalf("After(%s) = %q, want %q", want[2].ID, ids(msgs), ids(want[3:]))
	}
	// The id just below a message's (not necessarily one the store
	// assigned) starts at that message.
	below := parseID(t, want[1].ID)
	if below.seq > 0 {
		below.seq--
	} else {
		below.ms, below.seq = below.ms-1, 1<<64-1
	}
	from := fmt.Sprintf("%d-%d", below.ms, below.seq)
	if msgs := after(t, s, from, 1000); !slices.Equal(ids(msgs), ids(want[1:])) {
		t.Fatalf("After(%s) = %q, want %q", from, ids(msgs), ids(want[1:]))
	}
	// Results are copies.
	got[0].Payload[0] ^= 0xff
	got[0].Properties.CorrelationData[0] ^= 0xff
	got[0].Properties.UserProperties[0].Key = "changed"
	requireEqual(t, "After(0-0)[0] after changing a result", after(t, s, "0-0", 1)[0], want[0])
	// A later Put follows the last id.
	m := put(t, s, bridge.Message{Topic: "h/d", Payload: []byte("d")})
	if msgs := after(t, s, last, 10); len(msgs) != 1 || msgs[0].ID != m.ID {
		t.Fatalf("After(%s) = %q, want [%s]", last, ids(msgs), m.ID)
	}
}

// testHistoryPages: paging with every limit returns every message once, in
// order.
func testHistoryPages(t *testing.T, s bridge.Store) {
	var want []string
	for i := range 25 {
		m := put(t, s, bridge.Message{Topic: fmt.Sprintf("pg/%d", i%3), Payload: []byte{byte(i)}, Retain: i%4 == 0})
		want = append(want, m.ID)
	}
	for _, limit := range []int{1, 2, 7, 24, 25, 26, 1000} {
		msgs, calls := afterAll(t, s, "0-0", limit)
		if got := ids(msgs); !slices.Equal(got, want) {
			t.Fatalf("After(0-0) in pages of %d = %q, want %q", limit, got, want)
		}
		if minCalls := (len(want) + limit - 1) / limit; calls < minCalls {
			t.Fatalf("After in pages of %d took %d calls for %d messages", limit, calls, len(want))
		}
		for i, m := range msgs {
			if len(m.Payload) != 1 || m.Payload[0] != byte(i) {
				t.Fatalf("message %d (%s) has payload %v", i, m.ID, m.Payload)
			}
		}
	}
	for _, limit := range []int{0, -1, 1001} {
		_, err := s.After(t.Context(), "0-0", limit)
		requireCode(t, err, bridge.ECodeInvalidRequest, fmt.Sprintf("After(limit %d)", limit))
	}
}

// testHistoryExpired: expired messages are skipped when read, a long run
// of them does not end a page early, and a message that expires later is
// there until it does.
func testHistoryExpired(t *testing.T, s bridge.Store) {
	now := time.Now()
	live1 := put(t, s, bridge.Message{Topic: "x/live", Payload: []byte("1")})
	put(t, s, bridge.Message{Topic: "x/dead", Payload: []byte("v"), ReceivedAt: now.Add(-2 * time.Second),
		Properties: bridge.Properties{MessageExpiry: ptr(uint32(1))}})
	soon := put(t, s, bridge.Message{Topic: "x/soon", Payload: []byte("s"), ReceivedAt: now,
		Properties: bridge.Properties{MessageExpiry: ptr(uint32(1))}})
	for i := range 150 { // expired when put
		put(t, s, bridge.Message{Topic: fmt.Sprintf("x/dead/%d", i%3), Payload: []byte("v"), ReceivedAt: now.Add(-2 * time.Second),
			Properties: bridge.Properties{MessageExpiry: ptr(uint32(1))}})
	}
	live2 := put(t, s, bridge.Message{Topic: "x/live", Payload: []byte("2")})

	if got, want := ids(after(t, s, "0-0", 1000)), []string{live1.ID, soon.ID, live2.ID}; !slices.Equal(got, want) {
		t.Fatalf("After(0-0) = %q, want %q", got, want)
	}
	if got := ids(after(t, s, soon.ID, 1)); !slices.Equal(got, []string{live2.ID}) {
		t.Fatalf("After(%s, 1) past 150 expired messages = %q, want [%s]", soon.ID, got, live2.ID)
	}
	time.Sleep(time.Until(now.Add(1100 * time.Millisecond)))
	if got, want := ids(after(t, s, "0-0", 1000)), []string{live1.ID, live2.ID}; !slices.Equal(got, want) {
		t.Fatalf("After(0-0) after expiry = %q, want %q", got, want)
	}
	if got := ids(after(t, s, live1.ID, 1)); !slices.Equal(got, []string{live2.ID}) {
		t.Fatalf("After(%s, 1) after expiry = %q, want [%s]", live1.ID, got, live2.ID)
	}
	msgs, _ := afterAll(t, s, "0-0", 1)
	if got, want := ids(msgs), []string{live1.ID, live2.ID}; !slices.Equal(got, want) {
		t.Fatalf("After(0-0) in pages of 1 after expiry = %q, want %q", got, want)
	}
	if id := lastID(t, s); id != live2.ID {
		t.Fatalf("LastID = %s, want %s", id, live2.ID)
	}
}

// testHistoryInvalid: an after that is not an id is refused.
func testHistoryInvalid(t *testing.T, s bridge.Store) {
	put(t, s, bridge.Message{Topic: "a", Payload: []byte("v")})
	for _, from := range []string{"", "0", "5", "-", "5-", "-5", "1-2-3", "a-b", "+1-2", " 1-2", "1-2\n",
		"18446744073709551616-0", "1.5-0", "$", ">", "+", "-0"} {
		msgs, err := s.After(t.Context(), from, 10)
		requireCode(t, err, bridge.ECodeInvalidRequest, fmt.Sprintf("After(%q) = %d messages", from, len(msgs)))
	}
	// The largest id there is: nothing can follow it.
	if msgs := after(t, s, "18446744073709551615-18446744073709551615", 10); len(msgs) != 0 {
		t.Fatalf("After(the largest id) = %q", ids(msgs))
	}
}

// testHistoryGap: with a window of 5 messages, the last 5 stay and
// resuming from before them is a gap, not a silent skip.
func testHistoryGap(t *testing.T, s bridge.Store) {
	var all []string
	for i := range 20 {
		m := bridge.Message{Topic: fmt.Sprintf("g/%d", i%4), Payload: []byte{byte(i)}, Retain: true}
		if i%5 == 3 {
			m.Payload = nil // deletes count as messages of the window
		}
		all = append(all, put(t, s, m).ID)
	}
	// The window holds all[15:]; all[14] is the newest id trimmed.
	if got := ids(after(t, s, all[14], 1000)); !slices.Equal(got, all[15:]) {
		t.Fatalf("After(%s) at the window's edge = %q, want %q", all[14], got, all[15:])
	}
	if got := ids(after(t, s, all[16], 2)); !slices.Equal(got, all[17:19]) {
		t.Fatalf("After(%s, 2) inside the window = %q, want %q", all[16], got, all[17:19])
	}
	requireGap(t, s, "0-0")
	for _, from := range all[:14] {
		requireGap(t, s, from)
	}
	if _, err := s.After(t.Context(), all[0], 1); !errors.Is(err, bridge.ErrGap) {
		t.Fatalf("After(%s, 1) = %v, want a gap whatever the limit", all[0], err)
	}
	if id := lastID(t, s); id != all[19] {
		t.Fatalf("LastID = %s, want %s", id, all[19])
	}
	if msgs := after(t, s, all[19], 10); len(msgs) != 0 {
		t.Fatalf("After(LastID) = %q", ids(msgs))
	}
}

// edgeWindow is the history size testHistoryWindowEdge runs with.
const edgeWindow = 30

// testHistoryWindowEdge: after every Put, the window is exactly the last
// 30 messages, also when the store's internal blocks fill up (payloads of
// a few kilobytes now and then).
func testHistoryWindowEdge(t *testing.T, s bridge.Store) {
	const size, n = edgeWindow, 160
	var all []string
	for k := range n {
		payload := []byte(fmt.Sprintf("%d", k))
		if k%5 == 0 {
			payload = append(payload, make([]byte, 3000)...)
		}
		all = append(all, put(t, s, bridge.Message{Topic: fmt.Sprintf("w/%d", k%5), Payload: payload}).ID)
		from, want := "0-0", all[max(0, k-size+1):]
		if k >= size {
			from = all[k-size] // the newest trimmed
		}
		if got := ids(after(t, s, from, 1)); !slices.Equal(got, want[:1]) {
			t.Fatalf("after Put %d: After(%s, 1) = %q, want %q", k, from, got, want[:1])
		}
		if k > size {
			requireGap(t, s, all[k-size-1])
		}
		if k%10 == 9 {
			if got := ids(after(t, s, from, 1000)); !slices.Equal(got, want) {
				t.Fatalf("after Put %d: After(%s) = %d messages, want %d: %s", k, from, len(got), len(want), firstDiff(got, want))
			}
		}
	}
}

// testHistoryAge: with an age of 1 s, messages older than that leave the
// window when the next message comes, not before.
func testHistoryAge(t *testing.T, s bridge.Store) {
	a := put(t, s, bridge.Message{Topic: "age/a", Payload: []byte("a")})
	a2 := put(t, s, bridge.Message{Topic: "age/a", Payload: []byte("a2")})
	time.Sleep(1500 * time.Millisecond)
	// Nothing trims a history that receives nothing.
	if got, want := ids(after(t, s, "0-0", 10)), []string{a.ID, a2.ID}; !slices.Equal(got, want) {
		t.Fatalf("After(0-0) before the next Put = %q, want %q", got, want)
	}
	b := put(t, s, bridge.Message{Topic: "age/b", Payload: []byte("b")})
	requireGap(t, s, "0-0")
	requireGap(t, s, a.ID)
	if got := ids(after(t, s, a2.ID, 10)); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("After(%s) = %q, want [%s]", a2.ID, got, b.ID)
	}
	// The last values do not age with the history.
	if got := get(t, s, "age/a"); got.ID != a2.ID {
		t.Fatalf("Get(age/a) = %s, want %s", got.ID, a2.ID)
	}
}

// testHistoryConcurrent: readers following the history while writers put
// see every message exactly once, in strictly increasing id order: an id
// never becomes visible before a smaller one.
func testHistoryConcurrent(t *testing.T, s bridge.Store) {
	const (
		writers = 8
		puts    = 40
		readers = 3
	)
	var (
		written   [writers][]string
		seen      [readers][]string
		errs      = make(chan error, writers+readers)
		stopped   atomic.Bool
		writersWG sync.WaitGroup
		readersWG sync.WaitGroup
	)
	for w := range writers {
		writersWG.Go(func() {
			for i := range puts {
				m, err := s.Put(t.Context(), bridge.Message{Topic: fmt.Sprintf("cc/%d", (w+i)%5), Payload: []byte(fmt.Sprintf("%d/%d", w, i)), Retain: true})
				if err != nil {
					errs <- err
					return
				}
				written[w] = append(written[w], m.ID)
			}
		})
	}
	for r := range readers {
		readersWG.Go(func() {
			cursor := "0-0"
			for {
				done := stopped.Load() // read before the page: an empty page after it is final
				msgs, err := s.After(t.Context(), cursor, 1+r*3)
				if err != nil {
					errs <- err
					return
				}
				for _, m := range msgs {
					if c, err := bridge.CompareIDs(m.ID, cursor); err != nil || c <= 0 {
						errs <- fmt.Errorf("reader %d: id %s after %s (%v)", r, m.ID, cursor, err)
						return
					}
					cursor = m.ID
					seen[r] = append(seen[r], m.ID)
				}
				if len(msgs) == 0 && done {
					return
				}
			}
		})
	}
	writersWG.Wait()
	stopped.Store(true)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent call: %v", err)
	}
	var all []string
	for _, w := range written {
		all = append(all, w...)
	}
	slices.SortFunc(all, func(a, b string) int {
		c, _ := bridge.CompareIDs(a, b)
		return c
	})
	if len(all) != writers*puts {
		t.Fatalf("%d puts recorded, want %d", len(all), writers*puts)
	}
	for r, got := range seen {
		if d := firstDiff(got, all); d != "" {
			t.Fatalf("reader %d saw ids that differ from those written: %s", r, d)
		}
	}
	if got := ids(after(t, s, "0-0", 1000)); !slices.Equal(got, all) {
		t.Fatalf("After(0-0) after the writers: %s", firstDiff(got, all))
	}
	if id := lastID(t, s); id != all[len(all)-1] {
		t.Fatalf("LastID = %s, want %s", id, all[len(all)-1])
	}
}
