package storeutil

import (
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		prefix, end string
		ok          bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"a/b/", "a/b0", true},
		{"a\xff", "b", true},
		{"\xff\xff", "", false},
		{"日", "\xe6\x97\xa6", true},
	} {
		end, ok := PrefixEnd(tc.prefix)
		if end != tc.end || ok != tc.ok {
			t.Errorf("PrefixEnd(%q) = %q, %v; want %q, %v", tc.prefix, end, ok, tc.end, tc.ok)
		}
		// Every string with the prefix sorts before end.
		for _, s := range []string{tc.prefix, tc.prefix + "\xff\xff", tc.prefix + "zz"} {
			if ok && s >= end {
				t.Errorf("PrefixEnd(%q) = %q is not above %q", tc.prefix, end, s)
			}
		}
	}
}

func TestIDNext(t *testing.T) {
	for _, tc := range []struct {
		last ID
		now  int64
		want string
	}{
		{ID{}, 5, "5-0"},
		{ID{MS: 5, Seq: 3}, 6, "6-0"},
		{ID{MS: 5, Seq: 3}, 5, "5-4"},
		{ID{MS: 5, Seq: 3}, 4, "5-4"}, // the clock went back
	} {
		if got := tc.last.Next(tc.now).String(); got != tc.want {
			t.Errorf("%v.Next(%d) = %s, want %s", tc.last, tc.now, got, tc.want)
		}
	}
}

func TestPreparePutReceivedAt(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 6_789_000, time.UTC)
	m, err := PreparePut(bridge.Message{Topic: "t", ID: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !m.ReceivedAt.Equal(now.Truncate(time.Millisecond)) || m.ID != "" {
		t.Fatalf("ReceivedAt %v, ID %q", m.ReceivedAt, m.ID)
	}
	if _, err := PreparePut(bridge.Message{Topic: strings.Repeat("a", 65536)}, now); bridge.ErrorCode(err) != bridge.ECodeInvalidTopic {
		t.Fatalf("too long topic: %v", err)
	}
}

func TestIDSucc(t *testing.T) {
	const maxU = 1<<64 - 1
	for _, tc := range []struct {
		id   ID
		want ID
		ok   bool
	}{
		{ID{}, ID{Seq: 1}, true},
		{ID{MS: 5, Seq: 3}, ID{MS: 5, Seq: 4}, true},
		{ID{MS: 5, Seq: maxU}, ID{MS: 6}, true},
		{ID{MS: maxU, Seq: maxU}, ID{MS: maxU, Seq: maxU}, false},
	} {
		got, ok := tc.id.Succ()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v.Succ() = %v, %v; want %v, %v", tc.id, got, ok, tc.want, tc.ok)
		}
		if ok && !tc.id.Less(got) {
			t.Errorf("%v.Succ() = %v is not above it", tc.id, got)
		}
	}
}

func TestIDCompare(t *testing.T) {
	ids := []ID{{}, {Seq: 1}, {MS: 1}, {MS: 1, Seq: 9}, {MS: 10}, {MS: 1<<64 - 1, Seq: 1<<64 - 1}}
	for i, a := range ids {
		for j, b := range ids {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
			// The same order as the exported rule on the string form.
			if got, err := bridge.CompareIDs(a.String(), b.String()); err != nil || got != want {
				t.Errorf("bridge.CompareIDs(%s, %s) = %d, %v; want %d", a, b, got, err, want)
			}
		}
	}
}

func TestHistoryWindow(t *testing.T) {
	for _, tc := range []struct {
		size    int
		age     time.Duration
		wantN   int
		wantAge time.Duration
		ok      bool
	}{
		{0, 0, 10000, time.Hour, true},
		{1, time.Millisecond, 1, time.Millisecond, true},
		{5, 90 * time.Minute, 5, 90 * time.Minute, true},
		{-1, 0, 0, 0, false},
		{0, -time.Second, 0, 0, false},
		{0, 999 * time.Microsecond, 0, 0, false},
	} {
		n, age, err := HistoryWindow(tc.size, tc.age)
		if (err == nil) != tc.ok || tc.ok && (n != tc.wantN || age != tc.wantAge) {
			t.Errorf("HistoryWindow(%d, %v) = %d, %v, %v; want %d, %v, ok %v", tc.size, tc.age, n, age, err, tc.wantN, tc.wantAge, tc.ok)
		}
	}
}

func TestCheckAfter(t *testing.T) {
	if id, err := CheckAfter("12-3", 1000); err != nil || id != (ID{MS: 12, Seq: 3}) {
		t.Fatalf("CheckAfter(12-3) = %v, %v", id, err)
	}
	for _, tc := range []struct {
		after string
		limit int
	}{{"x", 10}, {"1-1", 0}, {"1-1", 1001}} {
		if _, err := CheckAfter(tc.after, tc.limit); bridge.ErrorCode(err) != bridge.ECodeInvalidRequest {
			t.Errorf("CheckAfter(%q, %d) = %v, want invalid_request", tc.after, tc.limit, err)
		}
	}
}
