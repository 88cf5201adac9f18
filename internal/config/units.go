package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that YAML writes as a Go duration string:
// "250ms", "30s", "1m30s". A bare number is rejected, because its unit
// would be a guess.
type Duration time.Duration

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration like \"30s\" or \"250ms\", got %s", nodeKind(n))
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("want a duration with a unit, like \"%ss\" or \"%sms\", got %q", s, s, s)
		}
		return 0, fmt.Errorf("want a duration like \"30s\" or \"250ms\", got %q", s)
	}
	return Duration(v), nil
}

// ByteSize is a number of bytes. YAML and MQTTBRIDGE_MAX_PAYLOAD take a plain
// integer (1048576) or an integer with one of the units B, KiB, MiB, GiB
// (powers of 1024) or kB, MB, GB (powers of 1000): "512KiB", "1MiB".
type ByteSize int64

// Binary size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

var byteUnits = []struct {
	name string
	mult ByteSize
}{
	// Longest names first so "MiB" is not read as "B".
	{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB},
	{"kB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

const byteSizeWant = `want a size like 1048576, "512KiB" or "1MiB" (units B, KiB, MiB, GiB, kB, MB, GB)`

// ParseByteSize parses a plain integer or an integer with a unit (see
// ByteSize). Negative sizes are rejected; zero parses (Validate rejects it
// where a size must be positive).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := ByteSize(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.name); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	if t == "" || strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("must not be negative, got %q", s)
		}
		return 0, fmt.Errorf("%s, got %q", byteSizeWant, s)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("too large: %q", s)
	}
	return ByteSize(n) * mult, nil
}

// String formats b with the largest binary unit that divides it exactly:
// "1MiB", "1500B". ParseByteSize reads it back.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%GiB == 0:
		return strconv.FormatInt(int64(b/GiB), 10) + "GiB"
	case b != 0 && b%MiB == 0:
		return strconv.FormatInt(int64(b/MiB), 10) + "MiB"
	case b != 0 && b%KiB == 0:
		return strconv.FormatInt(int64(b/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML accepts an integer or a size string.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s, got %s", byteSizeWant, nodeKind(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// nodeKind names a YAML node's kind for error messages, never its value.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a scalar"
}
