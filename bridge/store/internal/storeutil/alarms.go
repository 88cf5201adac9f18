package storeutil

import (
	"fmt"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// ErrTooManyAlarms is UpdateAlarm's answer when a new open alarm would
// exceed bridge.MaxOpenAlarms.
var ErrTooManyAlarms = &bridge.Error{Code: bridge.ECodeRateLimited,
	Message: fmt.Sprintf("there are %d open alarms already", bridge.MaxOpenAlarms)}

// CheckLimit checks a page size.
func CheckLimit(limit int) error {
	if limit < 1 || limit > MaxLimit {
		return bridge.Errorf(bridge.ECodeInvalidRequest, "limit must be between 1 and %d, not %d", MaxLimit, limit)
	}
	return nil
}

// CheckAlarmKey checks the key of an UpdateAlarm: an id, or a topic with
// an optional applied message id; ids of the form "<ms>-<seq>".
func CheckAlarmKey(k bridge.AlarmKey) error {
	switch {
	case k.ID != "" && (k.Topic != "" || k.Applied != ""):
		return bridge.Errorf(bridge.ECodeInvalidRequest, "an alarm key has an id or a topic, not both")
	case k.ID == "" && k.Topic == "":
		return bridge.Errorf(bridge.ECodeInvalidRequest, "an alarm key needs an id or a topic")
	}
	for _, id := range []string{k.ID, k.Applied} {
		if id != "" {
			if _, err := ParseID(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// CompareIDs compares two valid ids; an invalid one counts as "0-0".
func CompareIDs(a, b string) int {
	x, _ := ParseID(a)
	y, _ := ParseID(b)
	return x.Compare(y)
}

// SortKey is an id written so that byte order is id order: both numbers
// with 20 digits.
func SortKey(id string) string {
	x, _ := ParseID(id)
	return fmt.Sprintf("%020d-%020d", x.MS, x.Seq)
}

// FromSortKey is the id of a SortKey.
func FromSortKey(k string) (string, error) {
	var x ID
	if _, err := fmt.Sscanf(k, "%d-%d", &x.MS, &x.Seq); err != nil {
		return "", fmt.Errorf("sort key %q: %w", k, err)
	}
	return x.String(), nil
}
