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
