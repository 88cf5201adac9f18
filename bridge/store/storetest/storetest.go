// Package storetest is the conformance suite of bridge.Store: every
// implementation runs Run, so the memory and Redis stores cannot drift
// apart. It imports no implementation.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// Window is the history window a subtest asks of its store. A zero field
// asks for the store's default (10000 messages, 1 h).
type Window struct {
	// Size is the most messages the history keeps.
	Size int
	// Age is how long the history keeps a message, from its id's
	// millisecond.
	Age time.Duration
}

// Run runs the conformance suite. newStore returns a new, empty store with
// the history window w for one subtest and arranges its cleanup with
// t.Cleanup; the suite closes the store itself only where it tests Close.
//
// The suite expects the window to be exact and enforced by Put (see
// bridge.Store). Two subtests wait about 1.1 s for a message to expire, one
// 1.5 s for messages to age out of the history.
func Run(t *testing.T, newStore func(t *testing.T, w Window) bridge.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, bridge.Store)
		w    Window
	}{
		{"RoundTrip", testRoundTrip, Window{}},
		{"RoundTripMinimal", testRoundTripMinimal, Window{}},
		{"InputNotAliased", testInputNotAliased, Window{}},
		{"InvalidPut", testInvalidPut, Window{}},
		{"IDsIncrease", testIDsIncrease, Window{}},
		{"RetainedEmptyDeletes", testRetainedEmptyDeletes, Window{}},
		{"NonRetainedEmptyIsStored", testNonRetainedEmptyIsStored, Window{}},
		{"Delete", testDelete, Window{}},
		{"GetMissing", testGetMissing, Window{}},
		{"Expiry", testExpiry, Window{}},
		{"ListFilters", testListFilters, Window{}},
		{"ListInvalid", testListInvalid, Window{}},
		{"Pagination", testPagination, Window{}},
		{"SpecialTopics", testSpecialTopics, Window{}},
		{"ConcurrentPuts", testConcurrentPuts, Window{}},
		{"HistoryRoundTrip", testHistoryRoundTrip, Window{}},
		{"HistoryPages", testHistoryPages, Window{}},
		{"HistoryExpired", testHistoryExpired, Window{}},
		{"HistoryInvalid", testHistoryInvalid, Window{}},
		{"HistoryGap", testHistoryGap, Window{Size: 5}},
		{"HistoryWindowEdge", testHistoryWindowEdge, Window{Size: edgeWindow}},
		{"HistoryAge", testHistoryAge, Window{Age: time.Second}},
		{"HistoryConcurrent", testHistoryConcurrent, Window{}},
		{"Close", testClose, Window{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t, tt.w))
		})
	}
}

func ptr[T any](v T) *T { return &v }

// allBytes returns the 256 byte values, in order or reversed.
func allBytes(reverse bool) []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
		if reverse {
			b[i] = byte(255 - i)
		}
	}
	return b
}

func put(t testing.TB, s bridge.Store, msg bridge.Message) bridge.Message {
	t.Helper()
	got, err := s.Put(t.Context(), msg)
	if err != nil {
		t.Fatalf("Put(%q): %v", msg.Topic, err)
	}
	return got
}

func get(t testing.TB, s bridge.Store, topic string) bridge.Message {
	t.Helper()
	got, err := s.Get(t.Context(), topic)
	if err != nil {
		t.Fatalf("Get(%q): %v", topic, err)
	}
	return got
}

// requireNotFound fails unless Get(topic) reports bridge.ErrNotFound.
func requireNotFound(t testing.TB, s bridge.Store, topic string) {
	t.Helper()
	m, err := s.Get(t.Context(), topic)
	if err == nil {
		t.Fatalf("Get(%q) = message %s %q, want not found", topic, m.ID, m.Payload)
	}
	var e *bridge.Error
	if !errors.Is(err, bridge.ErrNotFound) || !errors.As(err, &e) || e.Code != bridge.ECodeNotFound {
		t.Fatalf("Get(%q) error = %v, want bridge.ErrNotFound", topic, err)
	}
}

// requireCode fails unless err is an *bridge.Error with the code.
func requireCode(t testing.TB, err error, code, what string) {
	t.Helper()
	var e *bridge.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("%s: error = %v, want an *bridge.Error with code %s", what, err, code)
	}
}

// listAll pages through List and returns every message and the number of
// calls. It checks the page size limit on every page.
func listAll(t testing.TB, s bridge.Store, filter string, limit int) ([]bridge.Message, int) {
	t.Helper()
	var all []bridge.Message
	after := ""
	for calls := 1; ; calls++ {
		if calls > 10000 {
			t.Fatalf("List(%q) did not end after %d calls", filter, calls)
		}
		msgs, next, err := s.List(t.Context(), filter, after, limit)
		if err != nil {
			t.Fatalf("List(%q, after %q, %d): %v", filter, after, limit, err)
		}
		if len(msgs) > limit {
			t.Fatalf("List(%q, limit %d) returned %d messages", filter, limit, len(msgs))
		}
		all = append(all, msgs...)
		if next == "" {
			return all, calls
		}
		if next <= after {
			t.Fatalf("List(%q): cursor went from %q to %q, not forward", filter, after, next)
		}
		if len(msgs) > 0 && msgs[len(msgs)-1].Topic > next {
			t.Fatalf("List(%q): cursor %q is before the last topic returned %q", filter, next, msgs[len(msgs)-1].Topic)
		}
		after = next
	}
}

// firstDiff describes where got first differs from want (lists of topics
// or ids), or is "".
func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%d entries, want %d: %q is missing", len(got), len(want), want[i])
		case i >= len(want):
			return fmt.Sprintf("%d entries, want %d: %q is extra", len(got), len(want), got[i])
		case got[i] != want[i]:
			return fmt.Sprintf("entry %d is %q, want %q", i, got[i], want[i])
		}
	}
	return ""
}

func topics(msgs []bridge.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Topic
	}
	return out
}

// diff lists how got differs from want; it ignores want.ID when empty and
// compares ReceivedAt as an instant.
func diff(got, want bridge.Message) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if want.ID != "" && got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Topic != want.Topic {
		add("Topic", got.Topic, want.Topic)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		add("Payload", got.Payload, want.Payload)
	}
	if got.QoS != want.QoS {
		add("QoS", got.QoS, want.QoS)
	}
	if got.Retain != want.Retain {
		add("Retain", got.Retain, want.Retain)
	}
	if !got.ReceivedAt.Equal(want.ReceivedAt) {
		add("ReceivedAt", got.ReceivedAt, want.ReceivedAt)
	}
	gp, wp := got.Properties, want.Properties
	if gp.ContentType != wp.ContentType {
		add("ContentType", gp.ContentType, wp.ContentType)
	}
	if !equalPtr(gp.PayloadFormat, wp.PayloadFormat) {
		add("PayloadFormat", fmtPtr(gp.PayloadFormat), fmtPtr(wp.PayloadFormat))
	}
	if !equalPtr(gp.MessageExpiry, wp.MessageExpiry) {
		add("MessageExpiry", fmtPtr(gp.MessageExpiry), fmtPtr(wp.MessageExpiry))
	}
	if gp.ResponseTopic != wp.ResponseTopic {
		add("ResponseTopic", gp.ResponseTopic, wp.ResponseTopic)
	}
	if !bytes.Equal(gp.CorrelationData, wp.CorrelationData) {
		add("CorrelationData", gp.CorrelationData, wp.CorrelationData)
	}
	if !slices.Equal(gp.UserProperties, wp.UserProperties) {
		add("UserProperties", gp.UserProperties, wp.UserProperties)
	}
	return d
}

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func requireEqual(t testing.TB, what string, got, want bridge.Message) {
	t.Helper()
	if d := diff(got, want); len(d) > 0 {
		t.Fatalf("%s:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}

// ms is t at millisecond precision, as stores keep it.
func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()) }

var idPattern = regexp.MustCompile(`^([0-9]+)-([0-9]+)$`)

type id struct{ ms, seq uint64 }

func parseID(t testing.TB, s string) id {
	t.Helper()
	m := idPattern.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("id %q is not <ms>-<seq>", s)
	}
	a, err1 := strconv.ParseUint(m[1], 10, 64)
	b, err2 := strconv.ParseUint(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("id %q does not fit uint64", s)
	}
	return id{a, b}
}

func (a id) less(b id) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

func testRoundTrip(t *testing.T, s bridge.Store) {
	// Nanoseconds and a zone: the store keeps the instant to the millisecond.
	received := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	for _, pf := range []byte{0, 1} {
		in := bridge.Message{
			ID:      "ignored-by-put",
			Topic:   fmt.Sprintf("rt/full/%d", pf),
			Payload: allBytes(false),
			QoS:     2,
			Retain:  true,
			Properties: bridge.Properties{
				ContentType:     "application/octet-stream; x=\"é\"",
				PayloadFormat:   ptr(pf),
				MessageExpiry:   ptr(uint32(86400 * 365 * 100)), // far beyond the test
				ResponseTopic:   "reply/to/me",
				CorrelationData: allBytes(true),
				UserProperties: []bridge.UserProperty{
					{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"},
					{Key: "empty", Value: ""}, {Key: "", Value: "no name"}, {Key: "ünï", Value: "<&>\"\\"},
				},
			},
			ReceivedAt: received,
		}
		want := in
		want.ID = ""
		want.ReceivedAt = ms(received)
		got := put(t, s, in)
		parseID(t, got.ID)
		requireEqual(t, "Put result", got, want)
		want.ID = got.ID
		requireEqual(t, "Get", get(t, s, in.Topic), want)
		msgs, _, err := s.List(t.Context(), in.Topic, "", 10)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("List(%q) = %d messages, %v; want 1", in.Topic, len(msgs), err)
		}
		requireEqual(t, "List", msgs[0], want)
	}
}

func testRoundTripMinimal(t *testing.T, s bridge.Store) {
	before := ms(time.Now())
	got := put(t, s, bridge.Message{Topic: "rt/min", Payload: []byte("x")})
	after := time.Now()
	if got.ReceivedAt.Before(before) || got.ReceivedAt.After(after) {
		t.Fatalf("ReceivedAt = %v, want now (between %v and %v)", got.ReceivedAt, before, after)
	}
	if !got.ReceivedAt.Equal(ms(got.ReceivedAt)) {
		t.Fatalf("ReceivedAt = %v, want millisecond precision", got.ReceivedAt)
	}
	want := bridge.Message{ID: got.ID, Topic: "rt/min", Payload: []byte("x"), ReceivedAt: got.ReceivedAt}
	requireEqual(t, "Get", get(t, s, "rt/min"), want)
	if p := get(t, s, "rt/min").Properties; p.PayloadFormat != nil || p.MessageExpiry != nil {
		t.Fatalf("absent properties came back as %v, %v", fmtPtr(p.PayloadFormat), fmtPtr(p.MessageExpiry))
	}
}

// testInputNotAliased: the store keeps its own copy; changing the caller's
// or a result's slices does not change the stored value.
func testInputNotAliased(t *testing.T, s bridge.Store) {
	in := bridge.Message{
		Topic:   "alias",
		Payload: []byte("abc"),
		Properties: bridge.Properties{
			PayloadFormat:   ptr(byte(1)),
			CorrelationData: []byte("cd"),
			UserProperties:  []bridge.UserProperty{{Key: "k", Value: "v"}},
		},
	}
	put(t, s, in)
	in.Payload[0] = 'X'
	*in.Properties.PayloadFormat = 0
	in.Properties.CorrelationData[0] = 'X'
	in.Properties.UserProperties[0].Key = "X"
	got := get(t, s, "alias")
	got.Payload[1] = 'Y'
	got.Properties.CorrelationData[1] = 'Y'
	got.Properties.UserProperties[0].Value = "Y"
	*got.Properties.PayloadFormat = 7
	again := get(t, s, "alias")
	want := bridge.Message{
		ID: again.ID, Topic: "alias", Payload: []byte("abc"), ReceivedAt: again.ReceivedAt,
		Properties: bridge.Properties{
			PayloadFormat:   ptr(byte(1)),
			CorrelationData: []byte("cd"),
			UserProperties:  []bridge.UserProperty{{Key: "k", Value: "v"}},
		},
	}
	requireEqual(t, "Get after changing the input and a result", again, want)
}

func testInvalidPut(t *testing.T, s bridge.Store) {
	for _, tc := range []struct {
		msg  bridge.Message
		code string
	}{
		{bridge.Message{Topic: ""}, bridge.ECodeInvalidTopic},
		{bridge.Message{Topic: "a/+"}, bridge.ECodeInvalidTopic},
		{bridge.Message{Topic: "a/#"}, bridge.ECodeInvalidTopic},
		{bridge.Message{Topic: "a\x00b"}, bridge.ECodeInvalidTopic},
		{bridge.Message{Topic: "a\xffb"}, bridge.ECodeInvalidTopic},
		{bridge.Message{Topic: "q", QoS: 3}, bridge.ECodeInvalidRequest},
		{bridge.Message{Topic: "q", Properties: bridge.Properties{ResponseTopic: "\xff"}}, bridge.ECodeInvalidRequest},
		{bridge.Message{Topic: "q", Properties: bridge.Properties{UserProperties: []bridge.UserProperty{{Key: "\x00"}}}}, bridge.ECodeInvalidRequest},
	} {
		_, err := s.Put(t.Context(), tc.msg)
		requireCode(t, err, tc.code, fmt.Sprintf("Put(%+q)", tc.msg.Topic))
	}
	requireNotFound(t, s, "q")
}

func testIDsIncrease(t *testing.T, s bridge.Store) {
	const n = 300
	start := time.Now()
	var last id
	lastPerTopic := map[string]string{}
	for i := range n {
		topic := fmt.Sprintf("ids/%d", i%7)
		m := put(t, s, bridge.Message{Topic: topic, Payload: []byte{byte(i)}, Retain: i%2 == 0})
		cur := parseID(t, m.ID)
		if i > 0 && !last.less(cur) {
			t.Fatalf("Put %d: id %s does not follow %d-%d", i, m.ID, last.ms, last.seq)
		}
		last = cur
		lastPerTopic[topic] = m.ID
	}
	// The millisecond part is the Unix time (allowing for clock skew).
	if d := time.UnixMilli(int64(last.ms)).Sub(start); d < -5*time.Minute || d > 5*time.Minute {
		t.Fatalf("last id %d-%d is %v away from now; want Unix milliseconds", last.ms, last.seq, d)
	}
	for topic, id := range lastPerTopic {
		if got := get(t, s, topic); got.ID != id {
			t.Fatalf("Get(%q).ID = %s, want the last Put's %s", topic, got.ID, id)
		}
	}
}

func testRetainedEmptyDeletes(t *testing.T, s bridge.Store) {
	put(t, s, bridge.Message{Topic: "del/a", Payload: []byte("v"), Retain: true})
	put(t, s, bridge.Message{Topic: "del/b", Payload: []byte("v"), Retain: true})
	d := put(t, s, bridge.Message{Topic: "del/a", Retain: true})
	parseID(t, d.ID)
	requireNotFound(t, s, "del/a")
	msgs, _ := listAll(t, s, "del/#", 10)
	if got := topics(msgs); !slices.Equal(got, []string{"del/b"}) {
		t.Fatalf("List after delete = %q, want [del/b]", got)
	}
	// Deleting what is not there is fine too.
	put(t, s, bridge.Message{Topic: "del/none", Payload: []byte{}, Retain: true})
	requireNotFound(t, s, "del/none")
}

func testNonRetainedEmptyIsStored(t *testing.T, s bridge.Store) {
	put(t, s, bridge.Message{Topic: "empty", Payload: []byte("v"), Retain: true})
	m := put(t, s, bridge.Message{Topic: "empty", QoS: 1})
	got := get(t, s, "empty")
	requireEqual(t, "Get", got, bridge.Message{ID: m.ID, Topic: "empty", QoS: 1, ReceivedAt: m.ReceivedAt})
	msgs, _ := listAll(t, s, "#", 10)
	if len(msgs) != 1 || msgs[0].ID != m.ID {
		t.Fatalf("List = %q, want the empty message", topics(msgs))
	}
}

func testDelete(t *testing.T, s bridge.Store) {
	put(t, s, bridge.Message{Topic: "d/1", Payload: []byte("v")})
	put(t, s, bridge.Message{Topic: "d/2", Payload: []byte("v")})
	for range 2 { // twice: deleting nothing is not an error
		if err := s.Delete(t.Context(), "d/1"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := s.Delete(t.Context(), "never/was"); err != nil {
		t.Fatalf("Delete of a missing topic: %v", err)
	}
	requireNotFound(t, s, "d/1")
	get(t, s, "d/2")
	msgs, _ := listAll(t, s, "#", 10)
	if got := topics(msgs); !slices.Equal(got, []string{"d/2"}) {
		t.Fatalf("List after Delete = %q, want [d/2]", got)
	}
	// A new Put after Delete is visible again.
	put(t, s, bridge.Message{Topic: "d/1", Payload: []byte("again")})
	if got := get(t, s, "d/1"); string(got.Payload) != "again" {
		t.Fatalf("Get after re-Put = %q", got.Payload)
	}
}

func testGetMissing(t *testing.T, s bridge.Store) {
	requireNotFound(t, s, "no/such/topic")
	put(t, s, bridge.Message{Topic: "no/such", Payload: []byte("v")})
	requireNotFound(t, s, "no/such/topic")
	requireNotFound(t, s, "no/such/")
	requireNotFound(t, s, "no/suc")
}

func testExpiry(t *testing.T, s bridge.Store) {
	now := time.Now()
	put(t, s, bridge.Message{Topic: "exp/short", Payload: []byte("v"), ReceivedAt: now,
		Properties: bridge.Properties{MessageExpiry: ptr(uint32(1))}})
	put(t, s, bridge.Message{Topic: "exp/long", Payload: []byte("v"), ReceivedAt: now,
		Properties: bridge.Properties{MessageExpiry: ptr(uint32(3600))}})
	put(t, s, bridge.Message{Topic: "exp/never", Payload: []byte("v")})
	// A value replaced by a message that expired before it arrived is gone.
	put(t, s, bridge.Message{Topic: "exp/stale", Payload: []byte("v")})
	put(t, s, bridge.Message{Topic: "exp/stale", Payload: []byte("old"), ReceivedAt: now.Add(-2 * time.Second),
		Properties: bridge.Properties{MessageExpiry: ptr(uint32(1))}})
	requireNotFound(t, s, "exp/stale")

	if got := get(t, s, "exp/short"); *got.Properties.MessageExpiry != 1 {
		t.Fatalf("MessageExpiry = %d, want 1 (the interval as published)", *got.Properties.MessageExpiry)
	}
	msgs, _ := listAll(t, s, "exp/#", 10)
	if got := topics(msgs); !slices.Equal(got, []string{"exp/long", "exp/never", "exp/short"}) {
		t.Fatalf("List before expiry = %q", got)
	}

	time.Sleep(time.Until(now.Add(1100 * time.Millisecond)))
	requireNotFound(t, s, "exp/short")
	get(t, s, "exp/long")
	msgs, _ = listAll(t, s, "exp/#", 10)
	if got := topics(msgs); !slices.Equal(got, []string{"exp/long", "exp/never"}) {
		t.Fatalf("List after expiry = %q", got)
	}
	msgs, _ = listAll(t, s, "exp/short", 10)
	if len(msgs) != 0 {
		t.Fatalf("List(exp/short) after expiry = %q", topics(msgs))
	}
	// A new value on the expired topic is visible again.
	put(t, s, bridge.Message{Topic: "exp/short", Payload: []byte("new")})
	get(t, s, "exp/short")
}

func testListFilters(t *testing.T, s bridge.Store) {
	all := []string{
		"a", "a/b", "a/b/c", "a/b/c/d", "a/b/d", "a/x/c", "a//c", "a/c", "ab/c",
		"b", "/a", "$SYS/broker/uptime", "$SYS/x", "$other", "$share/g/t",
	}
	for _, topic := range all {
		put(t, s, bridge.Message{Topic: topic, Payload: []byte(topic)})
	}
	nonDollar := []string{"/a", "a", "a//c", "a/b", "a/b/c", "a/b/c/d", "a/b/d", "a/c", "a/x/c", "ab/c", "b"}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"#", nonDollar},
		{"+/#", nonDollar},
		{"+", []string{"a", "b"}},
		{"+/+", []string{"/a", "a/b", "a/c", "ab/c"}},
		{"a/+/c", []string{"a//c", "a/b/c", "a/x/c"}},
		{"$share/grp/a/+/c", []string{"a//c", "a/b/c", "a/x/c"}},
		{"a/b/#", []string{"a/b", "a/b/c", "a/b/c/d", "a/b/d"}},
		{"a/b/+", []string{"a/b/c", "a/b/d"}},
		{"a/b/c", []string{"a/b/c"}},
		{"a/#", []string{"a", "a//c", "a/b", "a/b/c", "a/b/c/d", "a/b/d", "a/c", "a/x/c"}},
		{"/#", []string{"/a"}},
		{"$SYS/#", []string{"$SYS/broker/uptime", "$SYS/x"}},
		{"$SYS/+/uptime", []string{"$SYS/broker/uptime"}},
		{"$other", []string{"$other"}},
		{"+/broker/uptime", nil},
		{"nothing/#", nil},
	} {
		for _, limit := range []int{1, 2, 1000} {
			msgs, _ := listAll(t, s, tc.filter, limit)
			if got := topics(msgs); !slices.Equal(got, tc.want) {
				t.Errorf("List(%q, limit %d) = %q, want %q", tc.filter, limit, got, tc.want)
			}
			for _, m := range msgs {
				if string(m.Payload) != m.Topic || m.ID == "" {
					t.Errorf("List(%q): message %q has payload %q, id %q", tc.filter, m.Topic, m.Payload, m.ID)
				}
			}
		}
	}
}

func testListInvalid(t *testing.T, s bridge.Store) {
	put(t, s, bridge.Message{Topic: "a", Payload: []byte("v")})
	for _, f := range []string{"", "a/#/b", "a+", "a/b#", "$share/g", "\x00"} {
		_, _, err := s.List(t.Context(), f, "", 10)
		requireCode(t, err, bridge.ECodeInvalidTopic, fmt.Sprintf("List(%q)", f))
	}
	for _, limit := range []int{0, -1, 1001} {
		_, _, err := s.List(t.Context(), "#", "", limit)
		requireCode(t, err, bridge.ECodeInvalidRequest, fmt.Sprintf("List(limit %d)", limit))
	}
}

func testPagination(t *testing.T, s bridge.Store) {
	var want, everything []string
	for i := 59; i >= 0; i-- { // inserted out of order
		name := fmt.Sprintf("p/%03d", i)
		want = append(want, name)
		everything = append(everything, name, name+"/deeper", fmt.Sprintf("q/%03d", i))
	}
	everything = append(everything, "p", "o/1", "r")
	for _, name := range everything {
		put(t, s, bridge.Message{Topic: name, Payload: []byte(name)})
	}
	sort.Strings(want)
	sort.Strings(everything)
	for _, limit := range []int{1, 7, 60, 100, 1000} {
		msgs, calls := listAll(t, s, "p/+", limit)
		if d := firstDiff(topics(msgs), want); d != "" {
			t.Fatalf("List(p/+, limit %d) over %d pages: %s", limit, calls, d)
		}
		if minCalls := (len(want) + limit - 1) / limit; calls < minCalls {
			t.Fatalf("List(p/+, limit %d) took %d calls for %d topics", limit, calls, len(want))
		}
		msgs, calls = listAll(t, s, "#", limit)
		if d := firstDiff(topics(msgs), everything); d != "" {
			t.Fatalf("List(#, limit %d) over %d pages: %s", limit, calls, d)
		}
	}
	for _, tc := range []struct {
		after string
		first string
	}{
		{"p/030x", "p/031"}, // not a topic: the page starts after it
		{"p/030", "p/031"},
		{"a", "p/000"}, // before the filter's range
		{"p/", "p/000"},
	} {
		msgs, _, err := s.List(t.Context(), "p/+", tc.after, 3)
		if err != nil || len(msgs) == 0 || msgs[0].Topic != tc.first {
			t.Fatalf("List(p/+, after %q) = %q, %v; want it to start at %q", tc.after, topics(msgs), err, tc.first)
		}
	}
	for _, after := range []string{"p/zzz", "p0", "zzz"} {
		msgs, next, err := s.List(t.Context(), "p/+", after, 3)
		if err != nil || len(msgs) != 0 || next != "" {
			t.Fatalf("List(p/+, after %q) = %q, next %q, %v; want nothing", after, topics(msgs), next, err)
		}
	}
}

func testSpecialTopics(t *testing.T, s bridge.Store) {
	all := []string{
		"with space", "with space/and more", " ", "{braces}", "{braces}/x", "a}b{c", "}{",
		"{mqttbridge:}lv:x", "lv:", "topics", "lastid", "a:b:c", ":",
		"ünïcødé/日本語", "emoji/😀", "\u00ff", "\U0010ffff", "\u007f\u0001",
		"a//b", "/", "//", "trailing/", "tab\there", "new\nline",
		"*", "[x]", "?", "\\", "%2F", "'\"",
	}
	for _, name := range all {
		put(t, s, bridge.Message{Topic: name, Payload: []byte(name)})
	}
	for _, name := range all {
		if got := get(t, s, name); got.Topic != name || string(got.Payload) != name {
			t.Fatalf("Get(%q) = topic %q, payload %q", name, got.Topic, got.Payload)
		}
		msgs, _, err := s.List(t.Context(), name, "", 10)
		if err != nil || len(msgs) != 1 || msgs[0].Topic != name {
			t.Fatalf("List(%q) = %q, %v; want exactly that topic", name, topics(msgs), err)
		}
	}
	sorted := slices.Clone(all)
	sort.Strings(sorted)
	msgs, _ := listAll(t, s, "#", 4)
	if got := topics(msgs); !slices.Equal(got, sorted) {
		t.Fatalf("List(#) = %q, want %q", got, sorted)
	}
	msgs, _ = listAll(t, s, "{braces}/#", 4)
	if got := topics(msgs); !slices.Equal(got, []string{"{braces}", "{braces}/x"}) {
		t.Fatalf("List({braces}/#) = %q", got)
	}
	for _, name := range all {
		if err := s.Delete(t.Context(), name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
		requireNotFound(t, s, name)
	}
	if msgs, _ := listAll(t, s, "#", 100); len(msgs) != 0 {
		t.Fatalf("List(#) after deleting all = %q", topics(msgs))
	}
}

func testConcurrentPuts(t *testing.T, s bridge.Store) {
	const (
		writers = 8
		puts    = 40
		nTopics = 5
	)
	type rec struct {
		topic, id, payload string
	}
	results := make([][]rec, writers)
	errs := make(chan error, writers+2)
	stop := make(chan struct{})
	var writersWG, readersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			for i := range puts {
				topic := fmt.Sprintf("c/%d", (w+i)%nTopics)
				payload := fmt.Sprintf("%d/%d", w, i)
				m, err := s.Put(t.Context(), bridge.Message{Topic: topic, Payload: []byte(payload), Retain: true})
				if err != nil {
					errs <- err
					return
				}
				results[w] = append(results[w], rec{topic, m.ID, payload})
			}
		})
	}
	for range 2 {
		readersWG.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Get(t.Context(), "c/0"); err != nil && !errors.Is(err, bridge.ErrNotFound) {
					errs <- err
					return
				}
				if _, _, err := s.List(t.Context(), "c/+", "", 3); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	writersWG.Wait()
	close(stop)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent call: %v", err)
	}

	seen := map[string]bool{}
	latest := map[string]rec{}
	latestID := map[string]id{}
	for w, rs := range results {
		if len(rs) != puts {
			t.Fatalf("writer %d recorded %d puts", w, len(rs))
		}
		var prev id
		for i, r := range rs {
			if seen[r.id] {
				t.Fatalf("id %s issued twice", r.id)
			}
			seen[r.id] = true
			cur := parseID(t, r.id)
			if i > 0 && !prev.less(cur) {
				t.Fatalf("writer %d: id %s after %d-%d", w, r.id, prev.ms, prev.seq)
			}
			prev = cur
			if old, ok := latestID[r.topic]; !ok || old.less(cur) {
				latestID[r.topic], latest[r.topic] = cur, r
			}
		}
	}
	// The last value of each topic is the Put with the highest id.
	for topic, r := range latest {
		got := get(t, s, topic)
		if got.ID != r.id || string(got.Payload) != r.payload {
			t.Fatalf("Get(%q) = %s %q, want the latest Put %s %q", topic, got.ID, got.Payload, r.id, r.payload)
		}
	}
}

func testClose(t *testing.T, s bridge.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	put(t, s, bridge.Message{Topic: "x", Payload: []byte("v")})
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	ctx := t.Context()
	_, err := s.Get(ctx, "x")
	requireCode(t, err, bridge.ECodeStoreUnavailable, "Get after Close")
	_, err = s.Put(ctx, bridge.Message{Topic: "x", Payload: []byte("v")})
	requireCode(t, err, bridge.ECodeStoreUnavailable, "Put after Close")
	_, _, err = s.List(ctx, "#", "", 10)
	requireCode(t, err, bridge.ECodeStoreUnavailable, "List after Close")
	requireCode(t, s.Delete(ctx, "x"), bridge.ECodeStoreUnavailable, "Delete after Close")
	_, err = s.After(ctx, "0-0", 10)
	requireCode(t, err, bridge.ECodeStoreUnavailable, "After after Close")
	_, err = s.LastID(ctx)
	requireCode(t, err, bridge.ECodeStoreUnavailable, "LastID after Close")
	requireCode(t, s.Ping(ctx), bridge.ECodeStoreUnavailable, "Ping after Close")
}
