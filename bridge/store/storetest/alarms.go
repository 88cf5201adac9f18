package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// RunAlarms runs the conformance suite of bridge.AlarmStore. newStore
// returns a new, empty store for one subtest and arranges its cleanup.
func RunAlarms(t *testing.T, newStore func(t *testing.T) bridge.AlarmStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, bridge.AlarmStore)
	}{
		{"RoundTrip", testAlarmRoundTrip},
		{"ByTopic", testAlarmByTopic},
		{"Close", testAlarmClose},
		{"AppliedOnce", testAlarmAppliedOnce},
		{"SetApplied", testAlarmSetApplied},
		{"FnError", testAlarmFnError},
		{"OpenOrder", testAlarmOpenOrder},
		{"NotFound", testAlarmNotFound},
		{"Invalid", testAlarmInvalid},
		{"ConcurrentUpdates", testAlarmConcurrentUpdates},
		{"ExactlyOneAck", testAlarmExactlyOneAck},
		{"Tail", testAlarmTail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// alarmMS is a fixed time base for ids and times.
const alarmMS = 1_750_000_000_000

func at(i int) time.Time { return time.UnixMilli(alarmMS + int64(i)).UTC() }

// newAlarm is an open, unacknowledged alarm raised by message id.
func newAlarm(id, name, topic string) *bridge.Alarm {
	a := &bridge.Alarm{ID: id, Name: name, Topic: topic, Active: true, Count: 1, RaisedAt: at(1),
		Message: bridge.Message{ID: id, Topic: topic, Payload: []byte("hot \x00\xff"), QoS: 1, Retain: true, ReceivedAt: at(1),
			Properties: bridge.Properties{ContentType: "text/plain", UserProperties: []bridge.UserProperty{{Key: "k", Value: "v"}}}},
		History: []bridge.AlarmTransition{{Kind: bridge.AlarmRaised, At: at(1), MessageID: id}}}
	return a
}

// raise opens (or updates) the alarm of topic with the message id.
func raise(t testing.TB, s bridge.AlarmStore, id, topic string) bridge.Alarm {
	t.Helper()
	a, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{Topic: topic, Applied: id}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		if cur == nil {
			return newAlarm(id, "n", topic), nil
		}
		cur.Count++
		cur.History = append(cur.History, bridge.AlarmTransition{Kind: bridge.AlarmUpdated, At: at(2), MessageID: id})
		return cur, nil
	})
	if err != nil || !wrote {
		t.Fatalf("UpdateAlarm(%s, %s) = %v, %v", topic, id, wrote, err)
	}
	return a
}

func getAlarm(t testing.TB, s bridge.AlarmStore, id string) bridge.Alarm {
	t.Helper()
	a, err := s.Alarm(t.Context(), id)
	if err != nil {
		t.Fatalf("Alarm(%s): %v", id, err)
	}
	return a
}

func openIDs(t testing.TB, s bridge.AlarmStore, before string, limit int) []string {
	t.Helper()
	as, err := s.OpenAlarms(t.Context(), before, limit)
	if err != nil {
		t.Fatalf("OpenAlarms(%q, %d): %v", before, limit, err)
	}
	ids := []string{}
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	return ids
}

// sameAlarm compares two alarms, times by instant.
func sameAlarm(t testing.TB, got, want bridge.Alarm) {
	t.Helper()
	norm := func(a bridge.Alarm) bridge.Alarm {
		a = a.Clone()
		for _, p := range []*time.Time{&a.RaisedAt, &a.ClearedAt, &a.AckedAt, &a.EscalatedAt, &a.Message.ReceivedAt} {
			*p = p.UTC()
		}
		for i := range a.History {
			a.History[i].At = a.History[i].At.UTC()
		}
		return a
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("alarm =\n%+v\nwant\n%+v", g, w)
	}
}

func testAlarmRoundTrip(t *testing.T, s bridge.AlarmStore) {
	want := *newAlarm("1750000000000-0", "plant", "plant/1/alarm/temp")
	want.Acknowledged, want.AckedAt, want.AckedBy, want.Comment = true, at(5), "key:alice", "on it ✓"
	want.EscalatedAt = at(6)
	want.History = append(want.History,
		bridge.AlarmTransition{Kind: bridge.AlarmAcknowledged, At: at(5), By: "key:alice", Comment: "on it ✓"},
		bridge.AlarmTransition{Kind: bridge.AlarmEscalated, At: at(6), Webhook: "oncall"})
	got, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{Topic: want.Topic}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		if cur != nil {
			t.Errorf("cur = %+v for a new topic, want nil", cur)
		}
		w := want.Clone()
		return &w, nil
	})
	if err != nil || !wrote {
		t.Fatalf("UpdateAlarm = %v, %v", wrote, err)
	}
	sameAlarm(t, got, want)
	sameAlarm(t, getAlarm(t, s, want.ID), want)
	as, err := s.OpenAlarms(t.Context(), "", 10)
	if err != nil || len(as) != 1 {
		t.Fatalf("OpenAlarms = %v, %v", as, err)
	}
	sameAlarm(t, as[0], want)
}

func testAlarmByTopic(t *testing.T, s bridge.AlarmStore) {
	a := raise(t, s, "1750000000000-0", "a/1")
	b := raise(t, s, "1750000000000-1", "a/2")
	u := raise(t, s, "1750000000001-0", "a/1")
	if u.ID != a.ID || u.Count != 2 || len(u.History) != 2 {
		t.Fatalf("update of a/1 = %+v, want alarm %s with count 2", u, a.ID)
	}
	if got := getAlarm(t, s, b.ID); got.Count != 1 || got.Topic != "a/2" {
		t.Fatalf("a/2 = %+v", got)
	}
	// By id, the same alarm.
	_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{ID: a.ID}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		if cur == nil || cur.Count != 2 {
			t.Errorf("by id: cur = %+v", cur)
			return nil, nil
		}
		cur.Acknowledged = true
		return cur, nil
	})
	if err != nil || !wrote {
		t.Fatal(wrote, err)
	}
	if got := getAlarm(t, s, a.ID); !got.Acknowledged || !got.Open() {
		t.Fatalf("acknowledged active alarm = %+v: want open and acknowledged", got)
	}
}

func testAlarmClose(t *testing.T, s bridge.AlarmStore) {
	a := raise(t, s, "1750000000000-0", "a/1")
	raise(t, s, "1750000000000-1", "a/2")
	closed, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{ID: a.ID}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		cur.Active, cur.Acknowledged, cur.ClearedAt = false, true, at(9)
		return cur, nil
	})
	if err != nil || !wrote || closed.Open() {
		t.Fatalf("closing = %+v, %v, %v", closed, wrote, err)
	}
	if ids := openIDs(t, s, "", 10); fmt.Sprint(ids) != "[1750000000000-1]" {
		t.Fatalf("open after closing = %v", ids)
	}
	// Still readable with its history.
	if got := getAlarm(t, s, a.ID); got.Open() || len(got.History) != 1 || !got.ClearedAt.Equal(at(9)) {
		t.Fatalf("closed alarm = %+v", got)
	}
	// The topic has no open alarm any more: a new one opens.
	n := raise(t, s, "1750000000005-0", "a/1")
	if n.ID != "1750000000005-0" || n.Count != 1 {
		t.Fatalf("raise after close = %+v, want a new alarm", n)
	}
	if ids := openIDs(t, s, "", 10); fmt.Sprint(ids) != "[1750000000005-0 1750000000000-1]" {
		t.Fatalf("open = %v", ids)
	}
	if got := getAlarm(t, s, a.ID); got.Count != 1 {
		t.Fatalf("the closed alarm changed: %+v", got)
	}
}

func testAlarmAppliedOnce(t *testing.T, s bridge.AlarmStore) {
	if got, err := s.AlarmsApplied(t.Context()); err != nil || got != "" {
		t.Fatalf("AlarmsApplied of an empty store = %q, %v", got, err)
	}
	raise(t, s, "1750000000000-10", "a")
	for _, id := range []string{"1750000000000-10", "1750000000000-9", "1749999999999-99"} {
		called := false
		_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{Topic: "a", Applied: id}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
			called = true
			return cur, nil
		})
		if err != nil || wrote || called {
			t.Fatalf("applying %s after 1750000000000-10: wrote %v, fn called %v, err %v; want neither", id, wrote, called, err)
		}
	}
	if got, _ := s.AlarmsApplied(t.Context()); got != "1750000000000-10" {
		t.Fatalf("AlarmsApplied = %q", got)
	}
	// fn returning nil still records the message as applied.
	_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{Topic: "b", Applied: "1750000000001-0"}, func(*bridge.Alarm) (*bridge.Alarm, error) { return nil, nil })
	if err != nil || wrote {
		t.Fatal(wrote, err)
	}
	if got, _ := s.AlarmsApplied(t.Context()); got != "1750000000001-0" {
		t.Fatalf("AlarmsApplied after a no-op = %q", got)
	}
	if ids := openIDs(t, s, "", 10); fmt.Sprint(ids) != "[1750000000000-10]" {
		t.Fatalf("open = %v", ids)
	}
	if a := getAlarm(t, s, "1750000000000-10"); a.Count != 1 {
		t.Fatalf("count = %d, want 1: a message was applied twice", a.Count)
	}
}

func testAlarmSetApplied(t *testing.T, s bridge.AlarmStore) {
	ctx := t.Context()
	for _, step := range []struct{ set, want string }{
		{"1750000000000-9", "1750000000000-9"},
		{"1750000000000-10", "1750000000000-10"}, // numerically, not as text
		{"1750000000000-2", "1750000000000-10"},  // never back
		{"1750000000001-0", "1750000000001-0"},
	} {
		if err := s.SetAlarmsApplied(ctx, step.set); err != nil {
			t.Fatal(err)
		}
		if got, err := s.AlarmsApplied(ctx); err != nil || got != step.want {
			t.Fatalf("after SetAlarmsApplied(%s): %q, %v; want %s", step.set, got, err, step.want)
		}
	}
}

func testAlarmFnError(t *testing.T, s bridge.AlarmStore) {
	a := raise(t, s, "1750000000000-0", "a")
	boom := errors.New("boom")
	_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{Topic: "a", Applied: "1750000000001-0"}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		cur.Count = 99
		return cur, boom
	})
	if !errors.Is(err, boom) || wrote {
		t.Fatalf("UpdateAlarm = %v, %v; want boom and nothing written", wrote, err)
	}
	if got := getAlarm(t, s, a.ID); got.Count != 1 {
		t.Fatalf("count = %d after a failed update", got.Count)
	}
	if got, _ := s.AlarmsApplied(t.Context()); got != "1750000000000-0" {
		t.Fatalf("a failed update moved the applied position to %q", got)
	}
}

func testAlarmOpenOrder(t *testing.T, s bridge.AlarmStore) {
	// Ids in the same millisecond with sequences 9 and 10 (text order
	// would swap them), and across milliseconds.
	ids := []string{"1750000000000-2", "1750000000000-9", "1750000000000-10", "1750000000001-0", "1750000000010-0"}
	for i, id := range ids {
		raise(t, s, id, fmt.Sprintf("t/%d", i))
	}
	want := "[1750000000010-0 1750000000001-0 1750000000000-10 1750000000000-9 1750000000000-2]"
	if got := openIDs(t, s, "", 10); fmt.Sprint(got) != want {
		t.Fatalf("open = %v, want %s", got, want)
	}
	var pages []string
	before := ""
	for range 5 {
		page := openIDs(t, s, before, 2)
		pages = append(pages, page...)
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1]
	}
	if fmt.Sprint(pages) != want {
		t.Fatalf("paged = %v, want %s", pages, want)
	}
	if got := openIDs(t, s, "1750000000000-10", 10); fmt.Sprint(got) != "[1750000000000-9 1750000000000-2]" {
		t.Fatalf("before 1750000000000-10 = %v", got)
	}
}

func testAlarmNotFound(t *testing.T, s bridge.AlarmStore) {
	_, err := s.Alarm(t.Context(), "1750000000000-0")
	if bridge.ErrorCode(err) != bridge.ECodeNotFound {
		t.Fatalf("Alarm of an unknown id: %v, want not_found", err)
	}
	called := false
	_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{ID: "1750000000000-0"}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
		called = true
		if cur != nil {
			t.Errorf("cur = %+v for an unknown id", cur)
		}
		return nil, nil
	})
	if err != nil || wrote || !called {
		t.Fatalf("UpdateAlarm of an unknown id: wrote %v, err %v, called %v", wrote, err, called)
	}
	if ids := openIDs(t, s, "", 10); len(ids) != 0 {
		t.Fatalf("open = %v", ids)
	}
}

func testAlarmInvalid(t *testing.T, s bridge.AlarmStore) {
	ctx := t.Context()
	keep := func(cur *bridge.Alarm) (*bridge.Alarm, error) { return cur, nil }
	for _, k := range []bridge.AlarmKey{{}, {ID: "x"}, {Topic: "a", Applied: "x"}, {ID: "1-0", Topic: "a"}} {
		if _, _, err := s.UpdateAlarm(ctx, k, keep); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
			t.Errorf("UpdateAlarm(%+v) = %v, want invalid_request", k, err)
		}
	}
	for _, n := range []int{0, 1001} {
		if _, err := s.OpenAlarms(ctx, "", n); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
			t.Errorf("OpenAlarms limit %d = %v, want invalid_request", n, err)
		}
	}
	if _, err := s.OpenAlarms(ctx, "x", 1); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
		t.Errorf("OpenAlarms before x = %v, want invalid_request", err)
	}
	if err := s.SetAlarmsApplied(ctx, "x"); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
		t.Errorf("SetAlarmsApplied(x) = %v, want invalid_request", err)
	}
}

// testAlarmConcurrentUpdates: concurrent read-modify-writes of one alarm
// lose none.
func testAlarmConcurrentUpdates(t *testing.T, s bridge.AlarmStore) {
	a := raise(t, s, "1750000000000-0", "a")
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, _, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{ID: a.ID}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
				cur.Count++
				return cur, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := getAlarm(t, s, a.ID); got.Count != n+1 {
		t.Fatalf("count = %d, want %d", got.Count, n+1)
	}
}

// testAlarmExactlyOneAck: of concurrent "acknowledge unless acknowledged"
// updates, one writes.
func testAlarmExactlyOneAck(t *testing.T, s bridge.AlarmStore) {
	a := raise(t, s, "1750000000000-0", "a")
	errAcked := errors.New("already")
	var wins, refused atomic.Int32
	var wg sync.WaitGroup
	gun := make(chan struct{})
	const n = 20
	for i := range n {
		wg.Go(func() {
			<-gun
			_, wrote, err := s.UpdateAlarm(t.Context(), bridge.AlarmKey{ID: a.ID}, func(cur *bridge.Alarm) (*bridge.Alarm, error) {
				if cur.Acknowledged {
					return nil, errAcked
				}
				cur.Acknowledged, cur.AckedBy = true, fmt.Sprint(i)
				return cur, nil
			})
			switch {
			case err == nil && wrote:
				wins.Add(1)
			case errors.Is(err, errAcked):
				refused.Add(1)
			default:
				t.Errorf("UpdateAlarm = %v, %v", wrote, err)
			}
		})
	}
	close(gun)
	wg.Wait()
	if wins.Load() != 1 || refused.Load() != n-1 {
		t.Fatalf("%d acknowledgments won, %d were refused; want 1 and %d", wins.Load(), refused.Load(), n-1)
	}
}

// testAlarmTail: a shared store's tail gets every alarm written after it
// started, in order, as written.
func testAlarmTail(t *testing.T, s bridge.AlarmStore) {
	tailer, ok := s.(bridge.AlarmTailer)
	if !ok {
		t.Skip("not an AlarmTailer")
	}
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan bridge.Alarm, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tailer.TailAlarms(ctx, func(as []bridge.Alarm) {
			for _, a := range as {
				got <- a
			}
		})
	}()
	defer func() { cancel(); <-done }()
	// Until the tail has found the end of the stream, writes may come
	// before it: write until one arrives.
	ms := int64(alarmMS)
	for started := false; !started; {
		ms++
		raise(t, s, fmt.Sprintf("%d-0", ms), "warm")
		select {
		case <-got:
			started = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond)
	for len(got) > 0 {
		<-got
	}
	var want []string
	for i, topic := range []string{"a", "b", "a"} {
		id := fmt.Sprintf("%d-%d", ms+1, i)
		raise(t, s, id, topic)
		want = append(want, topic)
	}
	var topics []string
	for range want {
		select {
		case a := <-got:
			topics = append(topics, a.Topic)
			if a.Topic == "a" && len(topics) == 3 && a.Count != 2 {
				t.Errorf("the tail gave %+v, want the update (count 2)", a)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the tail gave %v, want %v", topics, want)
		}
	}
	if fmt.Sprint(topics) != fmt.Sprint(want) {
		t.Fatalf("the tail gave %v, want %v", topics, want)
	}
}
