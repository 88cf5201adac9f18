package bridge

import (
	"errors"
	"testing"
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		id      string
		ms, seq uint64
		ok      bool
	}{
		{"0-0", 0, 0, true},
		{"1700000000000-0", 1700000000000, 0, true},
		{"1700000000000-42", 1700000000000, 42, true},
		{"007-010", 7, 10, true}, // leading zeros are only digits
		{"18446744073709551615-18446744073709551615", 1<<64 - 1, 1<<64 - 1, true},

		{"", 0, 0, false},
		{"-", 0, 0, false},
		{"5", 0, 0, false}, // Redis accepts a bare millisecond; ids here never have one
		{"5-", 0, 0, false},
		{"-5", 0, 0, false},
		{"5--1", 0, 0, false},
		{"1-2-3", 0, 0, false},
		{"+1-2", 0, 0, false},
		{"1-+2", 0, 0, false},
		{" 1-2", 0, 0, false},
		{"1-2 ", 0, 0, false},
		{"1_0-2", 0, 0, false},
		{"0x1-2", 0, 0, false},
		{"a-b", 0, 0, false},
		{"1.5-2", 0, 0, false},
		{"18446744073709551616-0", 0, 0, false}, // 2^64
		{"0-18446744073709551616", 0, 0, false},
		{"１-2", 0, 0, false}, // a full-width digit
	} {
		ms, seq, err := ParseID(tc.id)
		if !tc.ok {
			var e *Error
			if !errors.As(err, &e) || e.Code != ECodeInvalidRequest {
				t.Errorf("ParseID(%q) = %d, %d, %v; want an invalid_request error", tc.id, ms, seq, err)
			}
			continue
		}
		if err != nil || ms != tc.ms || seq != tc.seq {
			t.Errorf("ParseID(%q) = %d, %d, %v; want %d, %d", tc.id, ms, seq, err, tc.ms, tc.seq)
		}
	}
}

func TestCompareIDs(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"0-0", "0-0", 0},
		{"0-0", "0-1", -1},
		{"0-0", "1-0", -1},
		{"0-1", "0-0", 1},
		{"5-3", "5-3", 0},
		{"5-3", "5-4", -1},
		{"5-9", "5-10", -1}, // numbers, not strings
		{"9-0", "10-0", -1},
		{"10-0", "9-99", 1},
		{"5-999", "6-0", -1}, // the millisecond decides first
		{"007-1", "7-1", 0},
		{"18446744073709551615-0", "18446744073709551614-18446744073709551615", 1},
		{"1700000000000-0", "1700000000000-1", -1},
	} {
		got, err := CompareIDs(tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Errorf("CompareIDs(%q, %q) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
		// Swapping the arguments flips the sign.
		if back, err := CompareIDs(tc.b, tc.a); err != nil || back != -tc.want {
			t.Errorf("CompareIDs(%q, %q) = %d, %v; want %d", tc.b, tc.a, back, err, -tc.want)
		}
	}
	for _, tc := range [][2]string{{"x", "0-0"}, {"0-0", "x"}, {"1-", "1-0"}} {
		if _, err := CompareIDs(tc[0], tc[1]); ErrorCode(err) != ECodeInvalidRequest {
			t.Errorf("CompareIDs(%q, %q) error = %v, want invalid_request", tc[0], tc[1], err)
		}
	}
}
