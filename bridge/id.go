package bridge

import (
	"strconv"
	"strings"
)

// ParseID splits a message id "<ms>-<seq>" into its two parts: decimal
// numbers without sign that fit in 64 bits. "0-0", the smallest id, stands
// for "before every message". Anything else is an *Error with
// ECodeInvalidRequest.
func ParseID(s string) (ms, seq uint64, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		var errA, errB error
		ms, errA = strconv.ParseUint(a, 10, 64)
		seq, errB = strconv.ParseUint(b, 10, 64)
		if errA == nil && errB == nil {
			return ms, seq, nil
		}
	}
	return 0, 0, Errorf(ECodeInvalidRequest, "%q is not a message id of the form <ms>-<seq>", truncate(s))
}

// CompareIDs compares two message ids numerically, milliseconds first: it
// returns -1 when a is older than b, 0 when they are equal, +1 when a is
// newer. The error is ParseID's, for the first id that is not valid.
func CompareIDs(a, b string) (int, error) {
	ams, aseq, err := ParseID(a)
	if err != nil {
		return 0, err
	}
	bms, bseq, err := ParseID(b)
	if err != nil {
		return 0, err
	}
	switch {
	case ams < bms || ams == bms && aseq < bseq:
		return -1, nil
	case ams == bms && aseq == bseq:
		return 0, nil
	}
	return 1, nil
}
